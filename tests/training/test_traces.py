"""The trace generator's invariants, on a sample of sessions (training and held-out)."""

from __future__ import annotations

import re

import pytest

from asynclm.core.cml import CANCELLED_PAYLOAD, Marker, parse_call
from asynclm.core import notes
from training import entities as ent
from training.traces import ACKS_ADD, ACKS_CHANGE, BOS, EOS, _ms, make_session, task_spans

SEEDS = list(range(40))


def blocks(session):
    """(kind, by_model, id_or_source, body) for every block, in order, plus text runs as ("text", ...)."""
    out = []
    atoms = session.atoms
    i = 0
    while i < len(atoms):
        atom, by_model = atoms[i]
        if atom in (Marker.CALL, Marker.INTR):
            assert atoms[i + 2][0] is Marker.HEAD and atoms[i + 4][0] is Marker.END, atoms[i:i + 5]
            assert {a[1] for a in atoms[i:i + 5]} == {by_model}, "a block is written by one side"
            out.append(("call" if atom is Marker.CALL else "intr", by_model, atoms[i + 1][0].strip(),
                        atoms[i + 3][0][1:-1]))
            i += 5
        elif atom is Marker.TRAP:
            assert atoms[i + 2][0] is Marker.END and by_model
            out.append(("trap", True, "", ""))
            i += 3
        else:
            out.append(("text" if atom not in (BOS, EOS) else atom, by_model, "", atom))
            i += 1
    return out


@pytest.fixture(scope="module")
def sample():
    return [make_session(s) for s in SEEDS] + [make_session(s, heldout=True) for s in SEEDS[:15]]


def test_the_same_seed_gives_the_same_session():
    assert make_session(7).atoms == make_session(7).atoms
    assert make_session(7).atoms != make_session(8).atoms


def test_interrupts_are_written_by_the_engine_and_never_inside_a_block(sample):
    for session in sample:
        assert blocks(session)[0][0] == BOS
        for kind, by_model, _, _ in blocks(session):
            if kind == "intr":
                assert not by_model
            if kind in ("call", "trap"):
                assert by_model
        # markers only ever appear as parts of whole blocks (checked by blocks()); no text hides one
        for atom, _ in session.atoms:
            if isinstance(atom, str) and not isinstance(atom, Marker):
                assert not any(m.value in atom for m in Marker)


def test_every_call_gets_exactly_one_interrupt_after_it_and_refs_point_back(sample):
    for session in sample:
        seen_calls: list[str] = []
        answered: dict[str, int] = {}
        for kind, _, ident, body in blocks(session):
            if kind == "call":
                assert ident not in seen_calls, "call ids are unique in a session"
                for ref in parse_call(body).refs:
                    assert ref in seen_calls, f"{ref} is not an earlier call"
                seen_calls.append(ident)
            elif kind == "intr" and ident not in ("user", "system"):
                assert ident in seen_calls, "a result never comes before its call"
                answered[ident] = answered.get(ident, 0) + 1
        assert answered == {c: 1 for c in seen_calls}


def test_ready_calls_are_issued_longest_estimate_first_which_is_tool_list_order(sample):
    """In the order of the estimates shown last: the tool list's, or an update's for the tools it
    names (ties in the order the tools were added, as the tool list breaks them)."""
    checked = updated = 0
    for session in sample:
        listed = re.findall(r"(?:^tools: |\| )(\w+)\(", session.tools_text)
        shown = dict(re.findall(r"(\w+)\([^~]*\) (~\S+)", session.tools_text))
        assert [_ms(shown[name]) for name in listed] == sorted(_ms(shown[name]) for name in listed)[::-1]
        added = list(session.estimates)
        burst: list[str] = []
        for kind, _, source, body in blocks(session) + [("end", False, "", "")]:
            if kind == "intr" and source == "system" and body.startswith("updated estimates: "):
                shown |= dict(entry.split(" ") for entry in body.split(": ", 1)[1].split(" | "))
                updated += 1
            if kind == "call":
                burst.append(body)
                continue
            ready = [parse_call(b).name for b in burst if not parse_call(b).refs]
            order = [(-_ms(shown[name]), added.index(name)) for name in ready]
            assert order == sorted(order), (ready, shown)
            checked += len(set(ready)) > 1
            burst = []
    assert checked > 20 and updated > 3


def test_only_what_the_model_writes_is_trained_on(sample):
    for session in sample:
        text_by_model = "".join(a for a, m in session.atoms if m and isinstance(a, str)
                                and not isinstance(a, Marker) and a not in (BOS, EOS))
        assert "tools:" not in text_by_model
        for turn in session.turns:
            assert turn.request not in text_by_model or len(turn.request) < 12
        # every turn ends with an end-of-sequence: the model's, or the engine's for an answer the
        # user stopped
        stopped = sum(turn.stopped for turn in session.turns)
        assert sum(1 for a, m in session.atoms if a == EOS and m) == len(session.turns) - stopped
        assert sum(1 for a, m in session.atoms if a == EOS and not m) == stopped


def test_held_out_entities_never_appear_in_training_requests(sample):
    for session in sample[:len(SEEDS)]:
        for turn in session.turns:
            for task in turn.tasks + turn.interrupt_tasks:
                for text, is_entity in task.phrase:
                    if is_entity and text in ent.cities():
                        assert not ent.held_out(text)
                for call in task.calls:
                    for key in ("path", "pattern"):
                        if key in call.kwargs:
                            name = call.kwargs[key].rsplit("/", 1)[-1].split(".")[0]
                            assert not ent.held_out(name)
    for session in sample[len(SEEDS):]:
        cities = [t for turn in session.turns for task in turn.tasks for t, e in task.phrase
                  if e and t in ent.cities()]
        assert all(ent.held_out(c) for c in cities)


def test_results_come_from_the_real_tools(sample):
    payloads = [body for s in sample for kind, _, ident, body in blocks(s)
                if kind == "intr" and ident not in ("user", "system")]
    assert any(p.startswith("error: ") for p in payloads), "errors are covered"
    assert any('"kind":"file"' in p for p in payloads), "file_info ran on the generated tree"
    assert any(" = " in p for p in payloads), "convert_units ran"


def test_the_probe_profile_holds_one_turn_of_one_to_three_calls_to_four_tools():
    from asynclm.core.cml import Marker

    four = {"calculator", "current_time", "convert_units", "read_file"}
    sizes = set()
    for seed in range(60):
        s = make_session(seed, profile="probe")
        assert len(s.turns) == 1 and s.turns[0].user_interrupt is None
        listed = set(re.findall(r"(?:^tools: |\| )(\w+)\(", s.tools_text))
        assert listed == four
        calls = [c for task in s.turns[0].tasks for c in task.calls]
        assert 1 <= len(calls) <= 3 and {c.name for c in calls} <= four
        sizes.add(len(calls))
        users = [i for i, (a, _) in enumerate(s.atoms) if a == " user "]
        assert len(users) <= 1 and sum(1 for a, _ in s.atoms if a is Marker.CALL) == len(calls)
    assert sizes == {1, 2, 3}


def test_a_mid_answer_message_is_acted_on_before_the_model_waits_again():
    """The calls a user message asks for come before any [TRAP]; some messages enter right after the
    request's calls, where the engine injects them when typed while a call block was being written."""
    right_after_a_call = acted = 0
    for seed in range(80):
        b = [x for x in blocks(make_session(seed)) if x[0] != "text" or x[3].strip()]
        users = [i for i, x in enumerate(b) if x[0] == "intr" and x[2] == "user"]
        for i in users:
            if i == 0 or b[i - 1][0] in (BOS, EOS) or b[i - 1][2] == "system":
                continue  # the request, not a mid-answer message
            right_after_a_call += b[i - 1][0] == "call"
            following = [x[0] for x in b[i + 1:] if x[0] in ("call", "trap", EOS)]
            assert following and following[0] == "call", (seed, following[:3])
            acted += 1
    assert acted > 10 and 0 < right_after_a_call < acted


def test_a_stopped_answer_cancels_what_runs_and_the_next_request_is_answered_anew():
    """As the engine does on Esc: the calls still running report ``cancelled``, the stop note enters,
    the engine ends the turn; the next request is answered with its own calls, not as an addition."""
    stops = 0
    for seed in range(120):
        session = make_session(seed)
        b = [x for x in blocks(session) if x[0] != "text" or x[3].strip()]
        for i, x in enumerate(b):
            if not (x[0] == "intr" and x[3] == notes.STOPPED):
                continue
            stops += 1
            assert b[i + 1] == (EOS, False, "", EOS), "the engine ends a stopped answer"
            start = max(k for k, y in enumerate(b[:i]) if y[:3] == ("intr", False, "user")
                        and b[k - 1][0] in (EOS, BOS, "intr") and b[k - 1][2] in ("", "system"))
            turn = b[start:i]
            opened = {y[2] for y in turn if y[0] == "call"}
            results = {y[2]: y[3] for y in turn if y[0] == "intr" and y[2] in opened}
            assert opened and set(results) == opened, "what had not returned reports its cancellation"
            cancelled = {c for c, payload in results.items() if payload == CANCELLED_PAYLOAD}
            # the cancellations come last, right before the note
            assert {y[2] for y in turn[len(turn) - len(cancelled):]} == cancelled
            nxt = b[i + 2:]
            if nxt[0][2] == "system":  # moved estimates come ahead of the request
                nxt = nxt[1:]
            assert nxt[0][:3] == ("intr", False, "user") and nxt[1][0] == "call"
            first = next(y for y in nxt[1:] if (y[0] == "text" and y[1]) or y[2] == "user")
            if first[0] == "text":  # (unless a mid-answer message came first, which it acknowledges)
                assert not first[3].lstrip().startswith(
                    tuple(ACKS_ADD) + tuple(a.split("{")[0] for a in ACKS_CHANGE)), first
    assert stops > 10


def test_moved_estimates_come_before_a_request_and_name_only_tools_called_before():
    moved = 0
    for seed in range(120):
        session = make_session(seed)
        b = blocks(session)
        called: set[str] = set()
        for i, (kind, _, source, body) in enumerate(b):
            if kind == "call":
                called.add(parse_call(body).name)
            if kind == "intr" and body.startswith("updated estimates: "):
                moved += 1
                assert b[i - 1][0] == EOS and b[i + 1][:3] == ("intr", False, "user")
                names = [entry.split(" ")[0] for entry in body.split(": ", 1)[1].split(" | ")]
                assert names and set(names) <= called
    assert moved > 10


def _looks_real(path: str) -> bool:
    return any(ch.isupper() or ch in "_-" for ch in path) or path.split("/")[0] in ent.REAL_FOLDERS


def _paths(sessions):
    return [(s.seed, c.kwargs["path"]) for s in sessions for t in s.turns
            for task in t.tasks + t.interrupt_tasks for c in task.calls if isinstance(c.kwargs.get("path"), str)]


def test_a_profile_can_put_sessions_on_real_looking_trees_with_names_on_their_side_of_the_split():
    sessions = [make_session(s, profile="real") for s in range(60)]
    sessions += [make_session(s, heldout=True, profile="real") for s in range(60, 80)]
    paths = _paths(sessions)
    real = {seed for seed, path in paths if _looks_real(path)}
    assert 10 <= len(real & set(range(60))) <= 50, "about half of the sessions"
    assert real & set(range(60, 80)), "held-out sessions too"
    for seed, path in paths:
        for part in path.split("/"):
            assert ent.held_out(part.split(".")[0]) == (seed >= 60), path
    # the main stage's data has none
    assert not any(_looks_real(path) for _, path in _paths([make_session(s) for s in range(40)]))


def _calls(session):
    return [c for t in session.turns for task in t.tasks + t.interrupt_tasks for c in task.calls]


def test_long_trees_give_long_results_whose_answers_quote_how_they_begin():
    from training.traces import LONG_KEEP, LONG_RESULT, _all_values, is_long, key_values

    sessions = [make_session(s, profile="long") for s in range(100)]
    long_calls = [(s, c) for s in sessions for c in _calls(s) if is_long(c)]
    assert {c.name for _, c in long_calls} >= {"read_file", "search_files"}, long_calls
    assert len(long_calls) >= 15
    quoted = 0
    for s, c in long_calls:
        written = "".join(a for a, by_model in s.atoms if by_model and not isinstance(a, Marker))
        values = _all_values(c)
        assert key_values(c) == values[:LONG_KEEP[c.name]] and len(values) > len(key_values(c))
        assert not any(sep.join(values) in written for sep in (", ", " / ")), "a long result is not repeated whole"
        quoted += all(v in written for v in key_values(c))
    assert quoted >= 0.8 * len(long_calls), "the answers quote how long results begin"
    # the other profiles' trees never give a result that long: their sessions are as they were
    for profile in ("full", "real", "probe"):
        for seed in range(30):
            assert not any(len(c.payload) > LONG_RESULT for c in _calls(make_session(seed, profile=profile)))


def test_every_call_points_at_the_words_of_the_message_that_asked_for_it(sample):
    for session in sample:
        atoms = [a for a, _ in session.atoms]
        spans = task_spans(session)
        bodies = [i + 3 for i, a in enumerate(atoms) if a is Marker.CALL]
        assert [body for body, *_ in spans] == bodies, "one span for every call, in order"
        for body, message, start, end in spans:
            assert atoms[message - 3] is Marker.INTR and atoms[message - 2] == " user " and message < body
            words = atoms[message][start:end].lower()
            assert words.strip() == words and words, words
            call = parse_call(atoms[body])
            # the call's own values are in the words: numbers (but the 100 of a per cent) and names
            for value in call.kwargs.values():
                if isinstance(value, str) and not re.fullmatch(r"c\d+", value):
                    values = re.findall(r"\d+(?:\.\d+)?", value) if call.name == "calculator" else [value]
                    assert all(v.lower() in words for v in values if v != "100"), (call, words)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert re.sub(r"\.0$", "", str(value)) in words, (call, words)

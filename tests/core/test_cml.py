"""CML pieces that need no model: call parsing, payloads, neutralising, the streaming parsers."""

import pytest

from asynclm.core.cml import (
    BlockParser, BlockState, CallClosed, CallSyntaxError, Malformed, Marker, Ref, Text,
    TextMarkerScanner, TrapClosed, cut, format_interrupt, neutralise, parse_call, render_payload,
    split_atoms,
)


def test_parse_call_literals_positional_and_dotted_names():
    c = parse_call('spotify.play(artist="Taylor", n=3, ratio=-0.5, tags=["a", "b"], opts={"x": (1, 2)}, on=True, none=None)')
    assert c.name == "spotify.play"
    assert c.kwargs == {"artist": "Taylor", "n": 3, "ratio": -0.5, "tags": ["a", "b"],
                        "opts": {"x": (1, 2)}, "on": True, "none": None}
    p = parse_call("add(2, 3)")
    assert p.args == (2, 3) and p.kwargs == {}


def test_parse_call_dataflow_references():
    c = parse_call("convert(amount=w1, rate=r2, note='w1')")
    assert c.kwargs["amount"] == Ref("w1") and c.kwargs["rate"] == Ref("r2")
    assert c.kwargs["note"] == "w1"  # a string, not a reference
    assert c.refs == ("w1", "r2")


@pytest.mark.parametrize("text", [
    "__import__('os').system('rm -rf /')",  # argument is a call: never evaluated
    "f(x=open('/etc/passwd').read())",
    "f(x=1+2)",
    "f(lambda: 1)",
    "f(*args)",
    "f(**kw)",
    "f(x=1, x=2)",
    "x = f()",
    "f(",
    "",
    "f()()",
    "42",
])
def test_parse_call_rejects_anything_but_literals_and_ids(text):
    with pytest.raises(CallSyntaxError):
        parse_call(text)


def test_payload_cut_says_how_much_was_cut():
    assert render_payload("abc", 10) == "abc"
    out = render_payload("x" * 1000, 100)
    assert out.startswith("x" * 100) and "cut 900 of 1000 chars" in out
    assert cut("short", 0) == "short"
    assert render_payload({"city": "Lima", "temp": 19}) == '{"city":"Lima","temp":19}'
    assert render_payload(b"\xff\xfeok") == "\ufffd\ufffdok"


def test_format_interrupt_matches_the_spec():
    assert format_interrupt("c1", "391") == "[INTR] c1 [HEAD] 391 [END]"


def test_neutralise_defuses_every_marker_spelling():
    text = "x [CALL] y [head] z [ END ] [Trap][INTR]"
    out = neutralise(text)
    for m in Marker:
        assert m.value not in out
    assert "[" not in out.replace("［", "")
    assert "CALL" in out and "head" in out  # still legible


def test_text_scanner_finds_markers_however_the_text_is_split():
    text = 'ok [CALL] w1 [HEAD] f(x="[EN") [END] done [TRAP] [END] [CA'
    expected = split_atoms(text)
    for size in range(1, 9):
        scanner = TextMarkerScanner()
        atoms = []
        for i in range(0, len(text), size):
            atoms += scanner.feed(text[i:i + size])
        atoms += scanner.flush()
        merged = []
        for a in atoms:  # text runs may arrive in more pieces; join adjacent ones
            if merged and not isinstance(a, Marker) and not isinstance(merged[-1], Marker):
                merged[-1] += a
            else:
                merged.append(a)
        assert merged == expected, size


def test_scanner_holds_back_only_a_possible_marker_prefix():
    s = TextMarkerScanner()
    assert s.feed("a [CA") == ["a "] and s.holding
    assert s.feed("T") == ["[CAT"] and not s.holding
    assert s.feed("[x") == ["[x"]


def test_block_parser_states_and_items():
    p = BlockParser()
    items = [p.feed(a) for a in split_atoms("Hi [CALL] w1 [HEAD] f(1) [END][TRAP] [END]")]
    items = [i for i in items if i is not None]
    assert items == [Text("Hi "), CallClosed("w1", "f(1)"), TrapClosed()]
    assert p.state is BlockState.OUTSIDE
    p.feed(Marker.CALL)
    assert p.state is BlockState.CALL_ID and p.state.in_block
    assert isinstance(p.feed(Marker.INTR), Malformed)
    assert isinstance(p.feed(Marker.END), Malformed)  # closed before [HEAD]
    assert p.state is BlockState.OUTSIDE
    assert isinstance(BlockParser().feed(Marker.END), Malformed)

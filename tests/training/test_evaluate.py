"""The evaluation harness on the embedded model: an episode with a mid-answer message runs to its end."""

from pathlib import Path

import pytest

from asynclm import EMBEDDED_MODEL
from training.evaluate import HELDOUT_EVAL_BASE, run_episode

pytest.importorskip("numpy")


@pytest.mark.skipif(not EMBEDDED_MODEL.is_file(), reason="the embedded model is not built")
def test_an_episode_whose_user_types_mid_answer_ends_instead_of_hanging():
    # This seed plans "also the time in Khandyga", typed once the model has written its calls: the
    # message is reported back to the harness on the thread that sends it, which once deadlocked. (The
    # episode takes seconds; the bound only tells a hang, on a machine as busy as it may be.)
    episode = run_episode(Path(EMBEDDED_MODEL), HELDOUT_EVAL_BASE + 3, timeout=600)
    assert episode.user_interrupt == "also the time in Khandyga"
    assert episode.end_reason != "timeout", episode.written
    assert episode.end_reason == "done"


def test_the_summary_counts_each_asked_for_call_once_and_splits_exact_calls_by_request_size():
    from training.evaluate import Episode, summarise

    one = Episode(1, "what is 2*3", None, ["calculator(expression='2*3')"], [],
                  written=["calculator(expression='2*3')"], end_reason="done")
    two = Episode(2, "2*3 and the time in Oslo", None,
                  ["calculator(expression='2*3')", "current_time(timezone='Oslo')"], [],
                  written=["calculator(expression='2*3')", "calculator(expression='2*3')"], end_reason="done")
    summary = summarise([one, two])
    # the repeated call is right once: 2 of 3 written calls were asked for
    assert summary["calls_written_right"] == {"rate": 0.6667, "n": 3}
    assert summary["exact_by_request_size"] == {"1": {"rate": 1.0, "n": 1}, "2": {"rate": 0.0, "n": 1}}


def test_the_planned_message_is_typed_when_the_model_writes_text_after_fewer_calls_than_asked(tiny_model):
    # Seed 13 asks for four things and plans "and 80 GB in MiB" mid-answer. This script writes one call
    # and goes on talking: the message must enter while it talks (the model has written the calls it
    # means to), not only at its end, where a turn with nothing pending would never see it.
    from asynclm.core.policy import ScriptedPolicy

    script = ScriptedPolicy(
        ['[CALL] c1 [HEAD] current_time(timezone="Winnipeg") [END] Checking. One two three four five six.'],
        reactions={"user": ' Got it.[CALL] c2 [HEAD] convert_units(value=80, from_unit="GB", to_unit="MiB") [END]'})
    episode = run_episode(tiny_model, HELDOUT_EVAL_BASE + 13, timeout=60, policy=script)
    assert episode.user_interrupt == "and 80 GB in MiB"
    assert episode.user_sent
    assert episode.written_after_user == ["convert_units(from_unit='GB', to_unit='MiB', value=80)"]
    assert episode.acted_on_user
    assert episode.ids == ["c1", "c2"]
    assert episode.answer.index("Got it.") < episode.answer.index("six.")


def test_everyday_requests_score_the_calls_they_need_and_small_talk_without_any(tiny_model):
    from asynclm.core.policy import ScriptedPolicy
    from training.evaluate import EVERYDAY, run_everyday

    hello = [r for r, _ in EVERYDAY].index("hello")
    here = [r for r, _ in EVERYDAY].index("list the files here")
    greeted = run_everyday(tiny_model, hello, policy=ScriptedPolicy([" Hello! I can calculate."]))
    assert greeted.expected == [] and greeted.written == [] and greeted.exact and greeted.valid
    mistaken = run_everyday(tiny_model, hello, policy=ScriptedPolicy(
        ['[CALL] c1 [HEAD] list_dir(path="hello") [END] Checking.']))
    assert not mistaken.exact
    # "here" is the tool's default folder, written or not
    def listing(path: str):
        script = ScriptedPolicy([f'[CALL] c1 [HEAD] list_dir(path="{path}") [END] On it.'])
        return run_everyday(tiny_model, here, policy=script)

    listed, wrong = listing("."), listing("the")
    assert listed.exact and listed.written == listed.expected == ["list_dir()"]
    assert not wrong.exact


def test_real_file_episodes_ask_about_held_out_real_looking_names():
    from training import entities as ent
    from training.evaluate import _held_out
    from training.traces import plan_turn

    names = []
    for seed in range(HELDOUT_EVAL_BASE, HELDOUT_EVAL_BASE + 20):
        rng, runner, _, _, planner = _held_out(seed, real=True)
        try:
            turn = plan_turn(rng, planner)
            names += [p for c in turn.tasks for call in c.calls for p in [call.kwargs.get("path")] if p]
            assert all(ent.held_out(part.split(".")[0]) for rel in runner.tree.files
                       for part in rel.split("/")), runner.tree.files
        finally:
            runner.close()
    assert any(any(ch.isupper() or ch in "_-" for ch in n) or n in ent.REAL_FOLDERS for n in names), names


def test_long_file_episodes_ask_about_long_files_and_crowded_folders():
    from training.evaluate import _held_out
    from training.traces import plan_turn

    asked, short = [], []
    for seed in range(HELDOUT_EVAL_BASE, HELDOUT_EVAL_BASE + 20):
        for long, into in ((True, asked), (False, short)):
            rng, runner, _, _, planner = _held_out(seed, real=True, long=long)
            try:
                turn = plan_turn(rng, planner)
                paths = {call.kwargs.get("path") for c in turn.tasks for call in c.calls}
                into += [p for p in paths if p in runner.tree.big]
                assert bool(runner.tree.big) == long
            finally:
                runner.close()
    assert len(asked) >= 5 and not short, asked

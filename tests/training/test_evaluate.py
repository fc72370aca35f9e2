"""The evaluation harness on the embedded model: an episode with a mid-answer message runs to its end."""

from pathlib import Path

import pytest

from asynclm import EMBEDDED_MODEL
from training.evaluate import HELDOUT_EVAL_BASE, run_episode

pytest.importorskip("numpy")


@pytest.mark.skipif(not EMBEDDED_MODEL.is_file(), reason="the embedded model is not built")
def test_an_episode_whose_user_types_mid_answer_ends_instead_of_hanging():
    # This seed plans "also the time in Khandyga", typed once the model has written its calls: the
    # message is reported back to the harness on the thread that sends it, which once deadlocked.
    episode = run_episode(Path(EMBEDDED_MODEL), HELDOUT_EVAL_BASE + 3, timeout=60)
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

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

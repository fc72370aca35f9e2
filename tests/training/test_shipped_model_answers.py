"""The shipped model answers held-out requests: valid CML and exactly the calls asked for.

Each request comes from a held-out seed with held-out values (names, numbers and places that never
appear in training), through the real engine in async mode with the real tools and greedy decoding,
with no decode-time help (the copy bias off).
"""

from __future__ import annotations

import pytest

from asynclm import EMBEDDED_MODEL

evaluate = pytest.importorskip("training.evaluate")

# Three held-out requests of different kinds (the evaluation's episodes with these seeds).
SEEDS = {
    950_000_007: "two calls, then one more asked for mid-answer",  # 892 minus 56, the folder jayor; 490 acres
    950_000_024: "a dependent call with a dataflow reference",  # 298/28; 75*14 bar in psi
    950_000_052: "a calculation and a time zone conversion",  # 756 minus 28; 07:15 from Creston to Bahrain
}


@pytest.mark.parametrize("seed", sorted(SEEDS), ids=lambda s: SEEDS[s])
def test_the_shipped_model_answers_a_held_out_request(seed):
    episode = evaluate.run_episode(EMBEDDED_MODEL, seed, timeout=120)
    assert episode.valid, (episode.request, episode.end_reason, episode.rejected)
    assert sorted(episode.written) == sorted(episode.expected + episode.expected_after_user), (
        episode.request, episode.written)
    assert episode.expected_after_user == [] or episode.acted_on_user  # the mid-answer message's calls came after it

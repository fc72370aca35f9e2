"""The sampler: masks first, then penalties and filters; greedy at temperature 0; seeded."""

import numpy as np
import pytest

from asynclm.core.sampling import GREEDY, Sampler, SamplingSettings


def test_greedy_takes_the_best_allowed_token():
    logits = np.array([0.1, 5.0, 3.0, 4.0], dtype=np.float32)
    s = Sampler(GREEDY)
    assert s.sample(logits) == 1
    assert s.sample(logits, np.array([1])) == 3
    assert logits[1] == 5.0, "the caller's logits are not modified"


def test_mask_is_respected_even_when_banned_tokens_dominate():
    logits = np.zeros(50, dtype=np.float32)
    logits[7] = 100.0
    s = Sampler(SamplingSettings(temperature=2.0, top_k=0, top_p=1.0, min_p=0.0, seed=1))
    draws = {s.sample(logits, np.array([7])) for _ in range(300)}
    assert 7 not in draws and len(draws) > 10


def test_seed_makes_sampling_repeatable():
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    settings = SamplingSettings(temperature=1.0, seed=42)
    a, b = Sampler(settings), Sampler(settings)
    assert [a.sample(logits) for _ in range(50)] == [b.sample(logits) for _ in range(50)]


def test_top_k_one_is_greedy_and_min_p_cuts_the_tail():
    logits = np.array([1.0, 2.0, 8.0, 7.9], dtype=np.float32)
    assert Sampler(SamplingSettings(top_k=1, seed=0)).sample(logits) == 2
    s = Sampler(SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, min_p=0.5, seed=0))
    assert {s.sample(logits) for _ in range(200)} == {2, 3}


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.05], dtype=np.float32))
    s = Sampler(SamplingSettings(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0, seed=0))
    assert {s.sample(logits) for _ in range(300)} == {0, 1}


def test_repetition_penalty_discourages_recent_tokens():
    logits = np.array([2.0, 1.9], dtype=np.float32)
    s = Sampler(SamplingSettings(temperature=0.0, repeat_penalty=1.5))
    s.accept(0)
    assert s.sample(logits) == 1


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(min_p=1.0), dict(top_k=-2)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SamplingSettings(**bad)

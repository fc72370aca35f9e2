"""The speed benchmarks, smoke-sized on the test model: they run to the end and measure something."""

import json


def test_loop_speed_measures_the_loop_and_interrupts_entering_it(bench, tmp_path):
    out = tmp_path / "loop.json"
    bench("loop_speed.py", "--shapes", "test", "--tokens", "400", "--rounds", "1", "--json", str(out))
    [result] = json.loads(out.read_text())
    assert result["model"] == "test" and result["bare_tok_s"] > 0 and result["engine_tok_s"] > 0
    assert result["markers_seen"] == 0, "the free-text policy writes text only"
    # The answer must go on long enough for interrupts to enter it (a looping answer is ended early).
    assert result["interrupts"] >= 2 and result["prefill_p50_ms"] > 0, result


def test_threads_measures_each_count_idle_and_busy(bench, tiny_model, tmp_path):
    out = tmp_path / "threads.json"
    r = bench("threads.py", "--no-defaults", "--model", str(tiny_model), "--threads", "1,2", "--busy", "1",
              "--tokens", "30", "--rounds", "1", "--json", str(out))
    [result] = json.loads(out.read_text())["results"]
    for half in ("idle", "loaded"):
        assert set(result[half]) == {"1", "2"}
        for figures in result[half].values():
            assert figures["tok_s_median"] > 0 and figures["prefill_ms"] > 0 and figures["prompt_tokens"] > 0
    assert "busy tok/s" in r.stdout

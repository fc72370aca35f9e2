"""The benchmark's accuracy side, smoke-sized: the embedded model, unforced, in each mode."""

import json


def test_accuracy_report_covers_every_mode_on_the_same_episodes(bench, tmp_path):
    out = tmp_path / "accuracy.json"
    r = bench("accuracy.py", "--episodes", "2", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report["modes"]) == {"sync", "sync-parallel", "async"}
    for figures in report["modes"].values():
        assert figures["episodes"] == 2
        for measure in ("valid_cml", "exact_calls", "fully_correct"):
            assert figures[measure]["n"] == 2 and 0.0 <= figures[measure]["rate"] <= 1.0
    seeds = [e["seed"] for e in report["per_episode"]]
    assert seeds == [report["first_seed"], report["first_seed"] + 1]
    for episode in report["per_episode"]:
        assert all(isinstance(episode[m]["written"], list) for m in ("sync", "sync-parallel", "async"))
    assert "exact calls" in r.stdout and "sync-parallel" in r.stdout

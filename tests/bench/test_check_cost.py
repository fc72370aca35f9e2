"""The completion check's cost bench, smoke-sized: every request answered in every setting, with calls."""

import json


def test_check_cost_times_every_request_in_every_setting(bench, tmp_path):
    out = tmp_path / "check_cost.json"
    r = bench("check_cost.py", "--runs", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report["settings"]) == {"off", "check", "app"}
    assert len(report["requests"]) == 3
    for by_setting in report["requests"].values():
        assert set(by_setting) == {"off", "check", "app"}
        for (run,) in by_setting.values():
            assert run["reason"] == "done" and run["calls"] >= 1
            assert 0 < run["first_call"] < run["turn"]
    assert "first call" in r.stdout

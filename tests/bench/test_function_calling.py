"""The function-calling benchmark, small: a few tasks of every workload on the test model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[2]


BFCL = shared_data("bfcl", "ASYNCLM_BFCL_DIR")
if BFCL is None:
    pytest.skip("shared/bfcl (BFCL data) is not next to this checkout; set ASYNCLM_BFCL_DIR",
                allow_module_level=True)

MODES = ("sync", "sync-parallel", "async")
WORKLOADS = ("parallel", "parallel_multiple", "multi_step", "user_interrupts")


def test_smoke_run_reports_every_workload_and_async_is_not_slower_on_parallel(tmp_path):
    out, chart = tmp_path / "report.json", tmp_path / "timeline.png"
    # tool latencies 6 times the benchmark's (0.2-3 s): on parallel tasks async then wins by a few
    # tenths of a second, far more than a busy machine adds to decoding two tasks
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "function_calling.py"), "--models", "tiny", "--tasks", "2",
         "--bfcl-dir", str(BFCL), "--threads", "2", "--latency-scale", "6", "--out", str(out), "--chart", str(chart)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "function calling: end-to-end latency" in done.stdout
    report = json.loads(out.read_text())
    assert chart.stat().st_size > 10_000
    per_workload = report["models"]["tiny"]
    assert set(per_workload) == set(WORKLOADS)
    for workload, data in per_workload.items():
        summary = data["summary"]
        assert set(summary) == set(MODES)
        assert summary["sync"]["speedup_vs_sync"] == 1.0
        for mode in MODES:
            s, rows = summary[mode], data["tasks"][mode]
            assert s["tasks"] == len(rows) == 2
            assert 0 < s["bound_mean_s"] and 0 < s["efficiency"] <= 1.05, (workload, mode, s)
            for row in rows:
                assert row["calls"] == len(row["timeline"]["calls"]) >= 1
                assert row["timeline"]["tokens"][0] == 0.0 and row["timeline"]["end"] == pytest.approx(
                    row["latency"], abs=1e-3)
    # Ratios within this one run: on parallel tasks async overlaps the calls' latencies.
    parallel = per_workload["parallel"]["summary"]
    assert parallel["async"]["mean_s"] <= parallel["sync"]["mean_s"]
    user = per_workload["user_interrupts"]["tasks"]["async"]
    assert all(row["calls"] >= 6 for row in user), "the tasks typed mid-answer were acted on"


def test_ground_truth_calls_hold_only_arguments_their_functions_declare():
    sys.path.insert(0, str(ROOT / "bench"))
    from function_calling import bfcl_tasks

    for category in ("parallel", "parallel_multiple"):
        for task in bfcl_tasks(BFCL, category, 200):
            for call in task.segments[0]:
                declared = task.functions[call.name].get("properties", {})
                assert set(call.args) <= set(declared), (task.task_id, call.name, call.args)
    # BFCL's answer for this task names an argument its function lacks
    task = next(t for t in bfcl_tasks(BFCL, "parallel_multiple", 13) if t.task_id == "parallel_multiple_12")
    assert [c.args for c in task.segments[0]][1] == {"electric_field": 5.0, "distance": 3.0, "charge": 0.0}

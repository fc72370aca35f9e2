"""The fault-injection suite: 1,000 calls to misbehaving tools through the real command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import faults  # noqa: E402


@pytest.mark.timeout(900)  # about 3 minutes on two idle cores
def test_a_thousand_faulty_calls_each_get_one_result_and_every_process_exits(tmp_path, report_counts):
    out = tmp_path / "faults.json"
    code = faults.main(["--calls", "1000", "--out", str(out)])
    report = json.loads(out.read_text())
    report_counts(f"fault injection: {report['calls']} calls in {report['runs']} processes, "
                  f"{report['tracebacks']} tracebacks, {report['hung_turns']} hung turns, "
                  f"{report['calls_without_exactly_one_result']} calls without exactly one result interrupt, "
                  f"slowest exit {report['slowest_exit_after_turn_s']}s after the last turn")
    assert report["calls"] == 1000 and set(report["calls_by_fault"]) == set(faults.FAULTS)
    assert code == 0, report


def test_the_counts_can_fail(tmp_path, monkeypatch):
    """A call the engine refuses (the same call again) never runs: it counts as a call without a result."""
    monkeypatch.setattr(faults, "FAULTS", {"the same call": "raises(n=1)"})
    out = tmp_path / "faults.json"
    assert faults.main(["--calls", "3", "--out", str(out)]) == 1
    assert json.loads(out.read_text())["calls_without_exactly_one_result"] == 2

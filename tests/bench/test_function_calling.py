"""The function-calling benchmark, small: a few tasks of every workload on the test model."""

import json
import statistics
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
    # Within this one run: on parallel tasks async overlaps the calls' latencies, so it spends less
    # time not decoding. (Whole latencies add the decoding, whose speed a busy machine moves by more
    # than the two tasks' overlap: sync came out faster in half of six runs beside two busy loops.)
    def waiting(mode: str) -> float:
        rows = per_workload["parallel"]["tasks"][mode]
        return statistics.fmean(r["latency"] - r["generated"] * r["ms_per_token"] / 1000 for r in rows)

    assert waiting("async") < waiting("sync"), (waiting("async"), waiting("sync"))
    user = per_workload["user_interrupts"]["tasks"]["async"]
    assert all(row["calls"] >= 6 for row in user), "the tasks typed mid-answer were acted on"


def test_ground_truth_calls_hold_only_arguments_their_functions_declare():
    sys.path.insert(0, str(ROOT / "bench"))
    from bfcl import bfcl_tasks

    for category in ("parallel", "parallel_multiple", "multiple", "simple_python"):
        loaded = bfcl_tasks(BFCL, category, 400)
        assert len(loaded.tasks) + len(loaded.skipped) >= 200, "any category file is read"
        for task in loaded.tasks:
            for call in task.segments[0]:
                declared = task.functions[call.name].get("properties", {})
                assert set(call.args) <= set(declared), (task.task_id, call.name, call.args)
    # BFCL's answer for this task names an argument its function lacks
    task = next(t for t in bfcl_tasks(BFCL, "parallel_multiple", 13).tasks if t.task_id == "parallel_multiple_12")
    assert [c.args for c in task.segments[0]][1] == {"electric_field": 5.0, "distance": 3.0, "charge": 0.0}


def test_answer_sets_become_one_concrete_valid_argument_or_none():
    sys.path.insert(0, str(ROOT / "bench"))
    from bfcl import OMIT, accepts, concrete, matches

    assert concrete(["", "copper"]) == "copper" and concrete([None, 3]) == 3
    assert concrete(["dontcare"]) is OMIT and concrete([""]) is OMIT and concrete([None]) is OMIT
    assert concrete([["Friends"]]) == ["Friends"], "a list value is a value"
    assert concrete([{"city": ["Paris"], "unit": ["", "celsius"], "note": [""]}]) == {"city": "Paris", "unit": "celsius"}
    assert accepts(["", "copper"], "Copper ") and not accepts(["copper"], "iron") and accepts([5], 5.0)
    assert accepts([{"city": ["Paris", "paris, fr"], "unit": [""]}], {"city": "Paris, FR"})
    assert not accepts([True], 1), "a boolean is not a number"
    truth = {"calc": {"a": [1], "b": ["", 2]}}
    assert matches(truth, "calc", {"a": 1}) and matches(truth, "calc", {"a": 1.0, "b": 2})
    assert not matches(truth, "calc", {"b": 2}) and not matches(truth, "calc", {"a": 1, "c": 0})
    assert not matches(truth, "other", {"a": 1})


def test_tasks_keep_their_own_functions_and_unrunnable_ones_are_skipped_and_counted(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from bfcl import bfcl_tasks, combine

    questions = [
        {"id": "p_0", "question": [[{"role": "user", "content": "area of 2 and 3"}]],
         "function": [{"name": "area", "parameters": {"type": "dict", "properties": {
             "w": {"type": "integer"}, "h": {"type": "integer"}}, "required": ["w", "h"]}}]},
        {"id": "p_1", "question": [[{"role": "user", "content": "area of a circle of 2"}]],
         "function": [{"name": "area", "parameters": {"type": "dict", "properties": {
             "radius": {"type": "float"}}, "required": ["radius"]}}]},
        {"id": "p_2", "question": [[{"role": "user", "content": "broken"}]],
         "function": [{"name": "f", "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}}}]},
        {"id": "p_3", "question": [[{"role": "user", "content": "unknown"}]], "function": []},
    ]
    answers = [
        {"id": "p_0", "ground_truth": [{"area": {"w": [2], "h": [3]}}]},
        {"id": "p_1", "ground_truth": [{"area": {"radius": [2.0], "unit": ["", "cm"]}}]},
        {"id": "p_2", "ground_truth": [{"f": {"n": ["many"]}}]},
        {"id": "p_3", "ground_truth": [{"g": {}}]},
    ]
    (tmp_path / "possible_answer").mkdir()
    for path, rows in ((tmp_path / "BFCL_v4_mine.json", questions),
                       (tmp_path / "possible_answer" / "BFCL_v4_mine.json", answers)):
        path.write_text("\n".join(json.dumps(r) for r in rows))
    loaded = bfcl_tasks(tmp_path, "mine", 10)
    assert [t.task_id for t in loaded.tasks] == ["p_0", "p_1"]
    assert set(loaded.skipped) == {"p_2", "p_3"}
    assert "does not validate" in loaded.skipped["p_2"] and "does not declare" in loaded.skipped["p_3"]
    both = combine(loaded.tasks, "both", "user_interrupts")
    assert set(both.functions) == {"area", "area_2"}, "the same name with other parameters is kept apart"
    assert [[c.name for c in s] for s in both.segments] == [["area"], ["area_2"]]
    assert both.functions["area_2"]["properties"] == {"radius": {"type": "float"}}


def test_the_bound_writes_a_message_typed_mid_answer_as_soon_as_it_enters(tiny_model):
    sys.path.insert(0, str(ROOT / "bench"))
    from function_calling import ARRIVALS, Call, Task, lpt_bound, segment_script

    from asynclm.core.cml import split_atoms
    from asynclm.core.dialect import select_dialect
    from asynclm.core.llama import LlamaBackend

    dialect = select_dialect(LlamaBackend(tiny_model, n_ctx=256, n_threads=1))
    task = Task("t", "user_interrupts", [[Call("a1", "get_weather", {"city": "Paris"})],
                                         [Call("b1", "get_time", {"zone": "UTC"})]], ["first", "second"], {})
    scripts = [segment_script(seg, k == 0) for k, seg in enumerate(task.segments)]
    first, second = (len(dialect.encode(split_atoms(s))) for s in scripts)
    per_token = 1.0 / first  # the first answer takes a second to write; the second message comes at 0.2 s
    assert ARRIVALS[1] == 0.2

    def tokens_to(script: str, marker: str, after: bool = False) -> int:
        cut = script.index(marker) + (len(marker) if after else 0)
        return len(dialect.encode(split_atoms(script[:cut])))

    # with instant calls, the bound is the time to write every token after the first (the measured
    # latency starts when the first is out)
    assert lpt_bound(dialect, task, scripts, per_token, {"a1": 0.0, "b1": 0.0}) == pytest.approx(
        (first + second - 1) * per_token)
    # b1 is written from 0.2 s on (not after the first answer's second), then runs its 5 s from the
    # moment its [END] is chosen
    b1 = tokens_to(scripts[1], "[END]", after=True)
    bound = lpt_bound(dialect, task, scripts, per_token, {"a1": 0.0, "b1": 5.0})
    assert 0.2 + (b1 - 1) * per_token + 5.0 <= bound < 1.0 + 5.0
    # but never inside a block: where 0.2 s falls just after a1's [CALL], a1's block is finished first
    a1_start, a1_end = tokens_to(scripts[0], "[CALL]"), tokens_to(scripts[0], "[END]", after=True)
    late = 0.2 / (a1_start + 0.5)
    bound = lpt_bound(dialect, task, scripts, late, {"a1": 0.0, "b1": 5.0})
    assert bound == pytest.approx((a1_end - 1 + b1 - 1) * late + 5.0)


def test_the_bound_prices_each_token_at_the_time_it_took(tiny_model):
    sys.path.insert(0, str(ROOT / "bench"))
    from function_calling import Call, Task, lpt_bound, segment_script

    from asynclm.core.cml import split_atoms
    from asynclm.core.dialect import select_dialect
    from asynclm.core.llama import LlamaBackend

    dialect = select_dialect(LlamaBackend(tiny_model, n_ctx=256, n_threads=1))
    task = Task("t", "parallel", [[Call("a1", "get_weather", {"city": "Paris"}),
                                   Call("a2", "get_time", {"zone": "UTC"})]], ["first"], {})
    script = segment_script(task.segments[0], True)
    n = len(dialect.encode(split_atoms(script)))
    # the machine was busy while the calls were written and idle after: the calls started late
    last_end = len(dialect.encode(split_atoms(script[:script.rindex("[END]") + len("[END]")])))
    times = [0.05] * last_end + [0.001] * (n - last_end)
    runtime = {"a1": 1.0, "a2": 1.0}
    # the last call starts as its [END] is chosen: after every token before it but the first
    assert lpt_bound(dialect, task, [script], times, runtime) == pytest.approx(0.05 * (last_end - 2) + 1.0)
    # priced at the mean, the same tokens would have started the calls earlier than they could
    assert lpt_bound(dialect, task, [script], sum(times) / n, runtime) < 0.05 * (last_end - 2) + 1.0 - 0.01

"""The real-model evaluation runs end to end on the installed Qwen2.5-Coder-0.5B, and scores as it says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from real_models import MARKUP, Oracle, bfcl_exact, bfcl_requests, use_tools, values_in  # noqa: E402
from bfcl import registry_for  # noqa: E402
from conftest import shared_data  # noqa: E402

from asynclm.core.catalog import NAMED_MODELS, status  # noqa: E402
from asynclm.tools.builtins import default_registry  # noqa: E402


def test_values_are_found_as_written_or_rounded():
    assert values_in("It is 42.16 km.", ["26.2 mile = 42.16481 kilometer"])
    assert values_in("That is 256.", ["256.0"])
    assert not values_in("That is 255.", ["256"])
    assert values_in("anything", ["no number here"])


def test_markup_is_found_however_it_is_spaced():
    assert MARKUP.search('```json\n{\n  "name": "calculator"')
    assert MARKUP.search("ok [END]") and MARKUP.search("<tool_response>") and MARKUP.search("<|im_end|>")
    assert not MARKUP.search("12*34 is 408 [see above]")


def test_calls_match_by_their_results():
    oracle = Oracle(default_registry())
    assert oracle.same('calculator(expression="sqrt(144)")', "calculator(expression='144**0.5')", {})
    assert not oracle.same('calculator(expression="7*8")', "calculator(expression='7*9')", {})
    assert oracle.same('convert_units(value=5, from_unit="kg", to_unit="lb")',
                       "convert_units(value=5, from_unit='kilogram', to_unit='pound')", {})
    assert oracle.same('current_time(timezone="Asia/Tokyo")', "current_time(timezone='Asia/Tokyo')", {})
    assert not oracle.same('current_time(timezone="Europe/Berlin")', "current_time(timezone='Europe/Oslo')", {})


@pytest.mark.skipif(shared_data("bfcl", "ASYNCLM_BFCL_DIR") is None, reason="no BFCL data beside the checkout")
def test_bfcl_tasks_score_as_bfcl_does_on_their_own_tools():
    requests, skipped = bfcl_requests(shared_data("bfcl", "ASYNCLM_BFCL_DIR"), 2)
    assert len(requests) == 6 and not skipped
    spotify = requests[0]
    assert spotify.task.task_id == "parallel_0" and len(spotify.calls) == 2
    tools = registry_for(spotify.task, 0.0)
    right = ["spotify.play(artist='Maroon 5', duration=15)", "spotify.play(artist='taylor swift', duration=20.0)"]
    assert bfcl_exact(spotify.task, tools, right), "any order, case and number type"
    assert not bfcl_exact(spotify.task, tools, right[:1]), "a call missing"
    assert not bfcl_exact(spotify.task, tools, right + right[:1]), "a call too many"
    assert not bfcl_exact(spotify.task, tools, [right[0], "spotify.play(artist='Adele', duration=20)"])
    assert not bfcl_exact(spotify.task, tools, [right[0], "spotify.play(artist='Taylor Swift', duration=20"])
    registry = default_registry()
    use_tools(registry, tools)
    assert registry.names() == ["spotify.play"]


@pytest.mark.slow
@pytest.mark.skipif(not status(NAMED_MODELS["qwen2.5-coder-0.5b"]).present, reason="the real model is not installed")
def test_the_evaluation_runs_on_the_real_model(bench, tmp_path):
    out = tmp_path / "real.json"
    r = bench("real_models.py", "--model", "qwen2.5-coder-0.5b", "--requests", "2", "--mode", "async",
              "--out", str(out))
    assert "| tools/async |" in r.stdout
    summary = json.loads(out.read_text())["runs"]["tools/async"]["summary"]
    assert summary["requests"] == 2 and summary["leaked_markup"] == 0

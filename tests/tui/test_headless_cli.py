"""``asynclm-chat --headless`` end to end, as a user runs it: a real process on a GGUF path."""

import json
import subprocess
import sys

import pytest

from conftest import EMPTY_CONFIG

SCRIPT = ('On it.[CALL] w [HEAD] wait(seconds=0.2) [END][CALL] c [HEAD] calculator(expression="17*23") [END]'
          "Working.[TRAP] [END]17*23 is 391.[TRAP] [END] Done.")


def run_cli(*args, env_home=None):
    env = None
    if env_home is not None:
        import os
        env = {**os.environ, "XDG_DATA_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "asynclm.tui.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_headless_prints_the_answer_and_a_timing_summary(tiny_model, tmp_path):
    r = run_cli("--headless", "--model", str(tiny_model), "--prompt", "17*23, and wait a bit",
                "--script", SCRIPT, env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "On it.Working.17*23 is 391. Done."
    assert "async mode · native dialect" in r.stderr
    assert "calculator(expression='17*23')" in r.stderr and "done +" in r.stderr
    assert "interrupts entered:" in r.stderr
    session = next((tmp_path / "asynclm" / "sessions").glob("*.jsonl"))
    types = [json.loads(line)["type"] for line in session.read_text().splitlines()]
    assert types[0] == "SessionStarted" and types[-1] == "TurnEnded"


def test_headless_json_prints_every_event(tiny_model):
    r = run_cli("--headless", "--model", str(tiny_model), "--prompt", "go", "--script", SCRIPT,
                "--json", "--no-session", "--mode", "sync")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    types = {e["type"] for e in events}
    assert {"SessionStarted", "TurnStarted", "TokenGenerated", "CallDetected", "CallStarted",
            "CallFinished", "InterruptInjected", "TrapEntered", "Stats", "TurnEnded"} <= types
    assert all(isinstance(e["t"], float) for e in events)
    assert events[-1]["type"] == "TurnEnded" and events[-1]["reason"] == "done"


def test_headless_on_a_sampling_model_ends_cleanly(tiny_model):
    r = run_cli("--headless", "--model", str(tiny_model), "--prompt", "hello", "--seed", "1",
                "--max-tokens", "200", "--no-session")
    assert r.returncode == 0, r.stderr
    assert "tokens generated" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent/m.gguf", "--prompt", "hi"], "No model file at /nonexistent/m.gguf."),
    (["--model", "{tiny}"], "--headless needs --prompt"),
    (["--model", "{tiny}", "--prompt", "hi", "--top-p", "2"], "Bad sampling setting: top_p must be in (0, 1]."),
    (["--model", "{tiny}", "--prompt", "hi", "--script", "@/nonexistent/s.txt"], "Cannot read the script file"),
    (["--model", "{tiny}", "--prompt", "hi", "--max-tokens", "0"], "--max-tokens must be at least 1"),
    (["--model", "{tiny}", "--prompt", "hi", "--payload-limit", "0"], "--payload-limit must be at least 1"),
    (["--model", "{tiny}", "--prompt", "hi", "--turn-timeout", "-1"], "--turn-timeout must be 0 (no limit) or more"),
    (["--model", "{tiny}", "--prompt", "hi", "--script", '[CALL] a [HEAD] calculator('],
     "The script breaks the call protocol: it ends inside a call block."),
    (["--model", "{tiny}", "--prompt", "hi", "--script", "hi [END] there"],
     "The script breaks the call protocol: [END] outside a block is not allowed (after 'hi [END]')."),
    (["--model", "{tiny}", "--prompt", "hi", "--resume", "/nonexistent/s.jsonl"], "No session file '/nonexistent/s.jsonl'"),
    (["--model", "{tiny}", "--prompt", "hi", "--resume", "{bytes}"], "it is not a UTF-8 text file."),
    (["--model", "{tiny}", "--prompt", "hi", "--resume", "{empty}"], "the session file has no session in it."),
])
def test_bad_input_gives_one_sentence(tiny_model, tmp_path, args, message):
    (tmp_path / "bytes.jsonl").write_bytes(b"\xff\xfe not text\n")
    (tmp_path / "empty.jsonl").write_text('{"type": "Notice", "level": "info", "message": "hi"}\n')
    args = [a.replace("{tiny}", str(tiny_model)).replace("{bytes}", str(tmp_path / "bytes.jsonl"))
            .replace("{empty}", str(tmp_path / "empty.jsonl")) for a in args]
    r = run_cli("--headless", *args, "--no-session")
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_session_file_that_cannot_be_written_is_one_sentence(tiny_model, tmp_path):
    r = run_cli("--headless", "--model", str(tiny_model), "--prompt", "hi", "--script", "ok", "--session", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"asynclm-chat: Cannot write the session file {tmp_path}: Is a directory.")


def test_headless_resume_continues_the_same_session_in_the_same_file(tiny_model, tmp_path):
    path = tmp_path / "s.jsonl"
    first = run_cli("--headless", "--model", str(tiny_model), "--session", str(path), "--prompt", "6*7?",
                    "--script", '[CALL] c [HEAD] calculator(expression="6*7") [END]42.')
    assert first.returncode == 0, first.stderr
    again = run_cli("--headless", "--model", str(tiny_model), "--resume", str(path), "--json", "--prompt", "and 7*7?",
                    "--script", '[CALL] c [HEAD] calculator(expression="7*7") [END]49.')
    assert again.returncode == 0, again.stderr
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert next(e for e in events if e["type"] == "SessionResumed")["path"] == str(path)
    assert next(e for e in events if e["type"] == "TurnStarted")["turn"] == 2
    rejected = next(e for e in events if e["type"] == "CallRejected")
    assert "DuplicateCallId: the id c is already used" in rejected["reason"], "the ids carry over"
    written = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert written.count("SessionStarted") == 1 and written.count("TurnEnded") == 2, "one file, both turns"


def test_a_missing_embedded_model_is_one_sentence(monkeypatch, tmp_path, capsys):
    import asynclm
    from asynclm.tui import cli

    monkeypatch.setattr(asynclm, "EMBEDDED_MODEL", tmp_path / "gone.gguf")
    assert cli.main(["--headless", "--prompt", "hi", "--no-session", "--config", str(EMPTY_CONFIG)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"asynclm-chat: No model given and the embedded model is missing ({tmp_path / 'gone.gguf'}): "
                   "pass --model PATH to a GGUF file.")


def test_tools_flag_loads_a_user_file_and_names_the_broken_function(tiny_model, tmp_path):
    tools = tmp_path / "my_tools.py"
    tools.write_text('def greet(name: str) -> str:\n    """Greet."""\n    return f"hi {name}"\n\n'
                     'def broken(x) -> str:\n    """No type."""\n    return x\n')
    r = run_cli("--headless", "--model", str(tiny_model), "--prompt", "greet Ana", "--no-session",
                "--tools", str(tools), "--script",
                '[CALL] g [HEAD] greet(name="Ana") [END][TRAP] [END]Said hi.')
    assert r.returncode == 0, r.stderr
    assert f"asynclm-chat: {tools}: function 'broken' cannot be a tool: parameter 'x' has no type annotation." in r.stderr
    assert "greet(name='Ana')" in r.stderr and " done +" in r.stderr
    assert r.stdout.strip() == "Said hi."

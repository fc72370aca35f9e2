"""The config file: read, typed, validated; flags override it; mistakes are one sentence."""

import subprocess
import sys
from pathlib import Path

import pytest

from asynclm.tui.config import ConfigError, load_settings
from conftest import EMPTY_CONFIG


def test_settings_are_read_and_typed(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('model = "~/m.gguf"\nmode = "sync"\ntimeline = false\n'
                    '[sampling]\ntemperature = 0\ntop_k = 10\n[keymap]\nstop = "ctrl+c"\n')
    s = load_settings(path)
    assert s.model == "~/m.gguf" and s.mode == "sync" and s.timeline is False
    assert s.sampling.temperature == 0.0 and s.sampling.top_k == 10 and s.sampling.top_p == 0.95
    assert s.keymap == {"stop": "ctrl+c"}
    assert load_settings(EMPTY_CONFIG).mode == "async"


@pytest.mark.parametrize("text, message", [
    ('mode = "fast"', "mode should be one of async, sync, sync-parallel, not 'fast'."),
    ("n_ctx = 'big'", "n_ctx should be int, not 'big'."),
    ("colour = 1", "unknown setting 'colour'."),
    ("[sampling]\ntop_p = 2.0", "top_p must be in (0, 1]."),
    ("model = ", "is not valid TOML"),
])
def test_bad_settings_are_one_sentence(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_flags_override_the_config_and_a_bad_config_stops_the_cli_in_one_line(tmp_path, tiny_model):
    good = tmp_path / "good.toml"
    good.write_text(f'model = "{tiny_model}"\nmode = "sync"\n')
    run = lambda *a: subprocess.run([sys.executable, "-m", "asynclm.tui.cli", "--headless", "--no-session",
                                     "--prompt", "hi", "--script", "Hi.", *a], capture_output=True,
                                    text=True, timeout=120)
    assert "sync mode" in run("--config", str(good)).stderr, "the model and mode come from the file"
    assert "sync-parallel mode" in run("--config", str(good), "--mode", "sync-parallel").stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("mode = 3")
    r = run("--config", str(bad))
    assert r.returncode == 2 and r.stderr.strip() == f"asynclm-chat: {bad}: mode should be str, not 3."
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'mode = "sync"\n# caf\xe9\n')
    r = run("--config", str(latin))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"asynclm-chat: {latin} is not a UTF-8 text file, as a TOML config file must be.")
    r = run("--config", str(tmp_path / "typo.toml"))
    assert r.returncode == 2 and r.stderr.strip() == f"asynclm-chat: There is no config file {tmp_path / 'typo.toml'}."


def test_the_copy_bias_is_on_for_the_embedded_model_only_unless_set(tmp_path, tiny_model):
    from asynclm import EMBEDDED_MODEL
    from asynclm.core.profiles import EMBEDDED
    from asynclm.tui.cli import UsageError, apply_settings, build_parser

    none = EMPTY_CONFIG

    def bias(*argv: str) -> float:
        args = build_parser().parse_args(["--config", str(none), *argv])
        apply_settings(args)
        return args.copy_bias

    if EMBEDDED_MODEL.is_file():
        assert bias() == EMBEDDED.copy_bias > 0
    assert bias("--model", str(tiny_model)) == 0.0
    assert bias("--model", str(tiny_model), "--copy-bias", "inf") == float("inf")
    if EMBEDDED_MODEL.is_file():
        assert bias("--copy-bias", "0") == 0.0
    (tmp_path / "set.toml").write_text(f'model = "{tiny_model}"\ncopy_bias = 3\n')
    args = build_parser().parse_args(["--config", str(tmp_path / "set.toml")])
    apply_settings(args)
    assert args.copy_bias == 3.0
    with pytest.raises(UsageError, match="--copy-bias must be 0"):
        bias("--model", str(tiny_model), "--copy-bias", "-1")
    (tmp_path / "bad.toml").write_text("copy_bias = -2")
    with pytest.raises(ConfigError, match="copy_bias should be 0"):
        load_settings(tmp_path / "bad.toml")


@pytest.mark.parametrize("name", ["complete_calls", "break_loops"])
def test_the_decode_time_help_is_on_for_the_embedded_model_only_unless_set(tmp_path, tiny_model, name):
    """The completion check and the loop breaker: on for the embedded model, off for others and for a
    script, and set by the file or the command line (which wins)."""
    from asynclm import EMBEDDED_MODEL
    from asynclm.core.profiles import EMBEDDED
    from asynclm.tui.cli import build_engine, apply_settings, build_parser, build_tools

    none, flag = EMPTY_CONFIG, "--" + name.replace("_", "-")

    def check(*argv: str, config: Path = none) -> bool:
        args = build_parser().parse_args(["--config", str(config), *argv])
        apply_settings(args)
        return getattr(args, name)

    if EMBEDDED_MODEL.is_file():
        assert check() is getattr(EMBEDDED, name) is True
        assert check(flag.replace("--", "--no-")) is False
        assert check("--script", "Hi.") is False, "a script decides what is written"
        assert check("--script", "Hi.", flag) is True
    assert check("--model", str(tiny_model)) is False
    assert check("--model", str(tiny_model), flag) is True
    (tmp_path / "set.toml").write_text(f'model = "{tiny_model}"\n{name} = true\n')
    assert check(config=tmp_path / "set.toml") is True
    args = build_parser().parse_args(["--config", str(tmp_path / "set.toml"), flag.replace("--", "--no-")])
    apply_settings(args)
    engine = build_engine(args, build_tools(args)[0])
    try:
        assert getattr(engine.config, name) is False, "the command line wins over the file"
    finally:
        engine.close()
        engine.backend.close()
    (tmp_path / "bad.toml").write_text(f'{name} = "yes"')
    with pytest.raises(ConfigError, match=f"{name} should be bool"):
        load_settings(tmp_path / "bad.toml")


def test_threads_are_checked_against_the_cores(tmp_path, tiny_model):
    import os

    from asynclm.tui.cli import UsageError, apply_settings, build_parser

    cores = len(os.sched_getaffinity(0))

    def threads(*argv: str) -> int | None:
        args = build_parser().parse_args(["--model", str(tiny_model), "--config", str(EMPTY_CONFIG),
                                          *argv])
        apply_settings(args)
        return args.threads

    assert threads() is None and threads("--threads", "0") == 0  # the default
    assert threads("--threads", str(cores)) == cores
    for bad in (-1, cores + 1, 1000):
        with pytest.raises(UsageError, match=f"--threads must be from 1 to {cores}, .* not {bad}"):
            threads("--threads", str(bad))
    (tmp_path / "eight.toml").write_text(f"threads = {cores + 6}\n")
    with pytest.raises(UsageError, match="--threads must be from 1"):
        apply_settings(build_parser().parse_args(["--model", str(tiny_model), "--config", str(tmp_path / "eight.toml")]))


def test_the_embedded_model_decodes_greedily_unless_sampling_is_set(tmp_path, tiny_model):
    from asynclm import EMBEDDED_MODEL
    from asynclm.tui.cli import apply_settings, build_parser

    def sampling(config: str, *argv: str) -> tuple[float, float, int]:
        path = tmp_path / "c.toml"
        path.write_text(config)
        args = build_parser().parse_args(["--config", str(path), *argv])
        apply_settings(args)
        return args.temperature, args.repeat_penalty, args.top_k

    other = sampling(f'model = "{tiny_model}"')
    assert other == (0.7, 1.1, 40), "other models keep the sampler's defaults"
    if EMBEDDED_MODEL.is_file():
        assert sampling("") == (0.0, 1.0, 40)
        assert sampling("", "--temperature", "0.5") == (0.5, 1.0, 40)
        assert sampling("[sampling]\ntemperature = 0.9\nrepeat_penalty = 1.2\n") == (0.9, 1.2, 40)
        assert sampling("[sampling]\ntemperature = 0.9\n") == (0.9, 1.0, 40)

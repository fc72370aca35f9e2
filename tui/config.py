"""Settings: a TOML file in the user's config folder, overridden by command-line flags.

    ~/.config/asynclm/config.toml   (or $XDG_CONFIG_HOME/asynclm/config.toml)

    model = "~/models/qwen2.5-3b-instruct-q4_k_m.gguf"
    mode = "async"
    theme = "textual-dark"
    tools = ["~/my_tools.py"]
    allow_shell = false
    copy_bias = 0          # logits; default: 8 for the embedded model, 0 (off) for others
    complete_calls = false # default: on for the embedded model, off for others
    break_loops = false    # default: on for the embedded model, off for others

    [sampling]        # default: greedy for the embedded model, else temperature 0.7, top_k 40, ...
    temperature = 0.7
    top_k = 40

    [keymap]          # binding id = keys
    stop = "escape"
    timeline = "ctrl+t"
"""

from __future__ import annotations

import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from asynclm.core.sampling import SamplingSettings

MODES = ("async", "sync", "sync-parallel")


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one sentence."""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "asynclm" / "config.toml"


@dataclass
class Settings:
    model: str | None = None
    mode: str = "async"
    dialect: str = "auto"
    n_ctx: int = 0  # 0: the model's trained context, up to 8192 tokens
    threads: int | None = None
    max_tokens: int = 4096
    turn_timeout: float = 300.0  # seconds a turn may take, waits included (0: no limit)
    extra_buffers: str = "auto"  # llama.cpp's extra buffer types: auto | on | off (core/llama.py)
    payload_limit: int = 1000  # tokens
    copy_bias: float | None = None  # None: on for the embedded model only (core/copying.py)
    complete_calls: bool | None = None  # None: on for the embedded model only (core/completion.py)
    break_loops: bool | None = None  # None: on for the embedded model only (core/steering.py, LoopBreaker)
    tools: list[str] = field(default_factory=list)
    allow_shell: bool = False
    root: str | None = None
    theme: str = "textual-dark"
    timeline: bool = True
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sampling_given: frozenset[str] = frozenset()  # the sampling settings the file sets
    keymap: dict[str, str] = field(default_factory=dict)


def _check(name: str, value: Any, expected: Any, where: Path) -> Any:
    types = expected if isinstance(expected, tuple) else (expected,)
    if value is None and type(None) in types:
        return value
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        want = " or ".join(t.__name__ for t in types if t is not type(None))
        raise ConfigError(f"{where}: {name} should be {want}, not {value!r}.")
    return value


_TYPES = {
    "model": (str, type(None)), "mode": str, "dialect": str, "n_ctx": int, "threads": (int, type(None)),
    "max_tokens": int, "turn_timeout": float, "extra_buffers": str, "payload_limit": int, "copy_bias": (float, type(None)),
    "complete_calls": (bool, type(None)), "break_loops": (bool, type(None)), "tools": list,
    "allow_shell": bool, "root": (str, type(None)),
    "theme": str, "timeline": bool,
}
_SAMPLING_TYPES = {"temperature": float, "top_k": int, "top_p": float, "min_p": float,
                   "repeat_penalty": float, "repeat_last_n": int, "seed": (int, type(None))}


def load_settings(path: Path | None = None) -> Settings:
    """The settings in the config file, or the defaults if there is none. A file named on the command
    line (``path``) must exist."""
    settings = Settings()
    if path is not None and not path.exists():
        raise ConfigError(f"There is no config file {path}.")
    path = path or config_path()
    if not path.exists():
        return settings
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file, as a TOML config file must be.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    known = {f.name for f in fields(Settings)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}.")
        if key == "sampling":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [sampling] should be a table.")
            values = {}
            for k, v in value.items():
                if k not in _SAMPLING_TYPES:
                    raise ConfigError(f"{path}: unknown sampling setting {k!r}.")
                values[k] = _check(f"sampling.{k}", v, _SAMPLING_TYPES[k], path)
            try:
                settings.sampling = replace(settings.sampling, **values)
                settings.sampling_given = frozenset(values)
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}.") from None
        elif key == "keymap":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{path}: [keymap] should map binding ids to key names.")
            settings.keymap = dict(value)
        else:
            setattr(settings, key, _check(key, value, _TYPES[key], path))
    if settings.copy_bias is not None and not settings.copy_bias >= 0:
        raise ConfigError(f"{path}: copy_bias should be 0 (off) or more, not {settings.copy_bias!r}.")
    if settings.extra_buffers not in ("auto", "on", "off"):
        raise ConfigError(f"{path}: extra_buffers should be auto, on or off, not {settings.extra_buffers!r}.")
    if not settings.turn_timeout >= 0:
        raise ConfigError(f"{path}: turn_timeout should be 0 (no limit) or more seconds, not {settings.turn_timeout!r}.")
    if settings.mode not in MODES:
        raise ConfigError(f"{path}: mode should be one of {', '.join(MODES)}, not {settings.mode!r}.")
    return settings

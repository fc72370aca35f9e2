"""Built-in tools: each does real work on the user's machine, nothing canned."""

from __future__ import annotations

import asyncio
import functools
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from . import calc
from .files import FileSandbox
from .registry import Registry
from .shell import make_shell
from .units import convert_units
from .web import http_get


def calculator(expression: str) -> float | int:
    """Evaluate an arithmetic expression; the functions and constants of Python's math module work.

    Args:
        expression: for example "17*23", "sqrt(2)/2" or "log(1000, 10)".
    """
    return calc.evaluate(expression)


@functools.lru_cache(maxsize=1)
def _zones_by_name() -> dict[str, str]:
    """Every IANA zone under its lower-case key and under its last part (``lima``), read once."""
    zones = sorted(available_timezones())
    by_name = {zone.lower(): zone for zone in zones}
    for zone in zones:  # full names first: a last part never shadows a whole zone name
        by_name.setdefault(zone.rsplit("/", 1)[-1].lower(), zone)
    return by_name


def _zone(name: str) -> ZoneInfo:
    if name.strip().lower() in ("utc", "z", "gmt"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        pass
    zone = _zones_by_name().get(name.strip().replace(" ", "_").lower())
    if zone is not None:
        return ZoneInfo(zone)
    raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Oslo")


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in a time zone.

    Args:
        timezone: an IANA zone such as "Europe/Oslo", or a city in one such as "Lima".
    """
    zone = _zone(timezone)
    return dt.datetime.now(zone).strftime(f"%Y-%m-%d %H:%M:%S %Z ({zone.key})")


def convert_time(time: str, from_timezone: str, to_timezone: str) -> str:
    """Convert a date and time from one time zone to another.

    Args:
        time: "YYYY-MM-DD HH:MM" or just "HH:MM" (today).
        from_timezone: the zone the time is in.
        to_timezone: the zone to convert to.
    """
    src, dst = _zone(from_timezone), _zone(to_timezone)
    text = time.strip()
    try:
        if len(text) <= 5:
            clock = dt.time.fromisoformat(text)
            moment = dt.datetime.combine(dt.datetime.now(src).date(), clock, tzinfo=src)
        else:
            moment = dt.datetime.fromisoformat(text).replace(tzinfo=src)
    except ValueError:
        raise ValueError(f"cannot read {time!r} as a time; write YYYY-MM-DD HH:MM or HH:MM") from None
    return moment.astimezone(dst).strftime(f"%Y-%m-%d %H:%M %Z ({dst.key})")


async def wait(seconds: float) -> str:
    """Wait for a number of seconds (a timer), then say so.

    Args:
        seconds: how long to wait, up to one hour.
    """
    if not 0 <= seconds <= 3600:
        raise ValueError("seconds must be between 0 and 3600")
    await asyncio.sleep(seconds)
    return f"waited {seconds:g}s"


def default_registry(root: str | None = None, allow_shell: bool = False) -> Registry:
    """The built-in tools; file tools confined to ``root`` (default: the current folder)."""
    files = FileSandbox(root)
    reg = Registry()
    reg.add(calculator, estimate=0.005, timeout=5)
    reg.add(current_time, estimate=0.005, timeout=5)
    reg.add(convert_time, estimate=0.005, timeout=5)
    reg.add(convert_units, estimate=0.05, timeout=10)
    reg.add(files.list_dir, estimate=0.01, timeout=10)
    reg.add(files.read_file, estimate=0.02, timeout=20)
    reg.add(files.search_files, estimate=0.3, timeout=60)
    reg.add(files.file_info, estimate=0.01, timeout=10)
    reg.add(http_get, estimate=0.5, timeout=30)
    reg.add(wait, estimate=1.0, timeout=3700)
    if allow_shell:
        reg.add(make_shell(True, cwd=str(files.root)), estimate=1.0, timeout=600, dangerous=True)
    return reg

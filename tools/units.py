"""Unit conversion with pint: length, mass, temperature, volume, speed, data sizes and more."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _registry():
    import pint  # imported on first use: building the registry takes a moment

    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


_ALIASES = {
    "celsius": "degC", "°c": "degC", "c": "degC", "fahrenheit": "degF", "°f": "degF", "f": "degF",
    "kelvin": "kelvin", "k": "kelvin", "kph": "km/h", "kmh": "km/h", "km/hr": "km/h",
    "mph": "mile/hour", "kb": "kilobyte", "mb": "megabyte", "gb": "gigabyte", "tb": "terabyte",
    "kib": "kibibyte", "mib": "mebibyte", "gib": "gibibyte", "tib": "tebibyte",
}


def _unit(name: str) -> str:
    return _ALIASES.get(name.strip().lower(), name.strip())


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a quantity between units (length, mass, temperature, volume, speed, data sizes, ...).

    Args:
        value: the amount.
        from_unit: e.g. "km", "lb", "degF", "liter", "mph", "GB".
        to_unit: e.g. "mile", "kg", "degC", "gallon", "m/s", "MiB".
    """
    import pint

    ureg = _registry()
    try:
        quantity = ureg.Quantity(value, _unit(from_unit))
        result = quantity.to(_unit(to_unit))
    except pint.errors.DimensionalityError:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}: they measure different things") from None
    except (pint.errors.UndefinedUnitError, AttributeError, ValueError) as exc:
        raise ValueError(f"unknown unit in {from_unit!r} or {to_unit!r} ({exc})") from None
    magnitude = result.magnitude
    shown = f"{magnitude:.6g}" if isinstance(magnitude, float) else str(magnitude)
    return f"{value:g} {from_unit} = {shown} {to_unit}"

"""Typed functions become tools: schema from signature and docstring, validation, LPT estimates."""

import asyncio
import dataclasses
import re
from typing import Literal, Optional, TypedDict

import pytest

from asynclm.tools.registry import Registry, Tool
from asynclm.tools.schema import ArgumentError, SchemaError


class Address(TypedDict):
    city: str
    zip: int


@dataclasses.dataclass
class Box:
    width: float
    height: float = 1.0


def book(city: str, nights: int = 1, rooms: list[int] | None = None, kind: Literal["hotel", "hostel"] = "hotel",
         address: Optional[Address] = None, boxes: dict[str, list[Box]] | None = None) -> str:
    """Book a stay.

    Args:
        city: where to stay.
        nights: how many nights.
        kind: the kind of place.
    """
    return f"{city}/{nights}/{rooms}/{kind}/{address}/{boxes}"


def test_schema_from_signature_and_docstring():
    t = Tool(book)
    s = t.schema()
    assert s["description"] == "Book a stay."
    props = s["parameters"]["properties"]
    assert s["parameters"]["required"] == ["city"]
    assert props["city"] == {"type": "string", "description": "where to stay."}
    assert props["nights"] == {"type": "integer", "description": "how many nights.", "default": 1}
    assert props["rooms"]["anyOf"][0] == {"type": "array", "items": {"type": "integer"}}
    assert props["kind"]["enum"] == ["hotel", "hostel"]
    address = props["address"]["anyOf"][0]
    assert address["properties"] == {"city": {"type": "string"}, "zip": {"type": "integer"}}
    boxes = props["boxes"]["anyOf"][0]["additionalProperties"]["items"]
    assert boxes["required"] == ["width"] and boxes["properties"]["height"] == {"type": "number"}
    assert t.signature_text().startswith("book(city: str, nights: int = 1, rooms: list[int] | None = None")


def test_arguments_are_validated_and_converted():
    t = Tool(book)
    args = t.bind(("Oslo",), {"nights": 2.0, "kind": "hostel", "address": {"city": "Oslo", "zip": 150},
                              "boxes": {"a": [{"width": 2}]}})
    assert args["nights"] == 2 and isinstance(args["nights"], int)
    assert args["boxes"]["a"][0] == dataclasses.asdict(Box(2.0)) or args["boxes"]["a"][0] == Box(2.0)
    assert "rooms" not in args  # defaults are the function's own


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {}, "book is missing the required argument 'city'"),
    (("Oslo",), {"night": 2}, "book has no argument 'night' (its arguments: city, nights, rooms, kind, address, boxes)"),
    ((5,), {}, "argument 'city' should be a string, got 5 (int)"),
    (("Oslo",), {"nights": "two"}, "argument 'nights' should be an integer, got 'two' (str)"),
    (("Oslo",), {"nights": True}, "argument 'nights' should be an integer, got True (bool)"),
    (("Oslo",), {"kind": "tent"}, "argument 'kind' should be one of 'hotel', 'hostel', got 'tent' (str)"),
    (("Oslo",), {"rooms": [1, "x"]}, "argument 'rooms' should be list[int] | None"),
    (("Oslo",), {"address": {"city": "Oslo"}}, "argument 'address' should be Address | None"),
    (("Oslo", 1, None, "hotel", None, None, "extra"), {}, "book takes 6 arguments but 7 were given"),
    (("Oslo",), {"city": "Lima"}, "argument 'city' of book is given twice"),
])
def test_wrong_arguments_name_the_problem(args, kwargs, message):
    with pytest.raises(ArgumentError) as exc:
        Tool(book).bind(args, kwargs)
    assert message in str(exc.value)


def test_nested_errors_say_where():
    def f(points: list[dict[str, float]]) -> None:
        """f."""
    with pytest.raises(ArgumentError, match=r"argument 'points'\[1\]\['y'\] should be a number"):
        Tool(f).bind(([{"x": 1.0}, {"y": "high"}],), {})


@pytest.mark.parametrize("func, problem", [
    (lambda x: x, "parameter 'x' has no type annotation"),
])
def test_unusable_signatures_are_refused(func, problem):
    with pytest.raises(SchemaError, match=problem):
        Tool(func, name="f")


def test_star_args_and_odd_types_are_refused():
    def star(*items: int) -> None:
        """s."""
    def odd(x: complex) -> None:
        """o."""
    with pytest.raises(SchemaError, match="is \\*args or \\*\\*kwargs"):
        Tool(star)
    with pytest.raises(SchemaError, match="parameter 'x': type 'complex' cannot be described"):
        Tool(odd)


def test_sync_and_async_tools_both_run_off_the_loop():
    import threading

    def sync_tool() -> str:
        """s."""
        return threading.current_thread().name

    async def async_tool() -> str:
        """a."""
        return "async"

    async def go():
        return await Tool(sync_tool).invoke({}), await Tool(async_tool).invoke({})

    sync_thread, result = asyncio.run(go())
    assert sync_thread != threading.main_thread().name and result == "async"


def test_estimate_follows_observed_latencies_and_the_list_updates_on_drift():
    reg = Registry()

    def slowish() -> None:
        """s."""

    t = reg.add(slowish, estimate=0.3)
    assert t.estimate == 0.3 and "slowish() ~300ms" in reg.describe()
    for seconds in (0.9, 1.0, 1.1):
        t.observe(seconds)
    assert t.estimate == 1.0
    assert "slowish() ~1s" in reg.describe(), "moved by more than 2x: re-published"
    t.observe(1.4)
    t.observe(1.5)
    assert t.estimate == 1.1 and "slowish() ~1s" in reg.describe(), "small drift: unchanged"
    assert reg.json_schema()[0]["name"] == "slowish"


def test_the_tool_list_reads_longest_estimate_first():
    reg = Registry()
    for name, estimate in [("quick", 0.004), ("slow", 0.8), ("tie_a", 0.2), ("medium", 0.3), ("tie_b", 0.2)]:
        reg.add(lambda: None, name=name, description="d.", estimate=estimate)
    listed = re.findall(r"(\w+)\(\) ~", reg.describe())
    assert listed == ["slow", "medium", "tie_a", "tie_b", "quick"], "ties keep the order tools were added"
    assert reg.names() == ["quick", "slow", "tie_a", "medium", "tie_b"], "only the description is sorted"

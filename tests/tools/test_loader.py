"""User tool files and package entry points: broken parts are named, the rest still loads."""

import sys
import textwrap

from asynclm.tools.loader import load_entry_points, load_tool_file
from asynclm.tools.registry import Registry

GOOD_AND_BAD = '''
import asyncio
from asynclm.tools import tool

def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()

async def slow_add(a: int, b: int = 1) -> int:
    """Add, slowly."""
    await asyncio.sleep(0.01)
    return a + b

def broken(x, y: int) -> int:
    """No annotation on x."""
    return y

def _private(x: int) -> int:
    return x

@tool(estimate=2.0, dangerous=True, timeout=5)
def launch(target: str) -> str:
    """Launch something."""
    return target
'''


def test_a_file_with_one_broken_function_still_loads_the_others(tmp_path):
    path = tmp_path / "my_tools.py"
    path.write_text(GOOD_AND_BAD)
    reg = Registry()
    problems = load_tool_file(path, reg)
    # Once a function is marked with @tool, only marked functions are tools.
    assert reg.names() == ["launch"]
    assert problems == []
    path.write_text(GOOD_AND_BAD.replace("@tool(estimate=2.0, dangerous=True, timeout=5)\n", ""))
    reg = Registry()
    problems = load_tool_file(path, reg)
    assert sorted(reg.names()) == ["launch", "shout", "slow_add"]
    assert problems == [f"{path}: function 'broken' cannot be a tool: parameter 'x' has no type annotation."]


def test_a_user_tool_named_like_a_built_in_is_refused_and_named(tmp_path):
    from asynclm.tools.builtins import default_registry

    path = tmp_path / "mine.py"
    path.write_text('def calculator(expression: str) -> str:\n    """Mine."""\n    return "0"\n\n'
                    'def shout(text: str) -> str:\n    """Upper-case."""\n    return text.upper()\n')
    reg = default_registry()
    builtin = reg.get("calculator")
    problems = load_tool_file(path, reg)
    assert reg.get("calculator") is builtin and reg.get("shout") is not None
    assert problems == [f"{path}: function 'calculator' was not loaded: there is already a tool named "
                        "'calculator' (rename it, or give it another name with @tool(name=...))."]


def test_decorator_options_reach_the_tool(tmp_path):
    path = tmp_path / "t.py"
    path.write_text(GOOD_AND_BAD)
    reg = Registry()
    load_tool_file(path, reg)
    launch = reg.get("launch")
    assert launch.dangerous and launch.timeout == 5 and launch.estimate == 2.0


def test_a_file_that_fails_to_import_gives_one_sentence(tmp_path):
    bad_syntax = tmp_path / "syntax.py"
    bad_syntax.write_text("def f(:\n    pass\n")
    raising = tmp_path / "raising.py"
    raising.write_text("x = 1\nraise RuntimeError('no config found')\n")
    reg = Registry()
    assert load_tool_file(bad_syntax, reg) == [f"{bad_syntax}: could not be imported: SyntaxError at line 1: invalid syntax."]
    assert load_tool_file(raising, reg) == [
        f"{raising}: could not be imported: RuntimeError at line 2: no config found."]
    assert load_tool_file(tmp_path / "nope.py", reg) == [f"{tmp_path / 'nope.py'}: no such tool file."]
    assert len(reg) == 0


def test_installed_packages_provide_tools_through_entry_points(tmp_path, monkeypatch):
    pkg = tmp_path / "weatherpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        def forecast(city: str, days: int = 3) -> str:
            """A forecast."""
            return f"{city}: sunny for {days} days"

        def not_a_tool(x) -> None:
            """Missing annotation."""
    '''))
    dist = tmp_path / "weatherpkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: weatherpkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[asynclm.tools]\nforecast = weatherpkg:forecast\nbroken = weatherpkg:not_a_tool\n"
        "missing = weatherpkg_gone:thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    problems = load_entry_points(reg)
    assert reg.get("forecast") is not None
    assert any("package tool 'broken'" in p and "parameter 'x' has no type annotation" in p for p in problems)
    assert any("package tool 'missing'" in p and "could not be imported: ModuleNotFoundError" in p for p in problems)
    sys.modules.pop("weatherpkg", None)

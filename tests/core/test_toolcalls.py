"""Reading calls in the family JSON syntax as models really write them, however the stream is cut."""

from __future__ import annotations

import random

import pytest

from asynclm.core.toolcalls import ToolCallSyntax, read_call

CALC = '{"name": "calculator", "arguments": {"expression": "12*34"}}'
TIME = '{"name": "current_time", "arguments": {"timezone": "Asia/Tokyo"}}'
CML_CALC = "[CALL] t1 [HEAD] calculator(expression='12*34') [END]"
CML_TIME = "[CALL] t2 [HEAD] current_time(timezone='Asia/Tokyo') [END]"


def run(text: str, *, bare: bool = True, quoted=lambda body: False, pieces: int | None = None, seed: int = 0) -> str:
    """Feed ``text`` whole, or cut into ``pieces`` at random points, then flush."""
    syntax = ToolCallSyntax(quoted=quoted, bare=bare)
    if pieces is None:
        return syntax.feed(text) + syntax.flush()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), k=min(pieces, len(text) - 1)))
    parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return "".join(syntax.feed(p) for p in parts) + syntax.flush()


@pytest.mark.parametrize("written, expected", [
    (f"<tool_call>{CALC}</tool_call>", CML_CALC),
    (f"<tool_call>\n{CALC}\n</tool_call>\n<tool_call>\n{TIME}\n</tool_call>", f"{CML_CALC}\n{CML_TIME}"),
    (f"<tool_call>\n{CALC}", CML_CALC),  # the closing tag never came
    (CALC, CML_CALC),
    (f"{CALC}\n{TIME}", f"{CML_CALC}\n{CML_TIME}"),
    (f"Let me check.\n{CALC}", f"Let me check.\n{CML_CALC}"),
    (f"```json\n{CALC}\n```", CML_CALC),
    (f"```json\n{CALC}\n{TIME}\n```", CML_CALC + CML_TIME),
    (f"```json\n[{CALC}, {TIME}]\n```", CML_CALC + CML_TIME),
    ('{{"name": "calculator", "arguments": {{"expression": "12*34"}}}}', CML_CALC),
    ('{"name": "calculator", "parameters": {"expression": "12*34"}}', CML_CALC),
    ('{"name": "calculator", "arguments": "{\\"expression\\": \\"12*34\\"}"}', CML_CALC),
])
def test_every_form_becomes_a_cml_call_however_the_stream_is_cut(written, expected):
    assert run(written) == expected
    for seed in range(20):
        assert run(written, pieces=random.Random(seed).randint(1, 12), seed=seed) == expected


@pytest.mark.parametrize("written", [
    'The object {"name": "calculator", "arguments": {"expression": "1"}} is an example.',
    '{"answer": 408, "unit": "none"}',
    "```python\nprint({'name': 1})\n```",
    "Sets look like {1, 2}.",
])
def test_json_that_is_not_a_call_in_call_position_stays_text(written):
    assert run(written) == written
    assert run(written, pieces=7, seed=3) == written


def test_without_bare_calls_only_tags_count():
    assert run(CALC, bare=False) == CALC
    assert run(f"<tool_call>{CALC}</tool_call>", bare=False) == CML_CALC


def test_a_quoted_call_stays_text_with_its_tags_neutralised():
    out = run(f"It says <tool_call>{CALC}</tool_call>", quoted=lambda body: "12*34" in body)
    assert out == f"It says ＜tool_call＞{{\u2060{CALC[1:]}＜/tool_call＞"
    assert run(CALC, quoted=lambda body: True) == "{\u2060" + CALC[1:]


def test_a_broken_call_becomes_a_call_the_parser_rejects():
    out = run('<tool_call>{"name": "echo", "arguments": "not json"}</tool_call>')
    assert out.startswith("[CALL] t1 [HEAD] {") and out.endswith("[END]")


@pytest.mark.parametrize("written", [
    '```json\n{\n  "name": "spotify.play",\n  "arguments": {"artist": "Taylor Swift", "duration": 20 * 60}\n}\n```',
    '{"name": "spotify.play", "arguments": {"duration": 20 * 60}}',
])
def test_a_call_object_with_broken_json_is_a_call_the_parser_rejects_and_says_why(written):
    from asynclm.core.cml import CallSyntaxError, parse_call

    out = run(written)
    assert out.startswith("[CALL] t1 [HEAD] {") and out.endswith("[END]") and "```" not in out
    body = out.removeprefix("[CALL] t1 [HEAD] ").removesuffix(" [END]")
    with pytest.raises(CallSyntaxError, match="not valid JSON .*write each argument as a JSON value"):
        parse_call(body)
    assert run(written, quoted=lambda body: True).count("[CALL]") == 0, "a quotation of one stays text"


def test_read_call_wants_the_shape_of_a_call():
    assert read_call(CALC) == ("calculator", {"expression": "12*34"})
    assert read_call('{"name": "f"}') == ("f", {})
    assert read_call('{"name": 3, "arguments": {}}') is None
    assert read_call('{"tool": "f", "arguments": {}}') is None


def test_a_result_written_back_in_its_message_form_shows_as_its_content():
    assert run('{"name": "calculator", "content": "256"}') == "256"
    assert run('```json\n{\n  "name": "calculator",\n  "content": "12"\n}\n```') == "12"
    assert run('The result: {"name": "calculator", "content": "256"}').endswith('"256"}'), "inside a sentence"

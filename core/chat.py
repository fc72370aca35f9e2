"""Chat templates: how an off-the-shelf instruct model is prompted with CML and hears interrupts.

A model that was never trained on CML learns the protocol from its system message (the rules in
plain words, the tool list with estimated times, a worked example) and sees each user turn the way
its own chat template renders it. The template is the one in the GGUF (``tokenizer.chat_template``),
rendered the way llama-cpp-python renders it; a model without one gets a built-in default chosen
from its vocabulary.

Everything after the first turn is evaluated as a *suffix*: the text the template adds after the
assistant's words so far (closing the assistant message, a user or tool message, reopening the
assistant). The suffix is cut from a rendering of a short probe conversation that ends in an
assistant message holding a sentinel, so the prefix is never rendered or evaluated again, whatever
the template does with earlier messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter


SENTINEL = "\ue000asynclm-sentinel\ue001"

# Built-in templates for models that carry none (written here, in the common formats).
DEFAULT_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}"
    ),
    "plain": (
        "{{ bos_token }}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
        "{% elif m['role'] == 'assistant' %}{{ '### Assistant:\n' + m['content'] + eos_token + '\n\n' }}"
        "{% else %}{{ '### ' + m['role'] | capitalize + ':\n' + m['content'] + '\n\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
    ),
}

PROTOCOL = """\
You can use tools while you write, and you never wait for one unless you must.

To call a tool, write: [CALL] id [HEAD] tool_name(name="text", number=3) [END]
- Give every call a new short id: c1, c2, c3, ...
- The call starts at once. Keep writing while it runs: say what you are doing, start other calls.
- Start the calls that take longest first; each tool below lists its estimated time.
- To pass one call's result to another call, write the first call's id as a bare name: f(x=c1).

Results arrive by themselves in the middle of your text, as: [INTR] id [HEAD] result [END]
The user may add to the request the same way: [INTR] user [HEAD] message [END]. Act on it.
Never write [INTR] yourself.
When nothing more can be written until a result arrives, write [TRAP] [END] and stop; you will be
woken with the next result.
Use each result as it arrives, and every result in the final answer. If a call fails, say so plainly.

Example (its tools are made up: call only the tools listed below, with the user's values):
user: Look up A and B.
assistant: Starting both.[CALL] c1 [HEAD] slow_lookup(key="A") [END][CALL] c2 [HEAD] fast_lookup(key="B") \
[END]Both are running.[INTR] c2 [HEAD] B is 2 [END] B is 2.[TRAP] [END][INTR] c1 [HEAD] A is 1 [END] A is 1. \
So: A is 1 and B is 2."""


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class TemplateInfo:
    name: str  # "model" (the GGUF's own) or a DEFAULT_TEMPLATES key
    system: bool  # renders a system message
    tool: bool  # renders tool messages
    tools: bool  # renders the tool definitions it is given (``tools``): the model has a tool-call format


class ChatTemplate:
    def __init__(self, source: str, *, name: str, bos: str, eos: str) -> None:
        try:
            self._formatter = Jinja2ChatFormatter(source, eos_token=eos, bos_token=bos)
        except Exception as exc:  # a template jinja cannot parse
            raise TemplateError(f"the chat template does not parse: {exc}") from exc
        self.source = source
        self.info = TemplateInfo(name=name, system=self._keeps("system"), tool=self._keeps("tool"),
                                 tools=self._lists_tools())

    def render(self, messages: list[dict[str, Any]], generation: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        self._formatter.add_generation_prompt = generation
        try:
            return self._formatter(messages=messages, tools=tools or None).prompt
        except Exception as exc:
            raise TemplateError(f"the chat template failed: {exc}") from exc

    def _keeps(self, role: str) -> bool:
        """Whether a message of ``role`` shows in the rendering (some templates drop roles)."""
        mark = "\ue002probe\ue003"
        convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                 {"role": role, "content": mark}] if role == "tool" else [
                 {"role": role, "content": mark}, {"role": "user", "content": "hi"}]
        try:
            return mark in self.render(convo)
        except TemplateError:
            return False

    def _lists_tools(self) -> bool:
        name = "asynclm_probe_tool"
        tool = {"type": "function", "function": {"name": name, "description": "probe",
                                                 "parameters": {"type": "object", "properties": {}}}}
        try:
            return name in self.render([{"role": "user", "content": "hi"}], tools=[tool])
        except TemplateError:
            return False

    # --- what the engine evaluates --------------------------------------------------------------

    def opening(self, system: str, user: str, tools: list[dict[str, Any]] | None = None) -> str:
        """The whole prompt of a session's first turn, ending where the assistant begins."""
        if self.info.system:
            return self.render([{"role": "system", "content": system}, {"role": "user", "content": user}],
                               tools=tools)
        return self.render([{"role": "user", "content": f"{system}\n\n{user}"}], tools=tools)

    def after_assistant(self, messages: list[dict[str, Any]]) -> str:
        """What follows the assistant's words when ``messages`` come next and the assistant goes on."""
        probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": SENTINEL}]
        text = self.render(probe + messages)
        at = text.rfind(SENTINEL)
        if at < 0:
            raise TemplateError("the chat template drops the assistant's message")
        return text[at + len(SENTINEL):]


def default_template_name(has_token) -> str:
    """The built-in template that suits a vocabulary (``has_token(text)``: a special token exists)."""
    if has_token("<|im_start|>") and has_token("<|im_end|>"):
        return "chatml"
    if has_token("<|start_header_id|>") and has_token("<|eot_id|>"):
        return "llama3"
    return "plain"


def system_prompt(tools_text: str) -> str:
    return f"{PROTOCOL}\n\n{tools_text}"


TOOLS_PROMPT = """\
You are a helpful assistant with tools. A tool call runs in the background while you go on, and its \
result comes back to you as soon as it is ready.
- Call every tool the request needs right away, all at once, the slowest first (estimated times: \
{estimates}).
- Use the values the user gave. Do not call a tool for something the user did not ask.
- When the results are in, answer briefly with every result. If a call failed, say so."""


def tools_prompt(estimates: dict[str, str]) -> str:
    """The system message of the tool-call dialect: the asynchronous rules; the tools themselves are
    the template's to list."""
    shown = ", ".join(f"{name} {time}" for name, time in estimates.items()) or "none"
    return TOOLS_PROMPT.format(estimates=shown)

"""The call ledger: one answer to "would this call run?" for the engine, the completion check and the
executor."""

from asynclm.core import events as ev
from asynclm.core.cml import parse_call
from asynclm.core.executor import Call
from asynclm.core.ledger import CallLedger
from asynclm.tools.registry import Registry


def make_ledger() -> CallLedger:
    reg = Registry()

    @reg.tool()
    def count(text: str) -> int:
        """Words in a text."""
        return len(text.split())

    @reg.tool()
    def read(path: str) -> str:
        """A file's text."""
        return path

    @reg.tool()
    def half(value: float) -> float:
        """Half of a number."""
        return value / 2

    return CallLedger(reg)


def test_a_call_runs_only_if_its_tool_exists_and_it_takes_results_of_earlier_calls_that_ran():
    ledger = make_ledger()
    ledger.ids.update({"c1", "c2"})
    ledger.refused.add("c2")
    assert ledger.why_not(parse_call("count(text='a b')"), "c3") is None
    assert ledger.why_not(parse_call("count(text=c1)"), "c3") is None
    assert ledger.why_not(parse_call("nope()"), "c3") == (
        "UnknownTool", "there is no tool named 'nope'; the tools are: count, read, half")
    assert ledger.why_not(parse_call("count(text=c9)"), "c3") == (
        "UnknownReference", "c9 is not the id of an earlier call")
    assert ledger.why_not(parse_call("count(text=c3)"), "c3")[0] == "UnknownReference", "not its own result"
    assert ledger.why_not(parse_call("count(text=c2)"), "c3") == (
        "DependencyFailed", "depends on c2, which was not run")


def test_a_fresh_id_follows_the_highest_number_of_its_stem():
    ledger = make_ledger()
    ledger.ids.update({"c1", "c2", "c7", "t1"})
    assert ledger.fresh_id("c1") == "c8"
    assert ledger.fresh_id("t1") == "t2"
    assert ledger.fresh_id("x") == "x1"
    assert ledger.fresh_id("7") == "c8", "an id of digits only takes the default stem"
    ledger.clear()
    assert ledger.fresh_id("c1") == "c1" and not ledger.taken("c7")


def test_a_parameter_is_offered_the_results_that_could_fill_it():
    ledger = make_ledger()
    ledger.producers.update({"c1": "read", "c2": "count", "c3": "half", "c4": "count"})
    ledger.failed.add("c4")
    assert ledger.results_for("half", "value") == ["c2", "c3"], "a str result cannot be a float; c4 failed"
    assert ledger.results_for("count", "text") == ["c1"], "nor a number a str"


def test_the_executor_answers_a_call_the_ledger_refuses_with_the_ledgers_message(make_engine):
    engine, log = make_engine(["[CALL] a [HEAD] calculator(expression=\"1+1\") [END][TRAP] [END]two"])
    assert engine.ask("1+1", timeout=30)
    assert engine.ledger.producers == {"a": "calculator"} and engine.ledger.taken("a")
    engine.ledger.refused.add("a")  # as if a had never run: a call taking its result must not run
    engine.executor.submit(Call("b", parse_call("calculator(expression=a)")))
    failed = log.wait_for(lambda e: isinstance(e, ev.CallFailed) and e.call_id == "b")
    assert failed.error == "error: DependencyFailed: depends on a, which was not run"

"""The interrupt queue: order, draining, and a wait that blocks without spinning until it may go on."""

import threading

from asynclm.core.interrupts import Interrupt, InterruptQueue


def result(source: str) -> Interrupt:
    return Interrupt(source, f"{source} done", "result")


def test_interrupts_drain_in_the_order_they_came_and_put_front_goes_before_them():
    queue = InterruptQueue()
    for source in ("c1", "user", "c2"):
        queue.put(result(source))
    queue.put_front([Interrupt("system", "note", "system"), result("c0")])
    assert len(queue) == 5 and queue.sources() == {"system", "c0", "c1", "user", "c2"}
    assert [i.source for i in queue.snapshot()] == ["system", "c0", "c1", "user", "c2"]
    assert [i.source for i in queue.drain()] == ["system", "c0", "c1", "user", "c2"]
    assert queue.drain() == [] and len(queue) == 0


def test_a_wait_returns_once_what_it_waits_for_is_put_from_another_thread():
    queue = InterruptQueue()
    waiting = threading.Event()

    def ready(items):
        waiting.set()
        return any(i.source == "c2" for i in items)

    putter = threading.Thread(target=lambda: (waiting.wait(10), queue.put(result("c1")), queue.put(result("c2"))))
    putter.start()
    assert queue.wait(ready, cancelled=lambda: False, timeout=30)
    putter.join()
    assert [i.source for i in queue.snapshot()] == ["c1", "c2"], "waiting takes nothing out"


def test_a_wake_makes_a_wait_check_whether_it_was_cancelled():
    queue = InterruptQueue()
    stop = threading.Event()
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(queue.wait(lambda items: False, stop.is_set)))
    waiter.start()
    stop.set()
    queue.wake()
    waiter.join(30)
    assert not waiter.is_alive() and outcome == [False]


def test_a_wait_that_is_already_cancelled_or_timed_out_returns_false_at_once():
    queue = InterruptQueue()
    queue.put(result("c1"))
    assert not queue.wait(lambda items: True, cancelled=lambda: True), "cancelled wins over ready"
    assert not queue.wait(lambda items: False, cancelled=lambda: False, timeout=0)
    assert queue.wait(lambda items: bool(items), cancelled=lambda: False, timeout=0)

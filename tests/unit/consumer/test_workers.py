"""The worker-thread base every background thread of the scorer uses."""

from __future__ import annotations

import queue
import threading

from consumer.workers import Worker


class Ticker(Worker):
    """Counts ticks until stopped."""

    def __init__(self) -> None:
        super().__init__("ticker")
        self.ticks = 0
        self.ticked = threading.Event()

    def _run(self) -> None:
        while not self.sleep(0.001):
            self.ticks += 1
            self.ticked.set()


class Drainer(Worker):
    """Blocks on a queue: only its ``_wake`` sentinel can end it."""

    def __init__(self) -> None:
        super().__init__("drainer")
        self.queue: queue.Queue[int | None] = queue.Queue()
        self.seen: list[int] = []

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            self.seen.append(item)

    def _wake(self) -> None:
        self.queue.put(None)


class Crasher(Worker):
    def __init__(self) -> None:
        super().__init__("crasher")

    def _run(self) -> None:
        raise RuntimeError("a bug")


def test_a_worker_runs_on_a_named_thread_until_stopped() -> None:
    ticker = Ticker()
    assert not ticker.alive and not ticker.started
    assert ticker.start() is ticker
    assert ticker.ticked.wait(5)
    assert ticker.alive and ticker.started
    assert any(t.name == "ticker" for t in threading.enumerate())
    ticker.stop(5)
    assert not ticker.alive and ticker.stopping
    ticks = ticker.ticks
    assert ticker.join(1) and ticker.ticks == ticks  # ended: nothing more happens


def test_start_twice_starts_one_thread() -> None:
    ticker = Ticker().start()
    ticker.start()
    assert ticker.ticked.wait(5)
    assert sum(t.name == "ticker" for t in threading.enumerate()) == 1
    ticker.stop(5)


def test_stop_wakes_a_worker_blocked_on_its_queue() -> None:
    drainer = Drainer().start()
    drainer.queue.put(1)
    drainer.queue.put(2)
    drainer.stop(5)
    assert not drainer.alive
    assert drainer.seen == [1, 2]


def test_a_worker_that_died_is_not_alive() -> None:
    crasher = Crasher()
    hook, threading.excepthook = threading.excepthook, lambda args: None  # keep the planted crash quiet
    try:
        crasher.start()
        assert crasher.join(5)
    finally:
        threading.excepthook = hook
    assert crasher.started and not crasher.alive and not crasher.stopping


def test_stop_before_start_is_harmless() -> None:
    ticker = Ticker()
    ticker.stop(1)
    assert not ticker.alive and ticker.stopping


class Stuck(Worker):
    """Stands for a call stuck inside a library: ends only when released."""

    def __init__(self) -> None:
        super().__init__("stuck")
        self.release = threading.Event()

    def _run(self) -> None:
        self.release.wait(10)


def test_stop_with_no_timeout_asks_without_waiting() -> None:
    stuck = Stuck().start()
    stuck.stop(timeout=0)
    assert stuck.stopping and stuck.alive  # returned at once, the thread still inside its call
    stuck.release.set()
    assert stuck.join(5)

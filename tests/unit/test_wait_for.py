"""tests.helpers.wait_for, the deadline wait of every integration and e2e test: transient errors are "not yet"."""

from __future__ import annotations

import pytest

from tests.helpers import eventually, wait_for


def flaky(*answers: object):  # type: ignore[no-untyped-def]
    """A condition giving each answer in turn (an exception instance is raised), then the last one forever."""
    calls = iter(answers)
    last: list[object] = [None]

    def condition() -> object:
        last[0] = next(calls, last[0])
        if isinstance(last[0], BaseException):
            raise last[0]
        return last[0]

    return condition


@pytest.mark.parametrize("error", [KeyError("status"), TimeoutError("no answer"), ConnectionRefusedError(),
                                   IndexError("no partitions yet")])
def test_a_transient_error_is_not_yet(error: BaseException) -> None:
    assert wait_for(flaky(error, error, False, True), 30, 0.001) is True


def test_the_last_transient_error_is_raised_at_the_deadline() -> None:
    with pytest.raises(KeyError, match="still missing"):
        wait_for(flaky(False, KeyError("still missing")), 0.05, 0.001)


def test_a_condition_that_was_false_at_the_deadline_answers_false() -> None:
    assert wait_for(flaky(KeyError("early"), False), 0.05, 0.001) is False


def test_any_other_error_is_a_bug_and_raised_at_once() -> None:
    calls = []

    def broken() -> bool:
        calls.append(1)
        raise TypeError("not a transient error")

    with pytest.raises(TypeError):
        wait_for(broken, 30, 0.001)
    assert len(calls) == 1


async def test_eventually_awaits_a_coroutine_condition_and_runs_the_loop_between_tries() -> None:
    import asyncio

    ticks: list[int] = []

    async def ticking() -> None:  # another task on the loop: only runs while eventually waits
        while True:
            ticks.append(1)
            await asyncio.sleep(0.001)

    async def enough_ticks() -> bool:
        return len(ticks) >= 3

    task = asyncio.ensure_future(ticking())
    try:
        assert await eventually(enough_ticks, 30, 0.001) is True
    finally:
        task.cancel()


async def test_eventually_answers_false_at_the_deadline() -> None:
    assert await eventually(flaky(False), 0.05, 0.001) is False

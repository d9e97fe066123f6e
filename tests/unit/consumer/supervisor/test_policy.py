"""The workers' restart policy: exponential back-off capped, reset after a stable run, no restart of a fatal end."""

from __future__ import annotations

import pytest

from consumer.supervisor.policy import EXIT_FATAL, Restart, RestartPolicy, Retire, StopAll, describe_exit


def test_the_back_off_doubles_from_one_second_up_to_its_cap() -> None:
    policy = RestartPolicy(initial_delay=1.0, max_delay=30.0, factor=2.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policy.delay(10_000) == 30.0  # no overflow after days of failing
    with pytest.raises(ValueError):
        policy.delay(0)


def test_consecutive_failures_grow_the_delay_and_a_stable_run_starts_afresh() -> None:
    policy = RestartPolicy(initial_delay=1.0, max_delay=30.0, stable_after=60.0)
    first = policy.decide(1, stopping=False, ran_for=2.0, failures_before=0, index=0)
    assert first == Restart(1.0, 1)
    third = policy.decide(-9, stopping=False, ran_for=2.0, failures_before=2, index=0)
    assert third == Restart(4.0, 3)
    # Up for longer than stable_after: this end is a first failure again, whatever came before.
    assert policy.decide(1, stopping=False, ran_for=61.0, failures_before=5, index=0) == Restart(1.0, 1)


def test_an_unexpected_clean_exit_is_restarted_too() -> None:
    """A worker that exits 0 on its own (someone sent it a SIGTERM) leaves a slot empty: it is started again."""
    assert isinstance(RestartPolicy().decide(0, stopping=False, ran_for=5.0, failures_before=0, index=1), Restart)


def test_the_fatal_exit_code_stops_all_with_the_workers_message() -> None:
    decision = RestartPolicy().decide(EXIT_FATAL, stopping=False, ran_for=3.0, failures_before=0, index=1,
                                      message="housing-scorer: cannot start: topic missing")
    assert isinstance(decision, StopAll)
    assert decision.exit_code == 2
    assert "worker 1" in decision.reason and "housing-scorer: cannot start: topic missing" in decision.reason


def test_while_stopping_every_end_is_expected_and_only_a_clean_stop_is_clean() -> None:
    policy = RestartPolicy()
    assert policy.decide(0, stopping=True, ran_for=1.0, failures_before=0, index=0) == Retire(clean=True)
    assert policy.decide(-9, stopping=True, ran_for=1.0, failures_before=0, index=0) == Retire(clean=False)
    assert policy.decide(1, stopping=True, ran_for=1.0, failures_before=0, index=0) == Retire(clean=False)
    # Ended by the forwarded SIGTERM before it caught signals (still importing): nothing was in flight.
    assert policy.decide(-15, stopping=True, ran_for=0.2, failures_before=0, index=0) == Retire(clean=True)
    # A fatal end while stopping is a stop too (no restart, no second fatal verdict).
    assert policy.decide(EXIT_FATAL, stopping=True, ran_for=1.0, failures_before=0, index=0) == Retire(clean=False)


def test_exits_are_described_for_logs_and_metric_labels() -> None:
    assert describe_exit(1) == "exit 1"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"

"""Exactly-once across crashes and rebalances, with ``housing-scorer`` subprocesses.

- kill -9 the scorer three times while it works through 20,000 records, restarting it each time with the same
  SCORER_INSTANCE_ID (so the new process fences its zombie and aborts its open transaction): a read_committed
  reader finds exactly one output per input key.
- Two scorers in one group share the partitions; SIGTERM one mid-stream, the other takes over its partitions;
  together they still write exactly one output per input.
"""

from __future__ import annotations

import re

import pytest

from config.settings import Settings
from tests.e2e.conftest import (
    BackgroundProducer,
    ScorerFactory,
    ScorerProcess,
    assert_exactly_once,
    committed_total,
    wait_committed,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

# The rebalance log lines end with what the scorer owns afterwards: "assigned ...; now own ...",
# "revoked ...; keeping ..." and "lost ...; keeping ...".
OWNED = re.compile(r"(?:now own|keeping) ((?:[^\s,]+\[\d+\](?:, )?)+|nothing)$", re.MULTILINE)


def last_assignment(proc: ScorerProcess) -> set[int]:
    """Partitions the scorer owns after its most recent rebalance log line (empty if none yet)."""
    found = OWNED.findall(proc.log())
    return {int(p) for p in re.findall(r"\[(\d+)\]", found[-1])} if found else set()


def test_kill_9_three_times_still_exactly_one_output_per_input(scorer_settings: Settings,
                                                              scorer_process: ScorerFactory) -> None:
    settings = scorer_settings
    total = 30_000
    records = BackgroundProducer(settings, total, prefix="eos", bad_every=97)
    records.run()
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records
    env = {"BATCH_MAX_RECORDS": "100", "BATCH_MAX_WAIT_MS": "10"}

    killed_at = []
    for threshold in (2_000, 7_000, 12_000):
        proc = scorer_process(settings, instance_id="eos", env=env)
        wait_committed(bootstrap, group, topic, 3, threshold, 90, [proc])
        proc.kill()  # SIGKILL: mid-batch, usually with a transaction open
        killed_at.append(committed_total(bootstrap, group, topic, 3))
    assert killed_at[-1] < total, f"the stream was done before the last kill: {killed_at}"

    last = scorer_process(settings, instance_id="eos", env=env)
    wait_committed(bootstrap, group, topic, 3, total, 120, [last])
    last.terminate()
    assert last.wait(60) == 0, last.tail()
    assert_exactly_once(settings, records)


def test_two_scorers_share_partitions_and_hand_over_on_sigterm(scorer_settings: Settings,
                                                               scorer_process: ScorerFactory) -> None:
    settings = scorer_settings
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records
    env = {"BATCH_MAX_RECORDS": "50", "BATCH_MAX_WAIT_MS": "10"}
    first = scorer_process(settings, instance_id="pair-a", env=env)
    second = scorer_process(settings, instance_id="pair-b", env=env)
    # After the rebalance each holds some partitions, and between them all three, none twice.
    assert wait_for(lambda: bool(last_assignment(first)) and bool(last_assignment(second))
                    and last_assignment(first) | last_assignment(second) == {0, 1, 2}
                    and not last_assignment(first) & last_assignment(second), 60), (first.tail(), second.tail())

    records = BackgroundProducer(settings, 8000, rate=2500, prefix="pair", bad_every=61).start()
    wait_committed(bootstrap, group, topic, 3, 2500, 60, [first, second])
    second.terminate()
    assert second.wait(60) == 0, second.tail()
    # The survivor takes over every partition and finishes the stream.
    assert wait_for(lambda: last_assignment(first) == {0, 1, 2}, 60), first.tail()
    records.join()
    wait_committed(bootstrap, group, topic, 3, 8000, 90, [first])
    first.terminate()
    assert first.wait(60) == 0, first.tail()
    assert_exactly_once(settings, records)

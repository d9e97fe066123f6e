"""PROCESSING_GUARANTEE=at_least_once against the real broker: outputs are produced without waiting per batch,
offsets are committed once outputs are acknowledged, and a clean stop in mid-stream loses and repeats nothing."""

from __future__ import annotations

from collections import Counter

import pytest

from config.settings import Settings
from consumer.service import ScorerService
from tests.helpers import committed_total, keys_of, produce_records, read_to_end, wait_for
from tests.integration.reload_support import PacedProducer

pytestmark = pytest.mark.integration


def committed(settings: Settings) -> int:
    return committed_total(settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records, 3)


def test_at_least_once_stop_and_restart_mid_stream_gives_one_output_per_input(scorer_settings: Settings) -> None:
    settings = scorer_settings.replace(**{"scorer.processing_guarantee": "at_least_once",
                                          "scorer.batch_max_records": 50})
    head = produce_records(settings, count=1000, bad_every=25)  # the stream starts with good and bad records
    # ... and goes on while the first scorer is stopped, so the stop is mid-stream however fast it scores.
    stream = PacedProducer(settings, rate=1000).start()

    first = ScorerService(settings)
    first.start()
    try:
        assert wait_for(lambda: first.state.counts["consumed"] >= 1500 or not first.running, 60), first.state.counts
    finally:
        first.stop()  # flushes, commits what is acknowledged
    assert first.state.fatal_error is None
    stopped_at = committed(settings)
    assert stopped_at >= 1500
    assert stopped_at == first.state.counts["consumed"]  # everything it scored was acknowledged and committed
    assert wait_for(lambda: len(stream.keys) >= stopped_at + 500, 30)  # a tail the first scorer never saw
    good_keys = head.good_keys + stream.stop()
    total = len(good_keys) + len(head.bad_keys)
    assert stopped_at < total

    second = ScorerService(settings)
    second.start()
    try:
        assert wait_for(lambda: committed(settings) >= total or not second.running, 60), \
            (committed(settings), second.state.counts)
        assert second.state.fatal_error is None
    finally:
        second.stop()
    assert committed(settings) == total

    bootstrap = settings.kafka.bootstrap_servers
    predictions = read_to_end(bootstrap, settings.topics.predictions)
    dead = read_to_end(bootstrap, settings.topics.dead_letter)
    outputs = Counter(keys_of(predictions)) + Counter(keys_of(dead))
    assert set(keys_of(predictions)) == set(good_keys) and set(keys_of(dead)) == set(head.bad_keys)
    assert set(outputs.values()) == {1}, [key for key, n in outputs.items() if n > 1][:5]

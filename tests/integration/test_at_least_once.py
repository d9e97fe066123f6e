"""PROCESSING_GUARANTEE=at_least_once against the real broker: outputs are produced without waiting per batch,
offsets are committed once outputs are acknowledged, and a clean stop in mid-stream loses and repeats nothing."""

from __future__ import annotations

from collections import Counter

import pytest

from consumer.service import ScorerService
from consumer.settings import Settings
from tests.helpers import committed_total, consume_all, keys_of, produce_records, wait_for

pytestmark = pytest.mark.integration


def committed(settings: Settings) -> int:
    return committed_total(settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records, 3)


def test_at_least_once_stop_and_restart_mid_stream_gives_one_output_per_input(scorer_settings: Settings) -> None:
    settings = scorer_settings.replace(**{"scorer.processing_guarantee": "at_least_once",
                                          "scorer.batch_max_records": 50})
    produced = produce_records(settings, count=3000, bad_every=25)
    total = len(produced.good_keys) + len(produced.bad_keys)

    first = ScorerService(settings)
    first.start()
    try:
        assert wait_for(lambda: first.state.counts["consumed"] >= 600 or not first.running, 60), first.state.counts
    finally:
        first.stop()  # in mid-stream: flushes, commits what is acknowledged
    assert first.state.fatal_error is None
    stopped_at = committed(settings)
    assert 600 <= stopped_at < total, stopped_at
    assert stopped_at == first.state.counts["consumed"]  # everything it scored was acknowledged and committed

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
    predictions = consume_all(bootstrap, settings.topics.predictions, expect=len(produced.good_keys))
    dead = consume_all(bootstrap, settings.topics.dead_letter, expect=len(produced.bad_keys))
    outputs = Counter(keys_of(predictions)) + Counter(keys_of(dead))
    assert set(keys_of(predictions)) == set(produced.good_keys) and set(keys_of(dead)) == set(produced.bad_keys)
    assert set(outputs.values()) == {1}, [key for key, n in outputs.items() if n > 1][:5]

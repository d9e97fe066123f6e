"""An output the broker refuses as too large dead-letters its input (``output_too_large``); the scorer goes on.

Issue 12, item 8, on the real broker: the predictions topic at the broker's default ``max.message.bytes``
(1048588), a records topic that takes 2 MiB. Between good records: one record with an 800 KB key and no
``record_id`` (its key once became its record id, doubling the prediction past 1 MiB: the broker refused it,
the batch was aborted five times and the scorer exited), and one with a 1.1 MB key, whose prediction cannot fit
whatever its record id (the prediction's key is the input's key). The first is scored, its record id a digest
of its key; the second is dead-lettered whole with reason ``output_too_large``, keyed by that digest; every
good record is scored exactly once (exactly-once), and the scorer is still running and scoring afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from config.settings import Settings
from consumer.service import ScorerService
from schemas import topics as topic_names
from tests.helpers import housing_rows, wait_for
from tests.helpers import read_to_end as read_all
from tests.integration.test_scoring_stream import produce_raw

pytestmark = pytest.mark.integration

BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1048588


def random_text(size: int) -> str:
    """``size`` characters that compress badly (random base64): lz4 cannot shrink them under the limit."""
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


Message = tuple[bytes | None, bytes, dict[str, bytes]]
"""key, value, headers"""


def read_to_end(bootstrap: str, topic: str) -> list[Message]:
    """Every committed message of ``topic`` up to the high watermarks (tests.helpers.read_to_end), as tuples."""
    return [(m.key, m.value or b"", m.header_map) for m in read_all(bootstrap, topic)]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_an_output_too_large_for_its_topic_dead_letters_its_input_and_scoring_goes_on(
        scorer_settings: Settings, topic_factory: Callable[..., str], guarantee: str) -> None:
    predictions = topic_factory(3, "predictions", {"max.message.bytes": str(BROKER_DEFAULT_MAX_MESSAGE_BYTES)})
    settings = scorer_settings.replace(**{"topics.predictions": predictions,
                                          "scorer.processing_guarantee": guarantee})
    prefix = uuid.uuid4().hex[:6]
    rows = housing_rows(17)
    long_key, huge_key = random_text(800_000), random_text(1_100_000)
    good = [(f"good-{prefix}-{i}", json.dumps(rows[i]).encode()) for i in range(10)]
    messages = [*good[:5], (long_key, json.dumps(rows[10]).encode()), *good[5:8],
                (huge_key, json.dumps(rows[11]).encode()), *good[8:]]
    positions = produce_raw(settings, messages)

    service = ScorerService(settings)
    service.start()
    try:
        assert wait_for(lambda: service.state.counts["consumed"] >= len(messages) or not service.running, 60), \
            (service.state.counts, service.state.fatal_error)
        assert service.running and service.state.fatal_error is None, service.state.fatal_error
        # Still scoring afterwards.
        after = [(f"after-{prefix}-{i}", json.dumps(row).encode()) for i, row in enumerate(rows[12:])]
        produce_raw(settings, after)
        assert wait_for(lambda: service.state.counts["consumed"] >= len(messages) + len(after)
                        or not service.running, 30), service.state.counts
        assert service.running and service.state.fatal_error is None, service.state.fatal_error
    finally:
        service.stop()

    bootstrap = settings.kafka.bootstrap_servers
    scored = read_to_end(bootstrap, predictions)
    dead = read_to_end(bootstrap, settings.topics.dead_letter)
    long_key_id = "key-sha256:" + hashlib.sha256(long_key.encode()).hexdigest()
    huge_key_id = "key-sha256:" + hashlib.sha256(huge_key.encode()).hexdigest()

    # The 800 KB key: scored, its record id a digest of the key; the prediction keeps the input's key.
    by_key = Counter((key or b"").decode() for key, _, _ in scored)
    expected = {key for key, _ in [*good, *after]} | {long_key}
    assert set(by_key) == expected, sorted(k[:20] for k in set(by_key) ^ expected)
    if guarantee == "exactly_once":
        assert set(by_key.values()) == {1}, [key[:20] for key, n in by_key.items() if n > 1]
    [long_prediction] = {json.loads(value)["record_id"] for key, value, _ in scored if key == long_key.encode()}
    assert long_prediction == long_key_id

    # The 1.1 MB key: its prediction cannot fit the topic, so its input is dead-lettered whole, keyed by the digest.
    assert [key for key, _, _ in dead] == [huge_key_id.encode()] * len(dead) and dead, [k for k, _, _ in dead][:3]
    if guarantee == "exactly_once":
        assert len(dead) == 1
    _, value, headers = dead[0]
    assert value == messages[9][1]
    partition, offset = positions[huge_key]
    assert headers[topic_names.HEADER_DLQ_REASON] == b"output_too_large"
    assert headers[topic_names.HEADER_DLQ_STAGE] == b"produce"
    assert (headers[topic_names.HEADER_DLQ_SOURCE_TOPIC], headers[topic_names.HEADER_DLQ_SOURCE_PARTITION],
            headers[topic_names.HEADER_DLQ_SOURCE_OFFSET]) == (settings.topics.records.encode(),
                                                               str(partition).encode(), str(offset).encode())
    assert service.state.metrics.registry.get_sample_value(
        "housing_scorer_records_dead_lettered_total", {"reason": "output_too_large", "stage": "produce"}) == len(dead)

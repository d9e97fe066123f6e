"""Every kind of bad record in the golden table (tests/golden/bad_records.py, written by hand) lands on the
dead-letter topic, whole, with the reason and stage the table gives.

The table (60+ kinds: empty, 1 MiB, not UTF-8, malformed JSON, bad Avro framing, missing/extra/null fields,
wrong types, NaN/Infinity, out-of-range values, unknown categories, ...) is streamed with a good record
between every two bad ones, through the in-process scorer and the real broker. Each bad record's dead letter
carries dlq.reason / dlq.stage as the table says, dlq.source.* pointing at the original message, and the
original bytes unchanged (the 1 MiB record too: the DLQ topic takes 10 MB). The good records around them are
scored, and the scorer is still running and scoring afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest

from config.settings import Settings
from consumer.service import ScorerService
from schemas import topics as topic_names
from tests.golden.bad_records import GOLDEN
from tests.helpers import housing_rows, keys_of, read_to_end, wait_for
from tests.integration.test_scoring_stream import produce_raw

pytestmark = pytest.mark.integration


def test_every_bad_kind_is_dead_lettered_whole_with_its_reason(scorer_settings: Settings) -> None:
    # The golden table, written by hand (not by the decoder or validator): bytes in, reason and stage out.
    assert len(GOLDEN) >= 60 and any(len(g.value) >= 1 << 20 for g in GOLDEN.values()), "the table shrank"
    prefix = uuid.uuid4().hex[:6]
    goods = housing_rows(len(GOLDEN) + 1)
    messages: list[tuple[str, bytes]] = []
    for i, kind in enumerate(sorted(GOLDEN)):
        key = f"good-{prefix}-{i}"
        messages.append((key, json.dumps({**goods[i], "record_id": key}).encode()))
        messages.append((f"bad-{prefix}-{kind}", GOLDEN[kind].value))
    messages.append((f"good-{prefix}-last", json.dumps(goods[-1]).encode()))
    positions = produce_raw(scorer_settings, messages)
    good_keys = {k for k, _ in messages if k.startswith("good-")}

    service = ScorerService(scorer_settings)
    service.start()
    try:
        assert wait_for(lambda: service.state.counts["consumed"] >= len(messages) or not service.running, 60), \
            (service.state.counts, service.state.fatal_error)
        assert service.running and service.state.fatal_error is None, service.state.fatal_error
        # Still scoring after the whole corpus went by.
        after = [(f"after-{prefix}-{i}", json.dumps(row).encode()) for i, row in enumerate(housing_rows(20, 500))]
        produce_raw(scorer_settings, after)
        assert wait_for(lambda: service.state.counts["consumed"] >= len(messages) + len(after), 30), \
            service.state.counts
        assert service.running and service.state.fatal_error is None
    finally:
        service.stop()

    bootstrap = scorer_settings.kafka.bootstrap_servers
    # The scorer has stopped: everything it wrote is committed, and read to the end.
    predictions = read_to_end(bootstrap, scorer_settings.topics.predictions)
    dead = read_to_end(bootstrap, scorer_settings.topics.dead_letter)
    assert sorted(keys_of(predictions)) == sorted(good_keys | {k for k, _ in after})
    assert sorted(keys_of(dead)) == sorted(f"bad-{prefix}-{kind}" for kind in GOLDEN)

    wrong = []
    for message in dead:
        kind = message.key.decode().split(f"bad-{prefix}-", 1)[1]
        expected = GOLDEN[kind]
        headers = message.header_map
        partition, offset = positions[message.key.decode()]
        got = {
            "reason": headers.get(topic_names.HEADER_DLQ_REASON, b"").decode(),
            "stage": headers.get(topic_names.HEADER_DLQ_STAGE, b"").decode(),
            "source": (headers.get(topic_names.HEADER_DLQ_SOURCE_TOPIC, b"").decode(),
                       headers.get(topic_names.HEADER_DLQ_SOURCE_PARTITION, b"").decode(),
                       headers.get(topic_names.HEADER_DLQ_SOURCE_OFFSET, b"").decode()),
            "value intact": message.value == expected.value,
            "has message": bool(headers.get(topic_names.HEADER_DLQ_MESSAGE)),
            "truncated": "dlq.truncated_from" in headers,
        }
        want = {"reason": expected.reason, "stage": expected.stage,
                "source": (scorer_settings.topics.records, str(partition), str(offset)),
                "value intact": True, "has message": True, "truncated": False}
        if got != want:
            wrong.append(f"{kind}: got {got}, want {want}")
    assert not wrong, f"{len(wrong)} kinds dead-lettered wrongly:\n" + "\n".join(wrong)

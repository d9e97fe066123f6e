"""consumer.kafka.producer without a broker: a batch's outputs as produced (dead letters truncated)."""

from __future__ import annotations

from typing import Any

import numpy as np
from confluent_kafka import KafkaError

from config.settings import Settings, load_settings
from consumer.core.scoring import BatchResult, Incoming, Rejected
from consumer.kafka.producer import OutputProducer


def settings(**flat: Any) -> Settings:
    base = {"scorer.group_id": "g", "scorer.instance_id": "i1"}
    return load_settings({**base, **flat}, env={}, config_path=None)


def ignore(error: KafkaError) -> None:
    pass


class FakeProducer:
    def __init__(self, full_times: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.full_times = full_times
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                **_: Any) -> None:
        if self.full_times:
            self.full_times -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value, headers))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def test_oversized_dead_letter_is_truncated_and_says_from_what_size() -> None:
    fake = FakeProducer(full_times=2)
    producer = OutputProducer(settings(**{"scorer.dlq_max_value_bytes": 10}), ignore, client=fake)  # type: ignore[arg-type]
    source = Incoming(b"k", b"{}", "t", 0, 1)
    result = BatchResult([], [Rejected(b"k", b"x" * 25, [("dlq.reason", b"too_large")], source, "too_large",
                                       "decode", "big"),
                              Rejected(b"k2", b"small", [], source, "malformed_json", "decode", "bad")],
                         None, np.empty(0))
    producer.produce_all(result, "pred", "dlq")
    assert fake.polls == 2  # a full local queue is drained, not an error
    (topic, _, value, headers), (_, _, small, small_headers) = fake.sent
    assert topic == "dlq" and value == b"x" * 10 and ("dlq.truncated_from", b"25") in headers
    assert small == b"small" and small_headers == []

"""housing-produce as a process against the real broker: exact counts, keys, bad records, formats, failures."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from producer.bad_records import BAD_RECORDS
from producer.publish import send_records
from producer.records import inject_bad, stdin_records, synthetic_records
from schemas.codecs import RecordDecoder, WireFormat
from schemas.validation import validate_record
from tests.helpers import Received, read_to_end, unused_port

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).with_name("housing-produce")


def run_producer(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the console script (or ``python -m producer`` when it is not installed) to completion."""
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "producer"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "LOG_LEVEL": "WARNING"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the flag under test decides
    return subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=PROJECT_ROOT, env=env, check=False)


def message_count(bootstrap: str, topic: str) -> int:
    """Messages on the topic by watermarks: exact, independent of how long a reader waits."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        total = 0
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def bad_kind(key: bytes) -> str:
    """``bad-<kind>-<n>`` -> kind (kinds may contain underscores, never the last hyphen)."""
    return key.decode()[len("bad-"):].rsplit("-", 1)[0]


def check_messages(messages: list[Received], *, expect_format: WireFormat, since_ms: int) -> tuple[int, int]:
    """Every good message decodes and validates with its key as record_id; every bad one is corpus bytes."""
    decoder = RecordDecoder()
    good = bad = 0
    for message in messages:
        assert message.key is not None
        if message.key.startswith(b"bad-"):
            bad += 1
            assert message.value == BAD_RECORDS[bad_kind(message.key)].value
            continue
        good += 1
        fields, fmt, _ = decoder.decode(message.value)
        assert fmt is expect_format
        record = validate_record(fields)
        assert record["record_id"] == message.key.decode()
        assert since_ms <= record["event_time"] <= int(time.time() * 1000)
    return good, bad


@pytest.mark.parametrize(
    ("fmt", "wire"), [("json", WireFormat.JSON), ("avro", WireFormat.AVRO_SINGLE_OBJECT)]
)
def test_cli_publishes_exactly_count_with_about_ten_percent_bad(
    kafka_bootstrap: str, topic_factory: Callable[..., str], fmt: str, wire: WireFormat
) -> None:
    topic = topic_factory(partitions=3)
    since_ms = int(time.time() * 1000)

    result = run_producer("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--count", "500",
                          "--bad-fraction", "0.1", "--format", fmt)

    assert result.returncode == 0, result.stderr
    assert "sent=500 delivered=500 failed=0" in result.stdout
    assert message_count(kafka_bootstrap, topic) == 500
    messages = read_to_end(kafka_bootstrap, topic)
    keys = [m.key for m in messages]
    assert len(keys) == 500 and len(set(keys)) == 500
    good, bad = check_messages(messages, expect_format=wire, since_ms=since_ms)
    assert 30 <= bad <= 75, bad  # about 10% (placement is seeded, so this is stable)
    assert good + bad == 500
    # Good records are the CSV's first rows in order of id: rec-0 .. rec-(good-1).
    assert {k for k in keys if k and k.startswith(b"rec-")} == {f"rec-{n}".encode() for n in range(good)}


def test_cli_synthetic_source_paced_with_start_id(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=3)
    started = time.monotonic()

    result = run_producer("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--source", "synthetic",
                          "--seed", "5", "--count", "400", "--rate", "200", "--start-id", "1000")

    assert result.returncode == 0, result.stderr
    # 400 at 200/s cannot take less than ~2 s, whatever the start-up time.
    assert time.monotonic() - started >= 1.9
    messages = read_to_end(kafka_bootstrap, topic)
    assert sorted(m.key for m in messages if m.key) == sorted(f"rec-{n}".encode() for n in range(1000, 1400))
    check_messages(messages, expect_format=WireFormat.JSON, since_ms=0)


def test_cli_stdin_keeps_source_ids(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=1)
    records = list(itertools.islice(synthetic_records(1), 20))
    for n, record in enumerate(records):
        if n % 2 == 0:
            record["record_id"] = f"mine-{n}"
    lines = "".join(json.dumps(r) + "\n" for r in records)

    result = run_producer("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--source", "stdin", stdin=lines)

    assert result.returncode == 0, result.stderr
    messages = read_to_end(kafka_bootstrap, topic)
    expected = [f"mine-{n}" if n % 2 == 0 else f"rec-{n}" for n in range(20)]
    assert [m.key.decode() for m in messages if m.key] == expected  # one partition: order kept
    assert [json.loads(m.value)["longitude"] for m in messages] == [r["longitude"] for r in records]
    assert list(stdin_records(io.StringIO(lines))) == records


def test_cli_unreachable_broker_exits_non_zero_quickly_with_a_clear_message() -> None:
    started = time.monotonic()

    with unused_port() as port:  # held, so nothing can listen there meanwhile
        result = run_producer("--bootstrap-servers", f"127.0.0.1:{port}", "--count", "10", "--connect-timeout",
                              "3", timeout=60)

    assert result.returncode == 3
    assert time.monotonic() - started < 20
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in result.stderr
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_keep_going_counts_every_undelivered_message(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # Uncompressed, the corpus's 1 MiB records are over the broker's default message size: the broker
    # refuses them, the delivery callback latches the error and the run must say so.
    topic = topic_factory(partitions=1)

    result = run_producer("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--count", "200",
                          "--bad-fraction", "1.0", "--compression", "none", "--keep-going")

    assert result.returncode == 1, result.stderr
    assert "messages were not delivered" in result.stderr
    assert "Message size too large" in result.stderr
    # Placement is seeded (--seed 0): the same 200 bad records, so we know exactly which must fail.
    planned = list(itertools.islice(inject_bad([], 1.0, seed=0), 200))
    too_big = {m.key for m in planned if len(m.value or b"") > 1_048_000}
    assert too_big
    summary = dict(part.split("=", 1) for part in result.stdout.split() if "=" in part)
    assert (int(summary["sent"]), int(summary["failed"])) == (200, len(too_big))
    assert int(summary["delivered"]) == 200 - len(too_big)
    assert f"{len(too_big)} of 200 messages were not delivered" in result.stderr
    assert message_count(kafka_bootstrap, topic) == 200 - len(too_big)
    delivered = read_to_end(kafka_bootstrap, topic)
    assert {m.key for m in delivered} == {m.key for m in planned} - too_big


def test_send_records_library_call(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=3)

    report = send_records(synthetic_records(2), bootstrap_servers=kafka_bootstrap, topic=topic, count=2000,
                          bad_fraction=0.05, fmt="avro")

    assert report.ok, report.failure_message()
    assert (report.sent, report.delivered, report.failed) == (2000, 2000, 0)
    assert 50 <= report.bad <= 150
    assert message_count(kafka_bootstrap, topic) == 2000


def test_cli_stops_at_the_first_delivery_failure_by_default(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=1)

    result = run_producer("--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--source", "synthetic",
                          "--bad-fraction", "1.0", "--compression", "none", "--rate", "2000")

    # An endless source: only the latched delivery failure can have ended this run.
    assert result.returncode == 1, result.stderr
    assert "stopped at the first delivery failure" in result.stdout
    assert "Message size too large" in result.stderr
    summary = dict(part.split("=", 1) for part in result.stdout.split() if "=" in part)
    assert int(summary["failed"]) >= 1
    assert int(summary["delivered"]) + int(summary["failed"]) == int(summary["sent"])
    assert message_count(kafka_bootstrap, topic) == int(summary["delivered"])

"""housing-replay against the real broker and MLflow server: a range of the records topic scored with two pinned
versions into two topics, one output per input of the range in each (read_committed, to the high watermarks),
the live group's committed offsets untouched, a replay stopped part-way (with a crashed producer's transaction
left open) resumed by running it again, and the bad arguments that need a broker or registry to be found."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from config.settings import Settings
from consumer.core.features import to_frame
from consumer.models.loader import ModelLoader
from consumer.replay.__main__ import main
from consumer.replay.progress import Marker
from consumer.replay.range import EdgeBound, TimeBound
from consumer.replay.run import HEADER_REPLAY_GROUP, Replay, ReplayRequest, ReplaySummary, default_replay_group
from producer.bad_records import BAD_RECORDS
from schemas import topics as topic_names
from tests.conftest import RegisteredModel
from tests.helpers import Received, housing_rows, keys_of, read_to_end

pytestmark = pytest.mark.integration

PARTITIONS = 2
HOUR_MS = 3_600_000


@pytest.fixture(autouse=True)
def keep_sigterm_handler() -> Iterator[None]:
    """main() makes SIGTERM end the replay like Ctrl-C; the test process keeps its own handler."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


class Stream:
    """Records produced in three spells, each at its own record timestamps: before, inside and after the range."""

    def __init__(self, settings: Settings, per_spell: int, *, bad_every: int = 7) -> None:
        now = int(time.time() * 1000)
        self.range_from_ms, self.range_to_ms = now - 2 * HOUR_MS, now - HOUR_MS
        producer = Producer({**settings.kafka.client_config(), "linger.ms": 5, "enable.idempotence": True,
                             "compression.type": "lz4", "message.max.bytes": 3_000_000})
        self.keys: dict[str, list[str]] = {"before": [], "inside": [], "after": []}
        self.bad: dict[str, str] = {}
        """Bad record key -> the reason it must be dead-lettered with."""
        self.rows: dict[str, dict[str, Any]] = {}
        kinds = sorted(BAD_RECORDS)
        spells = (("before", now - 3 * HOUR_MS), ("inside", self.range_from_ms), ("after", self.range_to_ms))
        for index, (spell, first_ms) in enumerate(spells):
            for i, row in enumerate(housing_rows(per_spell, start=index * per_spell)):
                if i % bad_every == bad_every - 1:
                    kind = kinds[i % len(kinds)]
                    key, value = f"{spell}-bad-{i}", BAD_RECORDS[kind].value
                    self.bad[key] = BAD_RECORDS[kind].reason
                else:
                    key, value = f"{spell}-{i}", json.dumps({**row, "record_id": f"{spell}-{i}"}).encode()
                    self.rows[key] = row
                # The first record of "inside" is at --from exactly (inclusive), "after" starts at --to (exclusive).
                producer.produce(settings.topics.records, key=key.encode(), value=value, timestamp=first_ms + i * 10)
                self.keys[spell].append(key)
            producer.poll(0)
        assert producer.flush(30) == 0


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def committed_offsets(settings: Settings, group: str) -> dict[int, tuple[int, str | None]]:
    # read_uncommitted: the last completed commit at once, without waiting on a transaction's pending offsets.
    consumer = Consumer({**settings.kafka.client_config(), "group.id": group, "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})
    try:
        found = consumer.committed([TopicPartition(settings.topics.records, p) for p in range(PARTITIONS)],
                                   timeout=10)
        return {tp.partition: (tp.offset, tp.metadata) for tp in found}
    finally:
        consumer.close()


def commit_live_offsets(settings: Settings, offsets: dict[int, int]) -> None:
    """What a live scorer group leaves behind: committed offsets of the records topic."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": settings.scorer.group_id,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(settings.topics.records, p, o) for p, o in offsets.items()],
                        asynchronous=False)
    finally:
        consumer.close()


def predictions_by_key(messages: list[Received]) -> dict[str, dict[str, Any]]:
    return {m.key.decode(): json.loads(m.value) for m in messages if m.key}


def offline(settings: Settings, version: str, rows: list[dict[str, Any]]) -> np.ndarray:
    """What ``version`` predicts for ``rows``, loaded on its own (not by the replay)."""
    loader = ModelLoader(settings)
    handle = loader.load(loader.resolve(version=version))
    return np.asarray(handle.predict(to_frame(rows)), dtype=np.float64)


@pytest.fixture
def replay_settings(settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
                    two_version_model: RegisteredModel, group_id: str) -> Settings:
    records = topic_factory(PARTITIONS, "records", {"message.timestamp.type": "CreateTime",
                                                    "max.message.bytes": str(2 * 1024 * 1024)})
    return settings_factory({"records": records}, **{**two_version_model.settings_overrides(),
                                                     "scorer.group_id": group_id,
                                                     "scorer.batch_max_records": 16})


def cli_args(settings: Settings, *extra: str) -> list[str]:
    return ["--bootstrap-servers", settings.kafka.bootstrap_servers, "--input-topic", settings.topics.records,
            "--tracking-uri", settings.mlflow.tracking_uri, "--model-name", settings.model.name,
            "--group-id", settings.scorer.group_id, "--batch-max-records", "16", "--no-progress",
            "--log-level", "WARNING", *extra]


def test_two_versions_replay_a_time_range_one_output_per_input_live_offsets_unmoved(
        replay_settings: Settings, topic_factory: Callable[..., str], two_version_model: RegisteredModel,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = replay_settings
    stream = Stream(settings, per_spell=60)
    live = {0: 17, 1: 23}
    commit_live_offsets(settings, live)
    live_before = committed_offsets(settings, settings.scorer.group_id)
    assert {p: o for p, (o, _) in live_before.items()} == live

    outputs = {version: (topic_factory(PARTITIONS, f"v{version}"), topic_factory(PARTITIONS, f"v{version}-dlq"))
               for version in ("1", "2")}
    # Version 1 through the CLI with ISO times, version 2 through the API with epoch ms: both forms, same range.
    out1, dlq1 = outputs["1"]
    code = main(cli_args(settings, "--from", iso(stream.range_from_ms), "--to", iso(stream.range_to_ms),
                         "--model-version", "1", "--output-topic", out1, "--dlq-topic", dlq1, "--progress"))
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, captured.err
    assert "replay v1" in captured.err and "rec" in captured.err  # the progress bar (tqdm, on stderr)
    inside = stream.keys["inside"]
    bad_inside = [k for k in inside if k in stream.bad]
    assert f"replayed {len(inside):,} records" in printed and f"{len(bad_inside):,} dead letters" in printed
    out2, dlq2 = outputs["2"]
    summary = Replay(settings, ReplayRequest(start=TimeBound(stream.range_from_ms, "from"),
                                             end=TimeBound(stream.range_to_ms, "to"), model_version="2",
                                             output_topic=out2, dlq_topic=dlq2)).run()
    assert (summary.records, summary.predictions, summary.dead_lettered) == \
        (len(inside), len(inside) - len(bad_inside), len(bad_inside))

    bootstrap = settings.kafka.bootstrap_servers
    good_inside = [k for k in inside if k not in stream.bad]
    by_version = {}
    for version, (out, dlq) in outputs.items():
        predictions, dead = read_to_end(bootstrap, out), read_to_end(bootstrap, dlq)
        # Exactly one output per input of the range, nothing from before or after it.
        assert Counter(keys_of(predictions)) == Counter(good_inside)
        assert Counter(keys_of(dead)) == Counter(bad_inside)
        for message in dead:  # dead-lettered as the live scorer does: reason, stage and source in the headers
            headers = message.header_map
            assert headers[topic_names.HEADER_DLQ_REASON].decode() == stream.bad[message.key.decode()]
            assert headers[topic_names.HEADER_DLQ_SOURCE_TOPIC].decode() == settings.topics.records
            assert headers[HEADER_REPLAY_GROUP].decode() == default_replay_group(out)
        for message in predictions:  # each output names its version, in its value and its headers
            assert message.header_map[topic_names.HEADER_MODEL_VERSION] == version.encode()
            assert message.header_map[HEADER_REPLAY_GROUP].decode() == default_replay_group(out)
        values = predictions_by_key(predictions)
        assert {v["model_version"] for v in values.values()} == {version}
        by_version[version] = np.array([values[k]["prediction"] for k in good_inside])

    rows = [stream.rows[k] for k in good_inside]
    expected = {version: offline(settings, version, rows) for version in ("1", "2")}
    for version in ("1", "2"):  # the pinned version made them, not whatever the alias says
        np.testing.assert_allclose(by_version[version], expected[version], rtol=1e-9)
    models_differ = ~np.isclose(expected["1"], expected["2"], rtol=1e-9)
    assert models_differ.sum() > len(rows) // 2
    assert np.all(by_version["1"][models_differ] != by_version["2"][models_differ])

    assert committed_offsets(settings, settings.scorer.group_id) == live_before  # the live group never moved
    for out, _ in outputs.values():  # the progress sits in each replay's own group, at the end of the range
        progress = committed_offsets(settings, default_replay_group(out))
        for offset, metadata in progress.values():
            marker = Marker.decode(metadata)
            assert marker is not None and marker.job.output_topic == out and offset == marker.end


def test_a_replay_stopped_part_way_with_an_open_transaction_resumes_each_input_once(
        replay_settings: Settings, topic_factory: Callable[..., str]) -> None:
    settings = replay_settings
    stream = Stream(settings, per_spell=80, bad_every=9)
    out, dlq = topic_factory(PARTITIONS, "out"), topic_factory(PARTITIONS, "dlq")
    request = ReplayRequest(start=EdgeBound("earliest"), end=EdgeBound("now"), model_version="1",
                            output_topic=out, dlq_topic=dlq)

    def stop_after_two(summary: ReplaySummary) -> None:
        if summary.transactions == 2:
            raise KeyboardInterrupt

    first = Replay(settings, request).run(on_committed=stop_after_two)
    assert first.interrupted and 0 < first.records < 3 * 80

    # A crashed replay's producer: a transaction with outputs left open under the replay's transactional.id.
    zombie = Producer({**settings.kafka.client_config(), "transactional.id": default_replay_group(out)})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(out, key=b"zombie", value=b"never committed")
    zombie.flush(10)

    second = Replay(settings, request).run()  # fences the zombie, aborts its transaction, resumes
    assert not second.interrupted
    assert second.already_replayed == first.records
    assert first.records + second.records == 3 * 80
    third = Replay(settings, request).run()  # the same replay again: finished, nothing scored twice
    assert third.records == 0 and third.already_replayed == 3 * 80

    everything = [k for spell in ("before", "inside", "after") for k in stream.keys[spell]]
    predictions, dead = read_to_end(settings.kafka.bootstrap_servers, out), \
        read_to_end(settings.kafka.bootstrap_servers, dlq)
    assert Counter(keys_of(predictions)) == Counter(k for k in everything if k not in stream.bad)
    assert Counter(keys_of(dead)) == Counter(k for k in everything if k in stream.bad)


def test_bad_arguments_exit_2_with_the_reason(replay_settings: Settings, topic_factory: Callable[..., str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    settings = replay_settings
    out, dlq = topic_factory(PARTITIONS, "out"), topic_factory(PARTITIONS, "dlq")
    Stream(settings, per_spell=10)
    cases = {
        "unknown version": (["--from", "earliest", "--model-version", "99", "--output-topic", out,
                             "--dlq-topic", dlq], "has no version 99"),
        "missing output topic": (["--from", "earliest", "--model-version", "1", "--output-topic",
                                  f"missing-{uuid.uuid4().hex[:6]}", "--dlq-topic", dlq], "do not exist"),
        "default DLQ missing": (["--from", "earliest", "--model-version", "1", "--output-topic", out],
                                f"{out}.dlq"),
        "from after to": (["--from", "0:5", "--to", "0:3,1:3", "--model-version", "1", "--output-topic", out,
                           "--dlq-topic", dlq], "must name the same partitions"),
        "offset past the end": (["--from", "offset:0", "--to", "offset:100000", "--model-version", "1",
                                 "--output-topic", out, "--dlq-topic", dlq], "past its end"),
        "inverted offsets": (["--from", "offset:9", "--to", "offset:2", "--model-version", "1",
                              "--output-topic", out, "--dlq-topic", dlq], "is after --to"),
    }
    for name, (args, expected) in cases.items():
        code = main(cli_args(settings, *args))
        error = capsys.readouterr().err
        assert code == 2 and expected in error, (name, code, error)
    assert read_to_end(settings.kafka.bootstrap_servers, out) == []

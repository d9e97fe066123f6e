"""Unit tests for the producer's pure record sources (producer/records.py): no broker."""

from __future__ import annotations

import io
import itertools
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from producer.bad_records import BAD_RECORDS, BadRecord
from producer.publish import PublishError, PublishReport, SendLoop, make_encoder, producer_config
from producer.records import (
    BOUNDS,
    DEFAULT_CSV_PATH,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    OutgoingMessage,
    SourceError,
    as_messages,
    csv_records,
    inject_bad,
    stdin_records,
    synthetic_records,
    with_ids,
)
from schemas.codecs import WireFormat
from schemas.validation import validate_record

HEADER = (
    "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,"
    "median_income,median_house_value,ocean_proximity\n"
)


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text(
        HEADER
        + "-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0,NEAR BAY\n"
        + "-118.3,34.2,20.0,1000.0,,500.0,200.0,3.5,200000.0,<1H OCEAN\n"
        + "-121.0,38.0,5.0,300.0,60.0,150.0,50.0,2.0,90000.0,INLAND\n"
    )
    return path


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_rows_map_to_the_nine_features_without_the_target(small_csv: Path) -> None:
    rows = list(csv_records(small_csv))

    assert len(rows) == 3
    for row in rows:
        assert tuple(row) == FEATURE_COLUMNS
        assert "median_house_value" not in row
    assert rows[0] == {
        "longitude": -122.23,
        "latitude": 37.88,
        "housing_median_age": 41.0,
        "total_rooms": 880.0,
        "total_bedrooms": 129.0,
        "population": 322.0,
        "households": 126.0,
        "median_income": 8.3252,
        "ocean_proximity": "NEAR BAY",
    }


def test_csv_empty_bedrooms_becomes_none(small_csv: Path) -> None:
    rows = list(csv_records(small_csv))

    assert rows[1]["total_bedrooms"] is None
    assert all(isinstance(rows[1][c], float) for c in NUMERIC_COLUMNS if c != "total_bedrooms")


def test_csv_with_ids_gives_sequential_ids_from_start(small_csv: Path) -> None:
    rows = list(with_ids(csv_records(small_csv), start_id=10))

    assert [r["record_id"] for r in rows] == ["rec-10", "rec-11", "rec-12"]
    assert all(set(r) == {*FEATURE_COLUMNS, "record_id"} for r in rows)


def test_csv_loop_repeats_the_file_with_fresh_dicts(small_csv: Path) -> None:
    rows = list(itertools.islice(with_ids(csv_records(small_csv, loop=True)), 7))

    assert [r["ocean_proximity"] for r in rows] == ["NEAR BAY", "<1H OCEAN", "INLAND"] * 2 + ["NEAR BAY"]
    # Each pass is a new dict, so ids given in place do not leak between passes.
    assert [r["record_id"] for r in rows] == [f"rec-{n}" for n in range(7)]


def test_csv_default_is_the_vendored_dataset() -> None:
    rows = list(csv_records(DEFAULT_CSV_PATH))

    assert len(rows) == 20640
    assert sum(r["total_bedrooms"] is None for r in rows) == 207
    assert {r["ocean_proximity"] for r in rows} == set(OCEAN_PROXIMITY_CATEGORIES)


def test_csv_missing_column_and_bad_number_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    missing.write_text("longitude,latitude\n1,2\n")
    with pytest.raises(SourceError, match="missing columns .*housing_median_age"):
        list(csv_records(missing))

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "-122.2,abc,41,880,129,322,126,8.3,452600,NEAR BAY\n")
    with pytest.raises(SourceError, match=r"bad.csv:2"):
        list(csv_records(bad))

    # Raised at call time, before anything is iterated (so the CLI fails before connecting).
    with pytest.raises(SourceError, match="cannot read CSV"):
        csv_records(tmp_path / "nope.csv")


# --- synthetic -----------------------------------------------------------------------------------


def test_synthetic_is_deterministic_by_seed() -> None:
    first = list(itertools.islice(synthetic_records(42), 200))
    again = list(itertools.islice(synthetic_records(42), 200))
    other = list(itertools.islice(synthetic_records(43), 200))

    assert first == again
    assert first != other


def test_synthetic_values_are_plausible_and_within_bounds() -> None:
    records = list(itertools.islice(synthetic_records(7), 20000))

    for record in records:
        assert tuple(record) == FEATURE_COLUMNS
        assert record["ocean_proximity"] in OCEAN_PROXIMITY_CATEGORIES
        for column, (low, high) in BOUNDS.items():
            value = record[column]
            if value is None:
                assert column == "total_bedrooms"
                continue
            assert isinstance(value, float) and math.isfinite(value)
            assert low <= value <= high, (column, value)
        if record["total_bedrooms"] is not None:
            assert record["total_bedrooms"] <= record["total_rooms"]
    # total_bedrooms is occasionally null (about 1%), never often.
    nulls = sum(r["total_bedrooms"] is None for r in records)
    assert 50 <= nulls <= 400
    # Every category shows up, ISLAND included, and the mix is not degenerate.
    categories = Counter(r["ocean_proximity"] for r in records)
    assert set(categories) == set(OCEAN_PROXIMITY_CATEGORIES)
    assert categories["ISLAND"] < categories["NEAR BAY"] < categories["<1H OCEAN"]
    # Location spreads across the state, not one point.
    assert len({(r["longitude"], r["latitude"]) for r in records}) > 5000


# --- stdin ---------------------------------------------------------------------------------------


def test_stdin_parses_json_lines_and_skips_blanks() -> None:
    stream = io.StringIO('{"longitude": -122.0, "record_id": "mine-1"}\n\n  \n{"latitude": 37.5}\n')

    records = list(stdin_records(stream))

    assert records == [{"longitude": -122.0, "record_id": "mine-1"}, {"latitude": 37.5}]


def test_stdin_accepts_bytes_lines_and_keeps_source_ids() -> None:
    stream = io.BytesIO(b'{"record_id": "mine-1", "x": 1}\n{"x": 2}\n')

    records = list(with_ids(stdin_records(stream), start_id=5))

    assert [r["record_id"] for r in records] == ["mine-1", "rec-6"]


def test_stdin_drops_the_target_column() -> None:
    records = list(stdin_records(['{"median_income": 8.3, "median_house_value": 452600.0}']))

    assert records == [{"median_income": 8.3}]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"a": 1}\nnot json\n', "stdin line 2: not valid JSON"),
        ("[1, 2]\n", "stdin line 1: expected a JSON object, got list"),
    ],
)
def test_stdin_rejects_lines_that_are_not_objects(text: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        list(stdin_records(io.StringIO(text)))


# --- bad-record injection ------------------------------------------------------------------------


def _ids(n: int) -> list[dict[str, object]]:
    return list(with_ids({"x": i} for i in range(n)))


def test_inject_bad_fraction_within_tolerance() -> None:
    messages = list(itertools.islice(inject_bad(with_ids(synthetic_records(1)), 0.1, seed=3), 20000))

    bad = [m for m in messages if m.bad_kind is not None]
    assert 0.09 <= len(bad) / len(messages) <= 0.11
    # Many different kinds are used, not one.
    assert len({m.bad_kind for m in bad}) >= min(20, len(BAD_RECORDS))


def test_inject_bad_is_deterministic_by_seed() -> None:
    first = list(inject_bad(_ids(500), 0.2, seed=9))
    again = list(inject_bad(_ids(500), 0.2, seed=9))
    other = list(inject_bad(_ids(500), 0.2, seed=10))

    assert first == again
    assert [m.key for m in first] != [m.key for m in other]


def test_inject_bad_keys_values_and_good_records_kept() -> None:
    messages = list(inject_bad(_ids(1000), 0.25, seed=1, first_bad_id=100))

    good = [m for m in messages if m.bad_kind is None]
    bad = [m for m in messages if m.bad_kind is not None]
    # No good record is dropped or reordered; each is keyed by its id and left for the encoder.
    assert [m.key for m in good] == [f"rec-{n}".encode() for n in range(1000)]
    assert all(m.record is not None and m.value is None for m in good)
    # Bad ones carry the corpus bytes as-is, keyed bad-<kind>-<n> with n counting from first_bad_id.
    for n, message in enumerate(bad, start=100):
        assert message.record is None and message.bad_kind is not None
        assert message.key == f"bad-{message.bad_kind}-{n}".encode()
        assert message.value == BAD_RECORDS[message.bad_kind].value
    assert len({m.key for m in messages}) == len(messages)


def test_inject_bad_zero_fraction_injects_nothing_and_custom_corpus_is_used() -> None:
    plain = list(inject_bad(_ids(50), 0.0, seed=1))
    assert plain == [
        OutgoingMessage(f"rec-{n}".encode(), {"x": n, "record_id": f"rec-{n}"}) for n in range(50)
    ]

    corpus = {"only": BadRecord(value=b"\x00garbage", reason="not json", stage="decode")}
    messages = list(itertools.islice(inject_bad(_ids(10), 1.0, seed=1, corpus=corpus), 5))
    assert [m.key for m in messages] == [f"bad-only-{n}".encode() for n in range(5)]
    assert {m.value for m in messages} == {b"\x00garbage"}


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_inject_bad_rejects_fractions_outside_zero_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        list(inject_bad(_ids(3), fraction, seed=1))



def test_every_generated_record_passes_the_record_contract(small_csv: Path) -> None:
    generated = [*csv_records(DEFAULT_CSV_PATH), *itertools.islice(synthetic_records(11), 20000)]

    for record in with_ids(generated):
        record["event_time"] = 1_700_000_000_000
        clean = validate_record(record)
        assert clean["record_id"] == record["record_id"]


# --- the publisher's Kafka-free parts (producer/publish.py) ----------------------------------------


class FakeProducer:
    """Stands in for confluent_kafka.Producer in the produce loop: records calls, refuses on cue."""

    def __init__(self, buffer_errors: int = 0, refuse_keys: frozenset[bytes] = frozenset()) -> None:
        self.produced: list[tuple[str, bytes | None, bytes]] = []
        self.polls = 0
        self.waits = 0
        self._buffer_errors = buffer_errors
        self._refuse = refuse_keys

    def produce(self, topic: str, value: bytes | None, key: bytes) -> None:
        if self._buffer_errors:
            self._buffer_errors -= 1
            raise BufferError("queue full")
        if key in self._refuse:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.produced.append((topic, value, key))

    def poll(self, timeout: float = 0) -> int:
        # Like the real client: waits up to `timeout` for delivery events (there are none here).
        self.polls += 1
        if timeout > 0:
            self.waits += 1
            time.sleep(timeout)
        return 0


class NullBar:
    def update(self, n: int) -> None:
        pass


def _loop(producer: FakeProducer) -> SendLoop:
    return SendLoop(producer, "t", make_encoder("json"), True, NullBar())  # type: ignore[arg-type]


def test_loop_encodes_good_records_once_stamps_event_time_and_sends_bad_bytes_as_is() -> None:
    producer = FakeProducer()
    loop = _loop(producer)
    messages = list(itertools.islice(inject_bad(with_ids(synthetic_records(1)), 0.2, seed=2), 300))

    loop.run_unpaced(iter(messages))

    assert [key for _, _, key in producer.produced] == [m.key for m in messages]
    assert loop.sent == 300 and loop.bad == sum(m.bad_kind is not None for m in messages)
    for message, (_, value, _) in zip(messages, producer.produced, strict=True):
        if message.record is None:
            assert value == message.value
        else:
            decoded = json.loads(value or b"")
            assert decoded["record_id"] == message.record["record_id"]
            assert isinstance(decoded["event_time"], int) and decoded["event_time"] > 1_600_000_000_000


def test_loop_waits_out_a_full_queue_and_counts_refused_messages() -> None:
    producer = FakeProducer(buffer_errors=5, refuse_keys=frozenset({b"rec-3"}))
    loop = _loop(producer)

    loop.run_unpaced(as_messages(with_ids(itertools.islice(synthetic_records(3), 10))))

    # The full queue was polled until there was room; nothing lost, the refused one is counted.
    assert [key for _, _, key in producer.produced] == [f"rec-{n}".encode() for n in range(10) if n != 3]
    assert producer.polls >= 5
    assert loop.sent == 9
    assert sum(loop.not_sent.values()) == 1 and "produce refused" in next(iter(loop.not_sent))


def test_loop_counts_records_that_cannot_be_encoded_as_avro() -> None:
    producer = FakeProducer()
    loop = SendLoop(producer, "t", make_encoder("avro"), True, NullBar())  # type: ignore[arg-type]
    records = with_ids([next(synthetic_records(1)), {"longitude": 1.0}])

    loop.run_unpaced(as_messages(records))

    assert [key for _, _, key in producer.produced] == [b"rec-0"]
    assert (producer.produced[0][1] or b"")[:2] == b"\xc3\x01"  # single-object Avro without a registry
    assert sum(loop.not_sent.values()) == 1 and "cannot encode" in next(iter(loop.not_sent))


class FakeClock:
    """Stands in for the ``time`` module inside producer.publish: ``monotonic()`` is virtual time, moved on only
    by the fake producer's waits (and a little per call, as real code takes time), so pacing is exact and
    independent of how busy the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1e-6
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class ClockedProducer(FakeProducer):
    """A FakeProducer whose poll(timeout) waits on the fake clock, not the wall clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        if timeout > 0:
            self.waits += 1
            self.clock.now += timeout
        return 0


def test_paced_loop_holds_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    import producer.publish

    clock = FakeClock()
    monkeypatch.setattr(producer.publish, "time", clock)
    producer_ = ClockedProducer(clock)
    loop = _loop(producer_)
    rate, n = 5000.0, 2500
    start = clock.now

    loop.run_paced(itertools.islice(as_messages(with_ids(synthetic_records(4))), n), rate)

    elapsed = clock.now - start
    assert len(producer_.produced) == n
    # Never faster than the rate (the bucket starts nearly empty), and no slower than one minimum burst late.
    assert (n - 1) / rate <= elapsed <= n / rate + 0.01, elapsed
    # Paced in bursts, not a wait per record.
    assert producer_.waits < n / 5


def test_make_encoder_picks_the_wire_format() -> None:
    record = {**next(synthetic_records(5)), "record_id": "rec-0"}

    assert make_encoder("json")(record)[:1] == b"{"
    assert make_encoder("avro")(record)[:2] == b"\xc3\x01"
    assert make_encoder(WireFormat.AVRO_SINGLE_OBJECT)(record)[:2] == b"\xc3\x01"
    assert make_encoder("avro", schema_registry_url="mock://producer-test")(record)[:1] == b"\x00"
    with pytest.raises(PublishError, match="unknown format"):
        make_encoder("xml")


def test_producer_config_layers_defaults_client_settings_and_overrides() -> None:
    config = producer_config({"bootstrap.servers": "b:9092", "security.protocol": "SSL", "linger.ms": 20},
                             compression_type="none")

    assert config["bootstrap.servers"] == "b:9092"
    assert config["security.protocol"] == "SSL"
    assert config["linger.ms"] == 20
    assert config["compression.type"] == "none"
    assert config["enable.idempotence"] is True and config["acks"] == "all"


def test_report_ok_summary_and_failure_message() -> None:
    good = PublishReport(sent=10, delivered=10, failed=0, errors={}, elapsed=2.0, bad=1, topic="t")
    bad = PublishReport(sent=10, delivered=7, failed=3, errors={"Broker: Message size too large": 2,
                                                                "Local: Message timed out": 1}, elapsed=1.0)

    assert good.ok and good.rate == 5.0
    assert good.summary() == "sent=10 delivered=10 failed=0 bad=1 elapsed=2.00s rate=5/s topic=t"
    assert not bad.ok
    assert bad.failure_message() == (
        "3 of 10 messages were not delivered: 2 x Broker: Message size too large; 1 x Local: Message timed out"
    )


def test_loop_stops_after_a_latched_delivery_failure() -> None:
    producer = FakeProducer()
    failures = {"count": 0}
    loop = SendLoop(producer, "t", make_encoder("json"), True, NullBar(),  # type: ignore[arg-type]
                 should_stop=lambda: failures["count"] > 0)
    source = as_messages(with_ids(synthetic_records(6)))  # endless

    loop.burst(source, 10)
    failures["count"] = 1  # a delivery callback reported an error
    loop.run_unpaced(source)

    # One more burst at most, then it stops instead of sending an endless source forever.
    assert loop.stopped_on_error
    assert 10 < len(producer.produced) <= 10 + 1000

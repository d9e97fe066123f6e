"""consumer.core.scoring: one batch in, predictions and dead letters out, with a small real sklearn model."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from config.settings import PROJECT_ROOT
from consumer.core.features import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    TARGET_COLUMN,
    as_frame,
    row_count,
    to_frame,
)
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult, Incoming, Rejected, Scored, score_batch
from producer.bad_records import BAD_RECORDS, good_record
from schemas import topics
from schemas.codecs import (
    PredictionEncoder,
    RecordDecoder,
    WireFormat,
    decode_prediction,
    encode_record,
    registry_client,
)
from schemas.errors import RegistryUnavailableError
from schemas.validation import validate_record

CSV = PROJECT_ROOT / "data" / "housing.csv"
NOW_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def csv_rows() -> pd.DataFrame:
    # every 50th row: a few hundred rows spread over the whole state and all categories
    return pd.read_csv(CSV).iloc[::50].reset_index(drop=True)


@pytest.fixture(scope="module")
def pipeline(csv_rows: pd.DataFrame) -> Pipeline:
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(strategy="median"), list(NUMERIC_COLUMNS)),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), [CATEGORICAL_COLUMN]),
                    ]
                ),
            ),
            ("reg", LinearRegression()),
        ]
    )
    return model.fit(csv_rows[list(FEATURE_COLUMNS)], csv_rows[TARGET_COLUMN])


class CountingModel:
    """Wraps a model and records every predict call's row count."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        return np.asarray(self.inner.predict(frame))


class FailingOnRooms(CountingModel):
    """Raises for any frame containing a row with the poisoned total_rooms value."""

    POISON = 4242.0

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        if (frame["total_rooms"] == self.POISON).any():
            raise ValueError("poisoned row")
        return np.asarray(self.inner.predict(frame))


class InfOnRooms(CountingModel):
    """Returns inf/NaN for poisoned rows without raising."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        out = np.asarray(self.inner.predict(frame), dtype=np.float64)
        out[frame["total_rooms"].to_numpy() == 4242.0] = np.inf
        out[frame["total_rooms"].to_numpy() == 4343.0] = np.nan
        return out


class Broken:
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("shadow exploded")


def _handle(model: Any, version: str = "3", **kw: Any) -> ModelHandle:
    return ModelHandle(
        model=model,
        name="california_housing_best_model",
        version=version,
        alias=kw.pop("alias", "champion"),
        stage=kw.pop("stage", "Production"),
        source="memory",
        **kw,
    )


def _msg(value: bytes | None, offset: int, key: bytes | None = None, partition: int = 2) -> Incoming:
    return Incoming(key=key, value=value, topic="housing.records", partition=partition, offset=offset)


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def _score(batch: list[Incoming], model: ModelHandle, **kw: Any) -> BatchResult:
    return score_batch(
        batch,
        model,
        decoder=kw.pop("decoder", RecordDecoder()),
        encoder=kw.pop("encoder", PredictionEncoder()),
        now_ms=lambda: NOW_MS,
        **kw,
    )


def _expected(pipeline: Pipeline, records: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray(pipeline.predict(to_frame([validate_record(r) for r in records])), dtype=np.float64)


# the bad-record corpus, each between good records


@pytest.mark.parametrize("kind", list(BAD_RECORDS))
def test_bad_record_is_rejected_and_neighbours_scored(kind: str, pipeline: Pipeline) -> None:
    bad = BAD_RECORDS[kind]
    goods = [good_record(0), good_record(1), good_record(2)]
    batch = [
        _msg(_json(goods[0]), 10),
        _msg(_json(goods[1]), 11, key=b"k-bad"),
        _msg(bad.value, 12, key=b"k-bad"),
        _msg(_json(goods[2]), 13),
    ]
    model = CountingModel(pipeline)
    result = _score(batch, _handle(model))

    assert len(result.rejected) == 1
    rejected = result.rejected[0]
    assert (rejected.reason, rejected.stage) == (bad.reason, bad.stage), rejected.message
    assert rejected.value == bad.value  # the original bytes, untouched
    assert rejected.key == b"k-bad" and rejected.source is batch[2]
    headers = dict(rejected.headers)
    assert headers[topics.HEADER_DLQ_REASON] == bad.reason.encode()
    assert headers[topics.HEADER_DLQ_STAGE] == bad.stage.encode()
    assert headers[topics.HEADER_DLQ_SOURCE_TOPIC] == b"housing.records"
    assert headers[topics.HEADER_DLQ_SOURCE_PARTITION] == b"2"
    assert headers[topics.HEADER_DLQ_SOURCE_OFFSET] == b"12"
    assert headers[topics.HEADER_DLQ_MESSAGE].decode() == rejected.message != ""

    assert [s.record_id for s in result.scored] == ["good-0", "good-1", "good-2"]
    assert [s.source.offset for s in result.scored] == [10, 11, 13]
    np.testing.assert_allclose(result.predictions, _expected(pipeline, goods), rtol=1e-12)
    assert model.calls == [3]


def test_predictions_equal_model_predict_on_the_same_rows(pipeline: Pipeline, csv_rows: pd.DataFrame) -> None:
    rows = csv_rows.head(250)
    features = rows[list(FEATURE_COLUMNS)]
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in features.to_dict("records")
    ]
    batch = [_msg(_json(r), i) for i, r in enumerate(records)]
    result = _score(batch, _handle(pipeline))
    assert result.rejected == []
    direct = pipeline.predict(features)
    np.testing.assert_allclose(result.predictions, direct, rtol=1e-12)
    np.testing.assert_allclose([s.prediction for s in result.scored], direct, rtol=1e-12)
    for scored, expected in zip(result.scored, direct, strict=True):
        assert json.loads(scored.value)["prediction"] == pytest.approx(expected, rel=1e-12)
    assert result.features is not None
    pd.testing.assert_frame_equal(as_frame(result.features), to_frame(records))


def test_one_predict_call_per_batch(pipeline: Pipeline) -> None:
    model = CountingModel(pipeline)
    handle = _handle(model)
    bad = list(BAD_RECORDS.values())[:5]
    batch = [_msg(_json(good_record(i)), i) for i in range(100)]
    batch[7:7] = [_msg(b.value, 1000 + j) for j, b in enumerate(bad)]
    result = _score(batch, handle)
    assert model.calls == [100]
    assert len(result.scored) == 100 and len(result.rejected) == 5
    _score(batch[:10], handle)  # 7 good + 3 bad
    assert model.calls == [100, 7]


def test_empty_batch_does_not_predict(pipeline: Pipeline) -> None:
    model = CountingModel(pipeline)
    result = _score([], _handle(model))
    assert result.scored == [] and result.rejected == [] and result.features is None
    assert result.predictions.shape == (0,) and result.predictions.dtype == np.float64
    assert model.calls == []


def test_all_rejected_batch_does_not_predict(pipeline: Pipeline) -> None:
    model = CountingModel(pipeline)
    result = _score([_msg(b"", 0), _msg(None, 1), _msg(b"[]", 2)], _handle(model))
    assert [r.reason for r in result.rejected] == ["empty_message", "empty_message", "not_an_object"]
    assert result.rejected[1].value == b""
    assert result.scored == [] and result.features is None and model.calls == []


def test_prediction_values_and_headers(pipeline: Pipeline) -> None:
    record = {**good_record(4), "event_time": 1_699_999_999_000}
    handle = _handle(pipeline, version="7", alias="champion", stage=None)
    result = _score([_msg(_json(record), 41, key=b"key-1", partition=5)], handle)
    (scored,) = result.scored
    assert isinstance(scored, Scored)
    assert scored.key == b"key-1"
    assert scored.headers == [
        ("model_name", b"california_housing_best_model"),
        ("model_version", b"7"),
        ("format", b"json"),
    ]
    assert json.loads(scored.value) == {
        "record_id": "good-4",
        "prediction": scored.prediction,
        "model_name": "california_housing_best_model",
        "model_version": "7",
        "model_alias": "champion",
        "model_stage": None,
        "scored_at": NOW_MS,
        "source_topic": "housing.records",
        "source_partition": 5,
        "source_offset": 41,
        "event_time": 1_699_999_999_000,
        "shadow_prediction": None,
        "shadow_model_version": None,
        "role": "champion",
    }


def test_output_follows_each_inputs_wire_format(pipeline: Pipeline) -> None:
    registry = registry_client("mock://scoring")
    assert registry is not None
    records = [good_record(i) for i in range(6)]
    formats = [
        WireFormat.JSON,
        WireFormat.AVRO_SINGLE_OBJECT,
        WireFormat.AVRO_CONFLUENT,
        WireFormat.AVRO_CONFLUENT,
        WireFormat.AVRO_SINGLE_OBJECT,
        WireFormat.JSON,
    ]
    batch = [
        _msg(encode_record(r, f, schema_registry=registry), i)
        for i, (r, f) in enumerate(zip(records, formats, strict=True))
    ]
    result = _score(batch, _handle(pipeline), decoder=RecordDecoder(registry), encoder=PredictionEncoder(registry))
    assert result.rejected == []
    expected = _expected(pipeline, records)
    for scored, fmt, record, prediction in zip(result.scored, formats, records, expected, strict=True):
        assert dict(scored.headers)["format"] == fmt.value.encode()
        decoded = decode_prediction(scored.value, registry)
        assert decoded["record_id"] == record["record_id"]
        assert decoded["prediction"] == pytest.approx(prediction, rel=1e-12)
        assert decoded["model_version"] == "3" and decoded["source_offset"] == scored.source.offset
    confluent = [s.value for s, f in zip(result.scored, formats, strict=True) if f is WireFormat.AVRO_CONFLUENT]
    latest = registry.get_latest_version("housing.predictions-value")
    assert {int.from_bytes(v[1:5], "big") for v in confluent} == {latest.schema_id}


def test_record_id_falls_back_to_key_then_position(pipeline: Pipeline) -> None:
    base = {k: v for k, v in good_record(0).items() if k != "record_id"}
    batch = [
        _msg(_json({**base, "record_id": "explicit"}), 1, key=b"key-ignored"),
        _msg(_json(base), 2, key=b"from-key"),
        _msg(_json(base), 3, key=b"\xff\xfe"),  # not UTF-8
        _msg(_json(base), 4, key=None),
        _msg(_json(base), 5, key=b""),
    ]
    result = _score(batch, _handle(pipeline))
    assert [s.record_id for s in result.scored] == [
        "explicit",
        "from-key",
        "housing.records-2-3",
        "housing.records-2-4",
        "housing.records-2-5",
    ]
    assert [json.loads(s.value)["record_id"] for s in result.scored] == [s.record_id for s in result.scored]
    assert [s.key for s in result.scored] == [m.key for m in batch]


def test_predict_failure_is_isolated_to_the_bad_rows(pipeline: Pipeline) -> None:
    model = FailingOnRooms(pipeline)
    poisoned = {**good_record(1), "total_rooms": FailingOnRooms.POISON, "record_id": "poisoned"}
    records = [good_record(0), poisoned, {**good_record(2), "total_bedrooms": None}, good_record(3)]
    batch = [_msg(_json(r), i) for i, r in enumerate(records)]
    batch.insert(2, _msg(b"{}", 99))
    result = _score(batch, _handle(model))

    assert model.calls == [4, 1, 1, 1, 1]  # one batch call, then row by row only on the error path
    assert [r.source.offset for r in result.rejected] == [1, 99]  # input order across stages
    predict_reject = result.rejected[0]
    assert (predict_reject.reason, predict_reject.stage) == ("predict_failed", "predict")
    assert "poisoned row" in predict_reject.message
    assert dict(predict_reject.headers)["model_version"] == b"3"
    assert result.rejected[1].reason == "missing_field"

    assert [s.record_id for s in result.scored] == ["good-0", "good-2", "good-3"]
    kept = [records[0], records[2], records[3]]
    np.testing.assert_allclose(result.predictions, _expected(pipeline, kept), rtol=1e-12)
    assert result.features is not None and row_count(result.features) == 3
    pd.testing.assert_frame_equal(as_frame(result.features), to_frame([validate_record(r) for r in kept]))


def test_whole_model_failure_rejects_every_valid_record(pipeline: Pipeline) -> None:
    batch = [_msg(_json(good_record(i)), i) for i in range(3)] + [_msg(b"nope", 3)]
    result = _score(batch, _handle(Broken()))
    assert [(r.reason, r.stage) for r in result.rejected] == [("predict_failed", "predict")] * 3 + [
        ("malformed_json", "decode")
    ]
    assert result.scored == [] and result.features is None and len(result.predictions) == 0


def test_wrong_number_of_predictions_takes_the_error_path(pipeline: Pipeline) -> None:
    class OneShort(CountingModel):
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            self.calls.append(len(frame))
            out = np.asarray(self.inner.predict(frame))
            return out[:-1] if len(frame) > 1 else out

    model = OneShort(pipeline)
    batch = [_msg(_json(good_record(i)), i) for i in range(3)]
    result = _score(batch, _handle(model))
    assert model.calls == [3, 1, 1, 1]
    assert len(result.scored) == 3 and result.rejected == []


def test_non_finite_predictions_are_rejected(pipeline: Pipeline) -> None:
    records = [
        good_record(0),
        {**good_record(1), "total_rooms": 4242.0},
        {**good_record(2), "total_rooms": 4343.0},
        good_record(3),
    ]
    model = InfOnRooms(pipeline)
    result = _score([_msg(_json(r), i) for i, r in enumerate(records)], _handle(model))
    assert model.calls == [4]
    assert [(r.source.offset, r.reason, r.stage) for r in result.rejected] == [
        (1, "non_finite_prediction", "predict"),
        (2, "non_finite_prediction", "predict"),
    ]
    assert [s.record_id for s in result.scored] == ["good-0", "good-3"]
    assert np.isfinite(result.predictions).all()


def test_shadow_predictions_ride_along(pipeline: Pipeline, csv_rows: pd.DataFrame) -> None:
    shadow_model = Pipeline(pipeline.steps[:-1] + [("reg", LinearRegression(fit_intercept=False))]).fit(
        csv_rows[list(FEATURE_COLUMNS)], csv_rows[TARGET_COLUMN]
    )
    records = [good_record(i) for i in range(4)]
    main_model, shadow_counter = CountingModel(pipeline), CountingModel(shadow_model)
    result = _score(
        [_msg(_json(r), i) for i, r in enumerate(records)],
        _handle(main_model),
        shadow=_handle(shadow_counter, version="4", alias="challenger"),
    )
    assert main_model.calls == [4] and shadow_counter.calls == [4]
    np.testing.assert_allclose(result.predictions, _expected(pipeline, records), rtol=1e-12)
    expected_shadow = _expected(shadow_model, records)
    for scored, shadow_prediction in zip(result.scored, expected_shadow, strict=True):
        value = json.loads(scored.value)
        assert value["shadow_prediction"] == pytest.approx(shadow_prediction, rel=1e-12)
        assert value["shadow_model_version"] == "4"
        assert value["model_version"] == "3"


def test_shadow_failure_never_touches_the_main_prediction(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    records = [good_record(i) for i in range(3)]
    batch = [_msg(_json(r), i) for i, r in enumerate(records)]
    with caplog.at_level(logging.WARNING, logger="consumer.core.scoring"):
        result = _score(batch, _handle(pipeline), shadow=_handle(Broken(), version="9"))
    assert result.rejected == []
    np.testing.assert_allclose(result.predictions, _expected(pipeline, records), rtol=1e-12)
    for scored in result.scored:
        value = json.loads(scored.value)
        assert value["shadow_prediction"] is None and value["shadow_model_version"] is None
    shadow_logs = [r for r in caplog.records if "shadow" in r.getMessage()]
    assert len(shadow_logs) == 1  # once per batch, not per record


def test_registry_outage_is_raised_not_dead_lettered(pipeline: Pipeline) -> None:
    class Down:
        def get_schema(self, schema_id: int) -> Any:
            raise ConnectionError("refused")

    value = b"\x00\x00\x00\x00\x05" + b"\x00" * 20
    with pytest.raises(RegistryUnavailableError):
        _score([_msg(_json(good_record(0)), 0), _msg(value, 1)], _handle(pipeline), decoder=RecordDecoder(Down()))  # type: ignore[arg-type]


def test_result_types(pipeline: Pipeline) -> None:
    result = _score([_msg(_json(good_record(0)), 0), _msg(b"", 1)], _handle(pipeline))
    assert isinstance(result, BatchResult)
    assert isinstance(result.scored[0], Scored) and isinstance(result.rejected[0], Rejected)
    assert isinstance(result.scored[0].prediction, float)
    assert all(isinstance(v, bytes) for _, v in result.scored[0].headers + result.rejected[0].headers)


def test_scored_headers_are_independent_lists(pipeline: Pipeline) -> None:
    result = _score([_msg(_json(good_record(i)), i) for i in range(2)], _handle(pipeline))
    result.scored[0].headers.append(("traceparent", b"x"))
    assert len(result.scored[1].headers) == 3


def test_registry_fixture_type() -> None:
    assert isinstance(registry_client("mock://x"), SchemaRegistryClient)


# --- bounded record ids and outputs too large for their topic (issue 12, item 8) -----------------------------------

def _digest(key: bytes) -> str:
    return "key-sha256:" + hashlib.sha256(key).hexdigest()


def test_a_key_longer_than_the_record_id_limit_becomes_a_stable_digest_id(pipeline: Pipeline) -> None:
    base = {k: v for k, v in good_record(0).items() if k != "record_id"}
    long_key, limit_key = b"k" * 800_000, b"x" * 256
    batch = [_msg(_json(base), 1, key=long_key), _msg(_json(base), 2, key=limit_key),
             _msg(_json(base), 3, key=long_key)]
    result = _score(batch, _handle(pipeline))
    # 256 characters is the record_id field's own limit: kept; anything longer is a digest of the key's bytes,
    # the same for the same key, so the prediction no longer carries the key twice.
    assert [s.record_id for s in result.scored] == [_digest(long_key), "x" * 256, _digest(long_key)]
    assert json.loads(result.scored[0].value)["record_id"] == _digest(long_key)
    assert len(result.scored[0].value) < 2000
    assert [s.key for s in result.scored] == [long_key, limit_key, long_key]  # the input's key, unchanged


def test_an_output_over_max_output_bytes_is_dead_lettered_as_output_too_large(pipeline: Pipeline) -> None:
    records = [good_record(i) for i in range(3)]
    huge_key = b"h" * 1_100_000
    batch = [_msg(_json(records[0]), 1, key=b"a"), _msg(_json(records[1]), 2, key=huge_key),
             _msg(_json(records[2]), 3, key=b"c")]
    result = _score(batch, _handle(pipeline), max_output_bytes=1_000_000)
    assert [s.source.offset for s in result.scored] == [1, 3]
    [rejected] = result.rejected
    headers = dict(rejected.headers)
    assert (rejected.reason, rejected.stage) == ("output_too_large", "produce")
    assert headers[topics.HEADER_DLQ_REASON] == b"output_too_large" and headers[topics.HEADER_DLQ_STAGE] == b"produce"
    assert b"1,000,000" in headers[topics.HEADER_DLQ_MESSAGE]
    assert rejected.value == batch[1].value  # the original bytes
    assert rejected.key == _digest(huge_key).encode()  # a key this long would not fit the DLQ either
    # The monitors see only what was scored.
    assert row_count(result.features) == 2 and result.predictions.shape == (2,)
    np.testing.assert_allclose(result.predictions, _expected(pipeline, [records[0], records[2]]))


def test_a_prediction_the_broker_refused_is_dead_lettered_when_scored_again(pipeline: Pipeline) -> None:
    records = [good_record(i) for i in range(3)]
    batch = [_msg(_json(records[i]), 10 + i, key=f"k{i}".encode()) for i in range(3)]
    refused = {("housing.records", 2, 11): "the broker refused its prediction as too large"}
    result = _score(batch, _handle(pipeline), refused=refused)
    assert [s.source.offset for s in result.scored] == [10, 12]
    [rejected] = result.rejected
    assert rejected.reason == "output_too_large" and rejected.key == b"k1"  # a short key stays the input's
    assert b"refused its prediction" in dict(rejected.headers)[topics.HEADER_DLQ_MESSAGE]
    # Positions of other partitions or topics are someone else's.
    other = _score(batch, _handle(pipeline), refused={("housing.records", 3, 11): "x", ("other", 2, 11): "x"})
    assert len(other.scored) == 3 and not other.rejected

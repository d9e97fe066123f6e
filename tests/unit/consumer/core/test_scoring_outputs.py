"""score_batch's outputs field by field in each wire format (with a shadow model), dead letters of the predict
stage naming the model, dead letters in input order whatever the stage, and the predict time measured."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from consumer.core.handle import ModelHandle
from consumer.core.scoring import Incoming, score_batch
from producer.bad_records import good_record
from schemas import topics
from schemas.codecs import PredictionEncoder, RecordDecoder, RecordEncoder, WireFormat, decode_prediction

SCORED_AT = 1_700_000_000_000


class ByIncome:
    """Predicts income * 1000, and NaN for an income over 10 (a model that fails on some rows)."""

    def predict(self, frame: Any) -> np.ndarray:
        income = np.asarray(frame["median_income"], dtype=np.float64)
        return np.where(income > 10, np.nan, income * 1000)


def _handle(model: Any, version: str, **kwargs: Any) -> ModelHandle:
    return ModelHandle(model=model, name="m", version=version, alias="champion", stage="Production", **kwargs)


def _msg(value: bytes, offset: int) -> Incoming:
    return Incoming(key=b"k%d" % offset, value=value, topic="housing.records", partition=1, offset=offset)


def _score(batch: list[Incoming], **kwargs: Any) -> Any:
    return score_batch(batch, _handle(ByIncome(), "5"), decoder=RecordDecoder(), encoder=PredictionEncoder(),
                       now_ms=lambda: SCORED_AT, **kwargs)


def test_every_prediction_field_in_every_registry_free_format() -> None:
    record = {**good_record(3), "median_income": 2.5, "record_id": "r-3", "event_time": 123}
    shadow = _handle(ByIncome(), "6")
    for fmt in (WireFormat.JSON, WireFormat.AVRO_SINGLE_OBJECT):
        result = _score([_msg(RecordEncoder().encode(record, fmt), 9)], shadow=shadow)
        [scored] = result.scored
        assert decode_prediction(scored.value) == {
            "record_id": "r-3", "prediction": 2500.0, "model_name": "m", "model_version": "5",
            "model_alias": "champion", "model_stage": "Production", "scored_at": SCORED_AT,
            "source_topic": "housing.records", "source_partition": 1, "source_offset": 9, "event_time": 123,
            "shadow_prediction": 2500.0, "shadow_model_version": "6", "role": "champion",
        }, fmt
        assert dict(scored.headers)[topics.HEADER_FORMAT] == fmt.value.encode()


def test_a_non_finite_prediction_is_dead_lettered_naming_the_model() -> None:
    result = _score([_msg(json.dumps({**good_record(1), "median_income": 12.0}).encode(), 4)])
    [rejected] = result.rejected
    headers = dict(rejected.headers)
    assert (rejected.reason, rejected.stage) == ("non_finite_prediction", "predict")
    assert headers[topics.HEADER_MODEL_NAME] == b"m" and headers[topics.HEADER_MODEL_VERSION] == b"5"
    assert not result.scored and result.predictions.shape == (0,) and result.predictions.dtype == np.float64


def test_dead_letters_follow_input_order_whatever_their_stage() -> None:
    batch = [_msg(json.dumps({**good_record(1), "median_income": 12.0}).encode(), 0),  # predict stage
             _msg(b"{not json", 1),                                                   # decode stage
             _msg(json.dumps(good_record(2)).encode(), 2),
             _msg(json.dumps({**good_record(3), "latitude": 50.0}).encode(), 3)]      # validate stage
    result = _score(batch)
    assert [(r.source.offset, r.stage) for r in result.rejected] == [(0, "predict"), (1, "decode"), (3, "validate")]
    assert [s.source.offset for s in result.scored] == [2]
    assert 0.0 <= result.predict_seconds < 3600  # measured (a duration), not a timestamp


def test_a_batch_of_only_bad_records_predicts_nothing() -> None:
    result = _score([_msg(b"", 0), _msg(b"[]", 1)])
    assert [r.reason for r in result.rejected] == ["empty_message", "not_an_object"]
    assert result.features is None and result.predictions.dtype == np.float64 and result.predictions.size == 0


class Raising:
    def predict(self, frame: Any) -> np.ndarray:
        raise RuntimeError("bad \udcff input")  # text that is not encodable as UTF-8


def test_dead_letter_headers_are_encoded_even_from_text_that_is_not_utf8() -> None:
    msg = Incoming(key=None, value=json.dumps(good_record(1)).encode(), topic="t\udcff", partition=0, offset=0)
    result = score_batch([msg], _handle(Raising(), "5"), decoder=RecordDecoder(), encoder=PredictionEncoder(),
                         now_ms=lambda: SCORED_AT)
    [rejected] = result.rejected
    headers = dict(rejected.headers)
    assert rejected.reason == "predict_failed"
    assert headers[topics.HEADER_DLQ_SOURCE_TOPIC] == b"t?"
    assert b"RuntimeError: bad ? input" in headers[topics.HEADER_DLQ_MESSAGE]


class ByIncomeWithCanary:
    """Like ByIncome but never NaN, so every row takes the batch route."""

    def predict(self, frame: Any) -> np.ndarray:
        return np.asarray(frame["median_income"], dtype=np.float64) * 1000 + 0.1


def test_the_batch_route_writes_what_the_record_by_record_route_writes() -> None:
    # An unrelated refused position sends a batch record by record; the outputs must not change by a byte.
    records = [{**good_record(i), "median_income": 1.0 + i / 7} for i in range(12)]
    records[1]["record_id"] = None                       # id from the key
    records[2]["record_id"] = "r-\u00e9\u2603"           # escaped as \u in JSON
    records[3]["event_time"] = None
    batch = [_msg(json.dumps(record).encode(), offset) for offset, record in enumerate(records)]
    batch[1] = batch[1]._replace(key=b"x" * 300)         # a key too long to be an id: its digest
    batch[4] = batch[4]._replace(key=None, value=json.dumps({**records[4], "record_id": None}).encode())
    unrelated = {("elsewhere", 0, 0): "refused"}
    handle, canary = _handle(ByIncomeWithCanary(), "5"), _handle(ByIncomeWithCanary(), "9")

    def both(**kwargs: Any) -> list[Any]:
        results = [score_batch(batch, handle, decoder=RecordDecoder(), encoder=PredictionEncoder(),
                               now_ms=lambda: SCORED_AT, refused=refused, **kwargs) for refused in (None, unrelated)]
        for result in results:
            assert [s.prediction for s in result.scored] == result.predictions.tolist()
        return results

    for kwargs in ({}, {"shadow": _handle(ByIncome(), "6")}, {"canary": canary, "canary_fraction": 0.5},
                   {"max_output_bytes": 10_000}):
        batch_route, record_route = both(**kwargs)
        assert len(batch_route.scored) == len(records), kwargs
        assert batch_route.scored == record_route.scored, kwargs
        assert [type(s.prediction) for s in batch_route.scored] == [float] * len(records)
        assert batch_route.predictions.dtype == np.float64
        if "canary" in kwargs:
            assert {s.role for s in batch_route.scored} == {"champion", "canary"}
        assert all(json.loads(s.value) == decode_prediction(s.value) for s in batch_route.scored)

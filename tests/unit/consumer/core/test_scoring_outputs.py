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

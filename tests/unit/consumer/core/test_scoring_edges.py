"""Edges of score_batch that mutation testing found untested: a batch whose every key goes to the canary, a
canary and a shadow together (each output carries its own row's shadow value), the producer's size limit met
exactly and missed by one byte on both routes, the common batch taking the one-pass route, a model answering
the wrong number of predictions, and the canary fraction's bounds."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import numpy as np
import pytest

from consumer.core import scoring
from consumer.core.handle import ModelHandle
from consumer.core.routing import BUCKETS, canary_mask, threshold
from consumer.core.scoring import Incoming, output_size, score_batch
from producer.bad_records import good_record
from schemas.codecs import PredictionEncoder, PredictionJsonWriter, RecordDecoder, WireFormat

SCORED_AT = 1_700_000_000_000


class Linear:
    """Predicts median_income * scale + offset: every row its own, finite value."""

    def __init__(self, scale: float, offset: float = 0.0) -> None:
        self.scale, self.offset = scale, offset

    def predict(self, frame: Any) -> np.ndarray:
        return np.asarray(frame["median_income"], dtype=np.float64) * self.scale + self.offset


class TwoPerRow:
    """Answers two predictions per row."""

    def predict(self, frame: Any) -> np.ndarray:
        return np.zeros(2 * len(np.asarray(frame["median_income"])))


def _handle(model: Any, version: str) -> ModelHandle:
    return ModelHandle(model=model, name="m", version=version, alias="champion", stage="Production")


def _batch(count: int) -> list[Incoming]:
    return [Incoming(key=b"key-%d" % i, topic="housing.records", partition=0, offset=i,
                     value=json.dumps({**good_record(i), "median_income": 1.0 + i, "record_id": f"r-{i}"}).encode())
            for i in range(count)]


def _score(batch: list[Incoming], model: ModelHandle, **kwargs: Any) -> scoring.BatchResult:
    return score_batch(batch, model, decoder=RecordDecoder(), encoder=PredictionEncoder(), now_ms=lambda: SCORED_AT,
                       **kwargs)


def _on_canary(key: bytes, fraction: float) -> bool:
    # The routing rule restated from its specification: first 8 bytes of SHA-256, big-endian, below fraction.
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") < fraction * 2**64


def test_a_batch_entirely_on_the_canary_is_scored_by_the_canary() -> None:
    batch = _batch(5)
    result = _score(batch, _handle(Linear(1000), "5"), canary=_handle(Linear(1000, 7), "9"), canary_fraction=1.0)
    assert [s.source.offset for s in result.scored] == [0, 1, 2, 3, 4]
    assert [s.role for s in result.scored] == ["canary"] * 5
    assert [json.loads(s.value)["model_version"] for s in result.scored] == ["9"] * 5
    assert result.predictions.tolist() == [1007.0, 2007.0, 3007.0, 4007.0, 5007.0]
    assert not result.rejected


def test_a_canary_and_a_shadow_together_keep_each_rows_shadow_value() -> None:
    batch = _batch(16)
    routed = [_on_canary(msg.key or b"", 0.5) for msg in batch]
    assert any(routed) and not all(routed)  # both models score part of this batch
    result = _score(batch, _handle(Linear(1000), "5"), canary=_handle(Linear(1000, 7), "9"), canary_fraction=0.5,
                    shadow=_handle(Linear(10), "6"))
    assert [s.source.offset for s in result.scored] == list(range(16))
    for i, (scored, on_canary) in enumerate(zip(result.scored, routed, strict=True)):
        value = json.loads(scored.value)
        assert value["record_id"] == f"r-{i}"
        assert value["role"] == ("canary" if on_canary else "champion")
        assert value["prediction"] == (1.0 + i) * 1000 + (7 if on_canary else 0)
        assert value["shadow_prediction"] == (1.0 + i) * 10 and value["shadow_model_version"] == "6"


@pytest.mark.parametrize("route", ["batch", "record by record"])
def test_an_output_of_exactly_the_producers_limit_is_produced_one_byte_more_is_not(route: str) -> None:
    batch = _batch(3)
    model = _handle(Linear(1000), "5")
    sizes = [output_size(s.key, s.value, s.headers) for s in _score(batch, model).scored]
    largest = max(sizes)
    # an unrelated refused position sends the batch record by record
    refused = {("elsewhere", 0, 0): "refused"} if route != "batch" else None
    fits = _score(batch, model, max_output_bytes=largest, refused=refused)
    assert [s.source.offset for s in fits.scored] == [0, 1, 2] and not fits.rejected
    over = _score(batch, model, max_output_bytes=largest - 1, refused=refused)
    too_large = [i for i, size in enumerate(sizes) if size == largest]
    assert [r.source.offset for r in over.rejected] == too_large
    assert {r.reason for r in over.rejected} == {"output_too_large"}
    assert [s.source.offset for s in over.scored] == [i for i in range(3) if i not in too_large]
    assert f"message.max.bytes {largest - 1:,}" in over.rejected[0].message


def _writers(model: ModelHandle, canary: ModelHandle | None = None) -> dict[str, PredictionJsonWriter]:
    return {role: PredictionJsonWriter(model_name=h.name, model_version=h.version, model_alias=h.alias,
                                       model_stage=h.stage, scored_at=SCORED_AT, shadow_model_version=None, role=role)
            for role, h in (("champion", model), ("canary", canary)) if h is not None}


def test_the_common_batch_takes_the_one_pass_route() -> None:
    # The one-pass route (issue 15) is a speed lever: the per-record route writes the same bytes, so only calling
    # it tells whether a common batch (all JSON, every prediction a finite float, outputs under the limit) takes it.
    batch = _batch(3)
    model, canary = _handle(Linear(1000), "5"), _handle(Linear(1000, 7), "9")
    valid = [(i, msg, {**good_record(i), "record_id": f"r-{i}", "event_time": None}, WireFormat.JSON)
             for i, msg in enumerate(batch)]
    handles = {"champion": model, "canary": canary}
    cases: list[np.ndarray | list[float | Exception]] = [np.array([1.0, 2.0, 3.0]), [1.0, 2.0, 3.0],
                                                         [np.float64(1.0), np.float64(2.0), 3.0]]
    for outcomes in cases:
        fast = scoring._scored_json_batch(valid, outcomes, None, None, _writers(model), handles, None)
        assert fast is not None, outcomes
        assert [s.prediction for s in fast[0]] == [1.0, 2.0, 3.0] and fast[1].tolist() == [1.0, 2.0, 3.0]
    on_canary = np.array([False, True, False])
    fast = scoring._scored_json_batch(valid, [np.float64(1.0), np.float64(2.0), np.float64(3.0)], on_canary, None,
                                      _writers(model, canary), handles, None)
    assert fast is not None
    assert [(s.source.offset, s.role) for s in fast[0]] == [(0, "champion"), (1, "canary"), (2, "champion")]
    # the limit exactly met still takes it; a row the model failed on or a non-finite one does not
    size = max(output_size(s.key, s.value, s.headers) for s in fast[0])
    assert scoring._scored_json_batch(valid, np.array([1.0, 2.0, 3.0]), on_canary, None, _writers(model, canary),
                                      handles, size) is not None
    assert scoring._scored_json_batch(valid, [1.0, ValueError("x"), 3.0], None, None, _writers(model), handles,
                                      None) is None
    assert scoring._scored_json_batch(valid, np.array([1.0, np.nan, 3.0]), None, None, _writers(model), handles,
                                      None) is None
    assert scoring._scored_json_batch(valid, np.array([1, 2, 3]), None, None, _writers(model), handles,
                                      None) is None


def test_a_model_answering_two_predictions_per_row_is_named_in_the_dead_letter() -> None:
    result = _score(_batch(2), _handle(TwoPerRow(), "5"))
    assert not result.scored
    assert [r.reason for r in result.rejected] == ["predict_failed", "predict_failed"]
    assert result.rejected[0].message == "model m v5 failed: ValueError: model returned (2,) predictions for 1 rows"


def test_the_canary_fraction_must_be_finite_and_is_clamped_to_the_key_space() -> None:
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError) as caught:
            threshold(bad)
        assert str(caught.value) == f"canary fraction must be finite, got {bad!r}"
    assert threshold(1.5) == BUCKETS and threshold(1.0) == BUCKETS
    assert threshold(-0.5) == 0 and threshold(0.0) == 0
    assert threshold(0.25) == 2**62


def test_the_canary_mask_is_a_bool_mask_for_every_fraction_and_size() -> None:
    keys = [b"key-%d" % i for i in range(8)] + [None]
    for fraction in (0.0, 0.5, 1.0):
        mask = canary_mask(keys, fraction)
        assert mask.dtype == np.bool_ and mask.shape == (9,)
        assert mask.tolist() == [key is not None and _on_canary(key, fraction) for key in keys], fraction
    assert canary_mask([b"key-0"], 1.0).tolist() == [True]
    assert canary_mask([None], 1.0).tolist() == [False]
    assert canary_mask([], 0.5).dtype == np.bool_ and canary_mask([], 0.5).shape == (0,)


UNRELATED = {("elsewhere", 0, 0): "refused"}  # an unrelated refused position: the batch goes record by record


def test_without_a_fraction_a_canary_scores_nothing() -> None:
    result = _score(_batch(6), _handle(Linear(1000), "5"), canary=_handle(Linear(1000, 7), "9"))
    assert [s.role for s in result.scored] == ["champion"] * 6
    assert result.predictions.tolist() == [1000.0 * (1 + i) for i in range(6)]


def test_the_common_batch_is_not_written_record_by_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def per_record(*args: Any) -> bytes:
        raise AssertionError("the per-record writer was used for a common batch")

    monkeypatch.setattr(PredictionJsonWriter, "write", per_record)
    result = _score(_batch(4), _handle(Linear(1000), "5"))
    assert [s.source.offset for s in result.scored] == [0, 1, 2, 3]


@pytest.mark.parametrize("refused", [None, UNRELATED], ids=["batch", "record by record"])
def test_both_routes_keep_event_time_features_and_the_predict_time(refused: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    batch = [msg._replace(value=json.dumps({**json.loads(msg.value or b""),
                                            "event_time": 1_600_000_000_000 + i}).encode())
             for i, msg in enumerate(_batch(3))]
    clock = itertools.chain([100.0, 102.5], itertools.count(200.0))
    monkeypatch.setattr(scoring.time, "perf_counter", lambda: next(clock))
    result = _score(batch, _handle(Linear(1000), "5"), refused=refused)
    assert [json.loads(s.value)["event_time"] for s in result.scored] == [1_600_000_000_000 + i for i in range(3)]
    assert result.predict_seconds == 2.5
    assert result.features is not None and result.features["median_income"].tolist() == [1.0, 2.0, 3.0]


class Failing:
    """Raises with a message longer than a dead letter keeps."""

    def predict(self, frame: Any) -> np.ndarray:
        raise RuntimeError("x" * 400)


def test_a_predict_failure_message_is_cut_at_300_characters() -> None:
    result = _score(_batch(1), _handle(Failing(), "5"))
    [rejected] = result.rejected
    expected = ("model m v5 failed: RuntimeError: " + "x" * 400)[:300]
    assert rejected.message == expected and len(rejected.message) == 300

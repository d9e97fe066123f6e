"""Shadow predictions as they reach the predictions topic: each on its own record's row, never a NaN in JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult, Incoming, score_batch
from schemas.codecs import PredictionEncoder, RecordDecoder
from schemas.examples import EXAMPLE_RECORD

REJECTED_ROOMS = 4242.0
"""The champion predicts NaN for a record with this many rooms: rejected at the predict stage."""
SHADOW_NAN_ROOMS = 4343.0
"""The shadow predicts NaN for a record with this many rooms."""


class RoomsModel:
    """Predicts ``factor * total_rooms``, so every prediction says which record it was made for."""

    def __init__(self, factor: float, nan_rooms: float) -> None:
        self.factor = factor
        self.nan_rooms = nan_rooms

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        rooms = frame["total_rooms"].to_numpy(dtype=np.float64)
        return np.where(rooms == self.nan_rooms, np.nan, self.factor * rooms)


def handle(model: Any, version: str) -> ModelHandle:
    return ModelHandle(model=model, name="m", version=version, alias="champion", source="memory")


def score(rooms: list[float]) -> BatchResult:
    batch = [Incoming(key=f"k{i}".encode(), value=json.dumps({**EXAMPLE_RECORD, "total_rooms": r}).encode(),
                      topic="housing.records", partition=0, offset=i) for i, r in enumerate(rooms)]
    return score_batch(batch, handle(RoomsModel(1.0, REJECTED_ROOMS), "1"), decoder=RecordDecoder(),
                       encoder=PredictionEncoder(), shadow=handle(RoomsModel(10.0, SHADOW_NAN_ROOMS), "2"),
                       now_ms=lambda: 1)


def strict_json(value: bytes) -> dict[str, Any]:
    """Parse as a strict JSON reader would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    parsed: dict[str, Any] = json.loads(value, parse_constant=refuse)
    return parsed


def test_after_a_predict_stage_rejection_each_shadow_value_stays_on_its_own_record() -> None:
    rooms = [100.0, REJECTED_ROOMS, 300.0, 400.0]
    result = score(rooms)
    assert [r.reason for r in result.rejected] == ["non_finite_prediction"]
    values = [strict_json(s.value) for s in result.scored]
    assert [v["prediction"] for v in values] == [100.0, 300.0, 400.0]
    assert [v["shadow_prediction"] for v in values] == [1000.0, 3000.0, 4000.0]
    assert [v["source_offset"] for v in values] == [0, 2, 3]


def test_a_non_finite_shadow_prediction_is_written_as_null() -> None:
    result = score([100.0, SHADOW_NAN_ROOMS, 300.0])
    values = [strict_json(s.value) for s in result.scored]  # raises on a bare NaN
    assert [v["prediction"] for v in values] == [100.0, SHADOW_NAN_ROOMS, 300.0]
    assert [v["shadow_prediction"] for v in values] == [1000.0, None, 3000.0]
    assert all(v["shadow_model_version"] == "2" for v in values)


@pytest.mark.parametrize("rooms", [[REJECTED_ROOMS, SHADOW_NAN_ROOMS, 7.0], [SHADOW_NAN_ROOMS, REJECTED_ROOMS]])
def test_rejections_and_shadow_nans_together(rooms: list[float]) -> None:
    result = score(rooms)
    values = [strict_json(s.value) for s in result.scored]
    expected = [(r, None if r == SHADOW_NAN_ROOMS else 10 * r) for r in rooms if r != REJECTED_ROOMS]
    assert [(v["prediction"], v["shadow_prediction"]) for v in values] == expected

"""score_batch with models of different flavours: a pyfunc-style champion gets one frame per batch, and the shadow
may be another flavour than the champion (fast path vs DataFrame), each on its own record's row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from consumer.core.features import to_frame
from consumer.core.handle import PYFUNC, ModelHandle
from consumer.core.scoring import Incoming, score_batch
from consumer.core.signature import InputPlan
from schemas.codecs import PredictionEncoder, RecordDecoder
from schemas.examples import EXAMPLE_RECORD
from training.pipeline import build_pipeline


class IncomeTimes:
    """A pyfunc-style model of two columns: ``factor * median_income + latitude``; counts its calls."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.calls = 0

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.calls += 1
        assert list(frame.columns) == ["median_income", "latitude"]
        return pd.DataFrame({"out": self.factor * frame["median_income"] + frame["latitude"]})


PLAN = InputPlan(("median_income", "latitude"), ("float64", "float64"), "signature")
ROWS = [{**EXAMPLE_RECORD, "median_income": 1.0 + i, "total_rooms": 100.0 * (i + 1)} for i in range(40)]


def _batch() -> list[Incoming]:
    return [Incoming(key=f"k{i}".encode(), value=json.dumps(row).encode(), topic="t", partition=0, offset=i)
            for i, row in enumerate(ROWS)]


@pytest.fixture(scope="module")
def pipeline() -> object:
    frame = to_frame(ROWS)
    return build_pipeline("linear_regression").fit(frame, 1000.0 * frame["total_rooms"])


@pytest.mark.parametrize("pyfunc_is_shadow", [True, False])
def test_a_shadow_of_another_flavour_is_scored_on_the_same_rows(pipeline: object, pyfunc_is_shadow: bool) -> None:
    fast = ModelHandle(model=pipeline, name="m", version="1", source="memory")
    custom_model = IncomeTimes(10.0)
    custom = ModelHandle(model=custom_model, name="m", version="2", source="memory", flavour=PYFUNC, plan=PLAN)
    assert fast.fast_path and not custom.fast_path
    champion, shadow = (fast, custom) if pyfunc_is_shadow else (custom, fast)
    result = score_batch(_batch(), champion, decoder=RecordDecoder(), encoder=PredictionEncoder(), shadow=shadow,
                         now_ms=lambda: 1)
    assert custom_model.calls == 1  # one frame for the whole batch
    values = [json.loads(s.value) for s in result.scored]
    expected_fast = pipeline.predict(to_frame(ROWS))  # type: ignore[attr-defined]
    expected_custom = np.array([10.0 * r["median_income"] + r["latitude"] for r in ROWS])
    main, other = (expected_fast, expected_custom) if pyfunc_is_shadow else (expected_custom, expected_fast)
    np.testing.assert_allclose([v["prediction"] for v in values], main, rtol=1e-12)
    np.testing.assert_allclose([v["shadow_prediction"] for v in values], other, rtol=1e-12)
    assert {v["shadow_model_version"] for v in values} == {shadow.version}

"""Batch inputs per flavour: the fast paths read the batch's numpy columns, a pyfunc-style model gets one
DataFrame per batch with exactly its signature's columns and dtypes, and outputs become one float per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from consumer.core.features import NUMERIC_COLUMNS, to_columns, to_frame
from consumer.core.handle import PYFUNC, ModelHandle, OutputShapeError, one_per_row
from consumer.core.signature import InputPlan
from schemas.examples import EXAMPLE_RECORD


class Recording:
    """A model that keeps every frame it is given and answers with median_income per row."""

    def __init__(self, output: str = "array") -> None:
        self.frames: list[pd.DataFrame] = []
        self.output = output

    def predict(self, frame: pd.DataFrame) -> object:
        self.frames.append(frame)
        values = frame["median_income"].to_numpy(dtype=np.float64)
        if self.output == "frame":
            return pd.DataFrame({"prediction": values})
        if self.output == "column":
            return values.reshape(-1, 1)
        if self.output == "list":
            return values.tolist()
        return values


def _rows(count: int) -> list[dict[str, object]]:
    return [{**EXAMPLE_RECORD, "median_income": float(i), "total_bedrooms": None if i % 3 == 0 else 100.0}
            for i in range(count)]


PLAN = InputPlan(("median_income", "total_bedrooms", "ocean_proximity"), ("float32", "float64", "object"),
                 "signature")


def test_a_pyfunc_model_gets_one_frame_per_batch_with_its_columns_and_dtypes() -> None:
    model = Recording()
    handle = ModelHandle(model=model, name="m", version="1", flavour=PYFUNC, plan=PLAN)
    assert handle.predict_path == "dataframe"
    predictions = handle.predict(to_columns(_rows(300)))
    assert len(model.frames) == 1
    frame = model.frames[0]
    assert list(frame.columns) == list(PLAN.columns)
    assert [str(t) for t in frame.dtypes] == ["float32", "float64", "object"]
    assert frame["total_bedrooms"].isna().sum() == 100
    assert isinstance(frame.index, pd.RangeIndex)
    np.testing.assert_array_equal(predictions, np.arange(300, dtype=np.float64))


def test_a_model_without_a_plan_gets_the_records_nine_columns() -> None:
    model = Recording()
    ModelHandle(model=model, name="m", version="1", flavour=PYFUNC).predict(to_columns(_rows(4)))
    pd.testing.assert_frame_equal(model.frames[0], to_frame(_rows(4)))


@pytest.mark.parametrize("output", ["array", "frame", "column", "list"])
def test_every_one_column_output_shape_becomes_one_float_per_row(output: str) -> None:
    handle = ModelHandle(model=Recording(output), name="m", version="1", flavour=PYFUNC, plan=PLAN)
    predictions = handle.predict(to_columns(_rows(5)))
    assert predictions.dtype == np.float64 and predictions.shape == (5,)


def test_two_values_per_row_are_an_output_shape_error() -> None:
    with pytest.raises(OutputShapeError):
        one_per_row(np.ones((4, 2)))
    with pytest.raises(OutputShapeError):
        one_per_row(np.ones(3), rows=4)


def test_a_bare_lightgbm_model_takes_its_numeric_columns_as_one_matrix() -> None:
    from lightgbm import LGBMRegressor

    columns = tuple(c for c in NUMERIC_COLUMNS if c != "median_income")
    rows = _rows(200)
    frame = to_frame(rows)[list(columns)]
    model = LGBMRegressor(n_estimators=20, n_jobs=1, verbose=-1, min_child_samples=5)
    model.fit(frame, np.arange(200, dtype=np.float64) % 17)
    plan = InputPlan(columns, ("float64",) * len(columns), "signature")
    handle = ModelHandle(model=model, name="m", version="1", flavour="lightgbm", plan=plan)
    assert handle.fast_path
    np.testing.assert_allclose(handle.predict(to_columns(rows)), model.predict(frame), rtol=1e-12)


def test_a_fast_path_reading_a_column_outside_the_plan_is_not_used() -> None:
    from training.pipeline import build_pipeline

    frame = to_frame(_rows(50))
    pipeline = build_pipeline("linear_regression").fit(frame, np.arange(50, dtype=np.float64))
    assert ModelHandle(model=pipeline, name="m", version="1").fast_path
    # The pipeline reads all nine columns; a signature that gives it three cannot be served by the fast path.
    assert not ModelHandle(model=pipeline, name="m", version="1", plan=PLAN).fast_path

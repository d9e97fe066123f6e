"""Edges of the fast path's check rows that mutation testing found untested: an input example of fewer columns
is completed from the built-in example record, its text column kept as text and its numbers as float64; and a
model that its fast path does not reproduce on the version's input example gets no fast path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from consumer.core.fastpath import check_frames, complete_example, verified_predictor
from consumer.core.features import FEATURE_COLUMNS
from consumer.core.handle import ModelHandle
from schemas.examples import EXAMPLE_RECORD
from training.data import features_frame, load_housing
from training.pipeline import build_pipeline


def test_an_example_of_fewer_columns_is_completed_text_as_text() -> None:
    example = pd.DataFrame({"median_income": [3, 4], "ocean_proximity": ["INLAND", "NEAR BAY"]})
    frame = complete_example(example)
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert frame["ocean_proximity"].dtype == object
    assert frame["ocean_proximity"].tolist() == ["INLAND", "NEAR BAY"]
    assert frame["median_income"].dtype == np.float64 and frame["median_income"].tolist() == [3.0, 4.0]
    assert frame["latitude"].dtype == np.float64
    assert frame["latitude"].tolist() == [float(EXAMPLE_RECORD["latitude"])] * 2


def test_an_example_without_the_text_column_gets_the_example_records() -> None:
    frame = complete_example(pd.DataFrame({"median_income": [5.5]}))
    assert frame["ocean_proximity"].tolist() == [EXAMPLE_RECORD["ocean_proximity"]]
    assert frame["ocean_proximity"].dtype == object
    frames = check_frames(pd.DataFrame({"median_income": [5.5]}))
    assert len(frames) == 2 and frames[1].equals(frame)
    assert len(check_frames(pd.DataFrame({"median_income": []}))) == 1  # an empty example adds no frame


class PredictsOtherwiseOnThree(Pipeline):
    """A pipeline whose own predict adds 1 on a batch of three rows (the size of the input example below): a
    model the numpy fast path does not reproduce there."""

    def predict(self, X: Any, **params: Any) -> np.ndarray:
        out = np.asarray(super().predict(X, **params), dtype=np.float64)
        return out + 1.0 if len(X) == 3 else out


def test_the_fast_path_is_checked_on_the_versions_input_example_too() -> None:
    housing = load_housing().sample(300, random_state=4)
    fitted = build_pipeline("linear_regression").fit(features_frame(housing), housing["median_house_value"])
    model = PredictsOtherwiseOnThree(fitted.steps)
    example = features_frame(housing.iloc[:3])
    assert verified_predictor(model) is not None  # on the built-in check rows (six) it agrees
    assert verified_predictor(model, example) is None
    assert verified_predictor(model, features_frame(housing.iloc[:4])) is not None
    assert ModelHandle(model=model, name="m", version="1", source="memory", input_example=example).fast_path is False
    assert ModelHandle(model=model, name="m", version="1", source="memory").fast_path is True

"""Edges of the scoring core that mutation testing found untested: an output's size as the producer counts it,
the dead letter of a refused output at the 256-byte key limit, the model frame's dtypes and order, the imputer
and scaler settings the fast path refuses or reproduces, and PSI's epsilon and unknown-kind error."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from consumer.core.fastpath import compile_predictor, verified_predictor
from consumer.core.features import NUMERIC_COLUMNS, model_frame
from consumer.core.profile import psi, psi_by_feature
from consumer.core.scoring import Incoming, output_size, score_batch
from producer.bad_records import good_record
from schemas import topics
from schemas.codecs import PredictionEncoder, RecordDecoder
from tests.unit.consumer.handles import handle
from training.data import features_frame, load_housing


def test_output_size_counts_key_value_and_headers() -> None:
    assert output_size(b"key", b"value", [("ab", b"cde"), ("f", b"")]) == 3 + 5 + 5 + 1
    assert output_size(None, b"v", []) == 1


@pytest.mark.parametrize(("key_length", "digested"), [(256, False), (257, True)])
def test_a_refused_output_keeps_a_key_of_256_bytes_and_digests_a_longer_one(key_length: int, digested: bool) -> None:
    key = b"k" * key_length
    msg = Incoming(key=key, value=json.dumps(good_record(1)).encode(), topic="housing.records", partition=0, offset=7)
    result = score_batch([msg], handle("4"), decoder=RecordDecoder(), encoder=PredictionEncoder(), now_ms=lambda: 1,
                         refused={("housing.records", 0, 7): "refused by the broker"})
    [rejected] = result.rejected
    assert rejected.reason == "output_too_large"
    expected_key = f"key-sha256:{hashlib.sha256(key).hexdigest()}".encode() if digested else key
    assert rejected.key == expected_key
    headers = dict(rejected.headers)
    assert headers[topics.HEADER_MODEL_NAME] == b"m" and headers[topics.HEADER_MODEL_VERSION] == b"4"


def test_model_frame_takes_the_plan_columns_in_order_and_dtype() -> None:
    columns = {"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5], "unused": [9, 9]}
    frame = model_frame(columns, ["c", "b", "a"], ["float32", "object", "float64"])
    assert list(frame.columns) == ["c", "b", "a"]
    assert [str(t) for t in frame.dtypes] == ["float32", "object", "float64"]
    assert frame["b"].tolist() == ["x", "y"] and frame["a"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        model_frame(columns, ["a", "b"], ["float64"])  # a plan whose dtypes do not match its columns


HOUSING = load_housing().sample(300, random_state=3)
FRAME = features_frame(HOUSING)
TARGET = HOUSING["median_house_value"].to_numpy()


def _pipeline(*numeric_steps: Any) -> Pipeline:
    pre = ColumnTransformer([
        ("num", Pipeline([(f"s{i}", step) for i, step in enumerate(numeric_steps)]), list(NUMERIC_COLUMNS)),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["ocean_proximity"]),
    ])
    return Pipeline([("pre", pre), ("model", LinearRegression())]).fit(FRAME, TARGET)


@pytest.mark.parametrize("steps", [
    (SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
    (SimpleImputer(strategy="median"), SimpleImputer(strategy="median", missing_values=-1.0), StandardScaler()),
], ids=["add-indicator", "missing-is-not-nan"])
def test_imputer_settings_it_does_not_reproduce_are_refused(steps: tuple[Any, ...]) -> None:
    assert compile_predictor(_pipeline(*steps)) is None


@pytest.mark.parametrize("scaler", [StandardScaler(with_mean=False), StandardScaler(with_std=False)],
                         ids=["no-mean", "no-std"])
def test_scaler_settings_are_reproduced(scaler: StandardScaler) -> None:
    model = _pipeline(SimpleImputer(strategy="median"), scaler)
    fast = verified_predictor(model)
    assert fast is not None
    rows = FRAME.iloc[:50].copy()
    rows.loc[rows.index[0], "total_bedrooms"] = np.nan
    np.testing.assert_allclose(fast(rows), model.predict(rows), rtol=1e-12)


def test_psi_by_feature_passes_epsilon_on() -> None:
    feature = {"kind": "numeric", "edges": ["-inf", 0.0, "inf"], "proportions": [1.0, 0.0]}
    values = [1.0]  # every value in the bin training never saw: the floor decides the PSI
    assert psi_by_feature({"features": {"a": feature}}, {"a": values}, epsilon=1e-2)["a"] == pytest.approx(
        psi(feature, values, epsilon=1e-2))
    assert psi(feature, values, epsilon=1e-2) != pytest.approx(psi(feature, values))


def test_psi_of_an_unknown_kind_names_it() -> None:
    with pytest.raises(ValueError, match="'histogram'"):
        psi({"kind": "histogram", "proportions": [1.0]}, [1.0])


def test_psi_of_a_frame_column() -> None:
    feature = {"kind": "categorical", "categories": ["a", "b"], "proportions": [0.5, 0.5]}
    assert psi(feature, pd.Series(["a", "b"])) == pytest.approx(0.0, abs=1e-9)

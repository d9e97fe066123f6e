"""Compiled trees for LightGBM: a booster (a housing-train pipeline's estimator, or a bare model on its own
columns) is compiled like HistGradientBoosting and then predicts what LightGBM does, missing values included;
the boosters whose missing-value handling Treelite does not reproduce keep LightGBM's predict, and the probe
rows catch a library that agrees on the check rows but not on zeros."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

lightgbm = pytest.importorskip("lightgbm")

from consumer.core import compiled_trees  # noqa: E402
from consumer.core.features import to_columns, to_frame  # noqa: E402
from consumer.core.handle import COMPILED_TREES, LIGHTGBM_PREDICT, ModelHandle  # noqa: E402
from consumer.core.signature import InputPlan  # noqa: E402
from schemas.examples import EXAMPLE_RECORD  # noqa: E402
from schemas.features import NUMERIC_COLUMNS  # noqa: E402
from training.data import features_frame, load_housing  # noqa: E402
from training.pipeline import build_pipeline  # noqa: E402

HOUSING = load_housing().sample(600, random_state=4)
TARGET = HOUSING["median_house_value"].to_numpy()
WAIT_SECONDS = 120.0  # a bound on a small compile, not a pause: wait_compiled returns as soon as it is done
SUBSET = tuple(c for c in NUMERIC_COLUMNS if c != "median_income")
PLAN = InputPlan(SUBSET, ("float64",) * len(SUBSET), "signature")

pytestmark = pytest.mark.skipif(compiled_trees.unavailable_reason() is not None,
                                reason=f"compiled trees unavailable: {compiled_trees.unavailable_reason()}")


def rows() -> list[dict[str, object]]:
    records = features_frame(HOUSING.iloc[:300]).to_dict("records")
    return records + [{**EXAMPLE_RECORD, "total_bedrooms": None}, {**EXAMPLE_RECORD, "housing_median_age": 0.0}]


def bare_booster(**params: Any) -> Any:
    frame = to_frame(rows())[list(SUBSET)]
    return lightgbm.LGBMRegressor(n_estimators=30, n_jobs=1, verbose=-1, min_child_samples=5, **params).fit(
        frame, TARGET[:len(frame)])


def test_a_pipelines_booster_is_compiled_and_predicts_what_lightgbm_does(cache: Path) -> None:
    model = build_pipeline("lightgbm")
    model.set_params(model__n_estimators=30)
    model.fit(features_frame(HOUSING), TARGET)
    handle = ModelHandle(model=model, name="m", version="1", source="memory", flavour="lightgbm")
    assert handle.wait_compiled(WAIT_SECONDS)
    assert handle.tree_walk == COMPILED_TREES
    np.testing.assert_allclose(handle.predict(to_columns(rows())), model.predict(to_frame(rows())),
                               rtol=compiled_trees.RTOL, atol=0)


def test_a_bare_booster_on_its_own_columns_is_compiled_missing_values_included(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = compiled_trees.CompiledTrees.predict

    def counted(self: compiled_trees.CompiledTrees, features: np.ndarray) -> np.ndarray:
        calls.append(len(features))
        return real(self, features)

    monkeypatch.setattr(compiled_trees.CompiledTrees, "predict", counted)
    model = bare_booster()
    handle = ModelHandle(model=model, name="m", version="1", source="memory", flavour="lightgbm", plan=PLAN)
    assert handle.wait_compiled(WAIT_SECONDS)
    assert handle.tree_walk == COMPILED_TREES and handle.predict_path == "numpy fast path"
    frame = to_frame(rows())[list(SUBSET)]
    assert frame["total_bedrooms"].isna().any()
    checked = len(calls)  # the probe and check rows
    np.testing.assert_allclose(handle.predict(to_columns(rows())), model.predict(frame),
                               rtol=compiled_trees.RTOL, atol=0)
    assert calls[checked:] == [len(frame)]  # the compiled trees predicted the batch, not LightGBM


def test_a_zero_as_missing_booster_keeps_lightgbms_predict_and_says_why(cache: Path) -> None:
    model = bare_booster(zero_as_missing=True)
    handle = ModelHandle(model=model, name="m", version="1", source="memory", flavour="lightgbm", plan=PLAN)
    assert handle.tree_walk == f"{LIGHTGBM_PREDICT}: zero_as_missing=true is not compiled"
    assert not list(cache.iterdir())  # nothing was compiled
    frame = to_frame(rows())[list(SUBSET)]
    np.testing.assert_array_equal(handle.predict(to_columns(rows())), model.predict(frame))


def test_the_probe_rows_catch_trees_that_differ_on_zeros(cache: Path) -> None:
    # Compiled anyway (past the refusal), Treelite's zero_as_missing booster is wrong on rows with zeros, which the
    # probe rows hold in every column: the check refuses it.
    booster = bare_booster(zero_as_missing=True).booster_
    with pytest.raises(compiled_trees.CompiledTreesDisagree, match="disagree with the model on probe rows"):
        compiled_trees.compile_trees(booster)


def test_off_lightgbm_predicts_itself_and_an_unfitted_model_has_nothing_to_compile() -> None:
    model = bare_booster()
    handle = ModelHandle(model=model, name="m", version="1", source="memory", flavour="lightgbm", plan=PLAN)
    assert handle.tree_walk == LIGHTGBM_PREDICT
    assert compiled_trees.tree_estimator(lightgbm.LGBMRegressor()) is None  # not fitted: nothing to compile

"""Unit tests of training's pure parts: pipelines, data load/split, the CLI's failures and result table.

The MLflow helpers (params, metrics, skops types, the tracking-server check) are in test_tracking.py, the config
in test_results.py, the fallback files in test_fallback.py; shared fixtures in conftest.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from consumer.core.features import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
    to_frame,
)
from schemas.examples import EXAMPLE_RECORD
from training import __main__ as cli
from training.data import DataError, load_housing, sample_rows, split
from training.pipeline import MODEL_KINDS, build_pipeline, normalize_kind, parse_kinds
from training.results import ModelResult, TrainingResult


def _records() -> list[dict[str, object]]:
    base = dict(EXAMPLE_RECORD)
    return [
        base,
        {**base, "total_bedrooms": None},  # missing value the pipeline must impute
        {**base, "ocean_proximity": "ON THE MOON"},  # category never seen in training
        {**base, "total_bedrooms": None, "ocean_proximity": "INLAND", "median_income": 2.1},
    ]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_each_kind_fits_and_predicts_finite_values_from_a_to_frame_batch(kind: str, small_split: tuple) -> None:
    X_train, X_test, y_train, _ = small_split
    assert len(X_train) == 300
    pipeline = build_pipeline(kind, seed=42).fit(X_train, y_train)

    frame = to_frame(_records())
    predictions = pipeline.predict(frame)

    assert predictions.shape == (4,)
    assert np.isfinite(predictions).all()
    assert np.isfinite(pipeline.predict(X_test)).all()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_missing_total_bedrooms_is_imputed_even_when_training_had_none(kind: str, housing: pd.DataFrame) -> None:
    # The real seed-42 training split has no missing total_bedrooms: the imputer must still cover it.
    X_train, _, y_train, _ = split(housing, seed=42)
    assert X_train["total_bedrooms"].notna().all()
    complete = sample_rows(pd.concat([X_train, y_train], axis=1), 300, seed=1)
    pipeline = build_pipeline(kind).fit(complete[list(FEATURE_COLUMNS)], complete[TARGET_COLUMN])
    predictions = pipeline.predict(to_frame([{**_records()[0], "total_bedrooms": None}]))
    assert np.isfinite(predictions).all()


def test_unseen_category_is_encoded_as_all_zeros_not_an_error(small_split: tuple) -> None:
    X_train, _, y_train, _ = small_split
    pipeline = build_pipeline("linear_regression").fit(X_train, y_train)
    encoded = pipeline.named_steps["preprocess"].transform(to_frame(_records()))
    names = list(pipeline.named_steps["preprocess"].get_feature_names_out())
    onehot = [names.index(f"{CATEGORICAL_COLUMN}_{c}") for c in OCEAN_PROXIMITY_CATEGORIES]

    assert encoded[0, onehot].tolist() == [0, 0, 0, 1, 0]  # NEAR BAY
    assert encoded[2, onehot].tolist() == [0, 0, 0, 0, 0]  # unseen
    assert not np.isnan(encoded).any()  # total_bedrooms imputed


def test_one_hot_knows_all_five_categories_even_if_the_training_rows_lack_one(small_split: tuple) -> None:
    X_train, _, y_train, _ = small_split
    without_island = X_train[X_train[CATEGORICAL_COLUMN] != "ISLAND"]
    pipeline = build_pipeline("decision_tree").fit(without_island, y_train[without_island.index])
    encoder = pipeline.named_steps["preprocess"].named_transformers_["cat"]
    assert list(encoder.categories_[0]) == list(OCEAN_PROXIMITY_CATEGORIES)


def test_only_the_linear_model_is_scaled() -> None:
    for kind in MODEL_KINDS:
        numeric = build_pipeline(kind).named_steps["preprocess"].transformers[0][1]
        has_scaler = any(isinstance(step, StandardScaler) for _, step in numeric.steps)
        assert has_scaler == (kind == "linear_regression"), kind


def test_random_forest_is_kept_modest_and_single_threaded() -> None:
    forest = build_pipeline("random_forest").named_steps["model"]
    assert forest.n_estimators <= 50
    assert forest.max_depth is not None and forest.max_depth <= 16
    assert forest.n_jobs == 1


def test_same_seed_same_model_different_seed_different_model(small_split: tuple) -> None:
    X_train, X_test, y_train, _ = small_split
    a = build_pipeline("random_forest", seed=1).fit(X_train, y_train).predict(X_test)
    b = build_pipeline("random_forest", seed=1).fit(X_train, y_train).predict(X_test)
    c = build_pipeline("random_forest", seed=2).fit(X_train, y_train).predict(X_test)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("RandomForest", "random_forest"), ("rf", "random_forest"), ("hgb", "hist_gradient_boosting"),
     ("LinearRegression", "linear_regression"), ("decision-tree", "decision_tree"), ("linear", "linear_regression"),
     ("LightGBM", "lightgbm"), ("lgbm", "lightgbm"), ("LGBMRegressor", "lightgbm")],
)
def test_normalize_kind_accepts_common_spellings(name: str, kind: str) -> None:
    assert normalize_kind(name) == kind


def test_lightgbm_is_its_scikit_learn_api_after_the_shared_preprocessing_logged_as_lightgbm() -> None:
    from lightgbm import LGBMRegressor

    from training.pipeline import ESTIMATOR_STEP, FLAVOURS

    pipeline = build_pipeline("lightgbm")
    assert isinstance(pipeline.named_steps[ESTIMATOR_STEP], LGBMRegressor)
    assert pipeline.named_steps[ESTIMATOR_STEP].n_jobs == 1
    assert FLAVOURS == {**{k: "sklearn" for k in MODEL_KINDS if k != "lightgbm"}, "lightgbm": "lightgbm"}
    assert parse_kinds("lgbm,hgb") == ("hist_gradient_boosting", "lightgbm")


def test_unknown_kind_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from linear_regression"):
        build_pipeline("xgboost")


def test_parse_kinds_keeps_training_order_and_dedupes() -> None:
    assert parse_kinds(None) == MODEL_KINDS
    assert parse_kinds("") == MODEL_KINDS
    assert parse_kinds("hgb, linear,LinearRegression") == ("linear_regression", "hist_gradient_boosting")


def test_load_housing_gives_to_frame_dtypes_and_the_target(housing: pd.DataFrame) -> None:
    assert len(housing) == 20640
    assert list(housing.columns) == [*FEATURE_COLUMNS, TARGET_COLUMN]
    assert housing[CATEGORICAL_COLUMN].dtype == object
    assert all(housing[c].dtype == np.float64 for c in (*NUMERIC_COLUMNS, TARGET_COLUMN))
    assert housing["total_bedrooms"].isna().sum() == 207  # left for the pipeline to impute


def test_split_is_seeded_80_20_with_exactly_the_scoring_frame_layout(housing: pd.DataFrame) -> None:
    X_train, X_test, y_train, y_test = split(housing, seed=42)
    again = split(housing, seed=42)

    assert (len(X_train), len(X_test)) == (16512, 4128)
    assert len(y_train) == len(X_train) and len(y_test) == len(X_test)
    pd.testing.assert_frame_equal(X_test, again[1])
    expected = to_frame(_records())
    assert list(X_train.columns) == list(expected.columns)
    assert X_train.dtypes.to_dict() == expected.dtypes.to_dict()
    assert isinstance(X_test.index, pd.RangeIndex)
    assert y_test.dtype == np.float64
    assert not split(housing, seed=43)[1].equals(X_test)


def test_load_housing_names_a_missing_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("longitude,latitude\n1,2\n")
    with pytest.raises(DataError, match="lacks column"):
        load_housing(bad)
    with pytest.raises(DataError, match="cannot read"):
        load_housing(tmp_path / "absent.csv")


def test_sample_rows_is_seeded_and_bounded(housing: pd.DataFrame) -> None:
    a = sample_rows(housing, 500, seed=1)
    assert len(a) == 500
    pd.testing.assert_frame_equal(a, sample_rows(housing, 500, seed=1))
    assert sample_rows(housing, None) is housing
    assert len(sample_rows(housing, 10**6)) == len(housing)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_exits_1_with_one_line_when_mlflow_is_down(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    status = cli.main(["--tracking-uri", uri, "--output-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()

    assert status == 1
    assert err[-1] == f"housing-train: MLflow tracking server at {uri} is not reachable: start it with " \
                      "`housing-stack up` or set MLFLOW_TRACKING_URI"
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_cli_rejects_an_unknown_model_kind_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--models", "linear,xgboost"])
    assert caught.value.code == 2
    assert "unknown model kind 'xgboost'" in capsys.readouterr().err


def test_result_table_and_json_shape() -> None:
    results = (
        ModelResult("linear_regression", "r1", "models:/m-1", {"rmse": 70000.0, "mae": 50000.0, "r2": 0.62}, 0.1),
        ModelResult("hist_gradient_boosting", "r2", "models:/m-2", {"rmse": 47000.0, "mae": 31000.0, "r2": 0.83},
                    0.5),
    )
    result = TrainingResult(
        model_name="m", version="3", model_uri="models:/m/3", run_id="r2", best_kind="hist_gradient_boosting",
        metrics=dict(results[1].metrics), aliases=("challenger", "champion"), stage="Production", promoted=True,
        parent_run_id="p", experiment_id="1", tracking_uri="http://x", results=results,
        fallback_path="models/model.pkl", metadata_path="models/model.json",
        profile_path="models/reference_profile.json", trained_at="2025-01-01T00:00:00+00:00", seconds=1.0,
    )
    table = cli.format_table(result)
    lines = table.splitlines()
    assert lines[1].startswith("hist_gradient_boosting") and lines[1].endswith("*")  # best first, marked
    assert "version 3" in table and "challenger, champion" in table and "Production" in table
    assert json.loads(json.dumps(result.to_dict()))["models"]["linear_regression"]["rmse"] == 70000.0
    assert result.metrics_by_model["hist_gradient_boosting"]["r2"] == 0.83

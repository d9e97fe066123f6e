"""training.fallback: the model file a scorer falls back to is a plain pickle, with complete metadata beside it."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from consumer.core.profile import build_profile
from schemas.features import FEATURE_COLUMNS
from training.fallback import fallback_metadata, feature_schema, write_fallback
from training.pipeline import build_pipeline
from training.results import ModelResult, TrainingConfig
from training.tracking import CHALLENGER_ALIAS, STAGING, Registration


def test_fallback_files_are_a_plain_pickle_the_profile_and_the_metadata(tmp_path: Path, small_split: tuple) -> None:
    X_train, X_test, y_train, _ = small_split
    pipeline = build_pipeline("linear_regression").fit(X_train, y_train)
    config = TrainingConfig(models=("linear",), fallback_path="elsewhere/model.pkl", output_dir=str(tmp_path))
    best = ModelResult("linear_regression", "run-1", "models:/m-1", {"rmse": 1.0, "mae": 0.5, "r2": 0.9}, 0.1)
    registration = Registration("7", STAGING, (CHALLENGER_ALIAS,))
    metadata = fallback_metadata(
        config, registration, best, model_uri=f"models:/{config.model_name}/7", results=[best], features=X_test,
        parent_run_id="parent", trained_at="2025-01-01T00:00:00+00:00", sha=None, n_train=len(X_train),
    )
    profile = build_profile(X_train)

    model_path, metadata_path, profile_path = write_fallback(config, pipeline, metadata, profile)

    assert (model_path, metadata_path, profile_path) == (
        tmp_path / "model.pkl", tmp_path / "model.json", tmp_path / "reference_profile.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.pkl", "reference_profile.json"]
    with open(model_path, "rb") as handle:
        reloaded = pickle.load(handle)
    np.testing.assert_array_equal(reloaded.predict(X_test), pipeline.predict(X_test))
    assert stat.S_IMODE(model_path.stat().st_mode) == 0o644  # readable by a scorer under another user
    written = json.loads(metadata_path.read_text())
    assert written["version"] == "7" and written["stage"] == STAGING and written["aliases"] == [CHALLENGER_ALIAS]
    assert written["model_uri"] == f"models:/{config.model_name}/7"
    assert written["feature_schema"]["columns"] == list(FEATURE_COLUMNS)
    assert written["all_metrics"] == {"linear_regression": best.metrics}
    assert json.loads(profile_path.read_text()) == json.loads(json.dumps(profile))


def test_feature_schema_records_columns_in_order_with_their_dtypes() -> None:
    frame = pd.DataFrame({"b": [1.0], "a": ["x"]})
    assert feature_schema(frame) == {"columns": ["b", "a"], "dtypes": {"b": "float64", "a": frame["a"].dtype.name}}

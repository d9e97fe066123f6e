"""training.results: the training config built from the product settings, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import load_settings
from training.pipeline import MODEL_KINDS
from training.results import TrainingConfig


def test_config_from_settings_uses_training_experiment_and_output_dir() -> None:
    settings = load_settings(env={})
    config = TrainingConfig.from_settings(settings, output_dir="/tmp/out", models=("rf", "linear"), sample=None)

    assert config.experiment == "california_housing"  # not the API's california_housing_api
    assert config.model_name == settings.model.name
    assert config.tracking_uri == settings.mlflow.tracking_uri
    assert config.models == ("random_forest", "linear_regression")
    assert config.model_file == Path("/tmp/out") / Path(settings.model.fallback_path).name


def test_config_dedupes_kinds_and_rejects_none_or_zero_threads() -> None:
    assert TrainingConfig(models=("hgb", "HistGradientBoosting", "linear")).models == (
        "hist_gradient_boosting", "linear_regression")
    assert TrainingConfig().models == MODEL_KINDS
    assert TrainingConfig(fallback_path="models/model.pkl").model_file == Path("models/model.pkl")
    with pytest.raises(ValueError, match="no model kinds"):
        TrainingConfig(models=())
    with pytest.raises(ValueError, match="threads must be >= 1"):
        TrainingConfig(threads=0)

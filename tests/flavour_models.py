"""Models of other flavours for the serving-any-flavour tests (unit: saved to a folder; integration: logged and
registered): a custom pyfunc, a bare LightGBM regressor on some numeric columns, versions whose signature does
not fit the housing record, and one whose flavour's module cannot be imported.

Each ``save_*`` writes an MLflow model folder; ``register_folder`` logs such a folder as a new version of a
registered model. The PythonModel classes here are pickled by value, so the scorer needs no ``tests`` package.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow.pyfunc
import numpy as np
import pandas as pd

from schemas.features import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_COLUMNS

cloudpickle.register_pickle_by_value(sys.modules[__name__])

PIP = ["mlflow", "numpy", "pandas"]
"""Explicit requirements: without them, log_model infers them by loading the model in a subprocess (slow)."""
MISSING_MODULE = "housing_flavour_that_is_not_installed"
"""The loader module of the version whose flavour library is missing."""
SUBSET_COLUMNS = tuple(c for c in NUMERIC_COLUMNS if c != "median_income")
"""The columns of the LightGBM version that does without median_income (and ocean_proximity)."""


class AffineModel(mlflow.pyfunc.PythonModel):
    """A custom pyfunc model: a fixed linear function of the numeric columns, plus a bonus per category."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # no hints: MLflow would read them as a schema
        values = 50_000.0 * model_input["median_income"].to_numpy(dtype=float) \
            + 10.0 * np.nan_to_num(model_input["total_bedrooms"].to_numpy(dtype=float)) \
            + 1_000.0 * model_input["housing_median_age"].to_numpy(dtype=float)
        bonus = np.where(model_input[CATEGORICAL_COLUMN].to_numpy() == "INLAND", -40_000.0, 25_000.0)
        return self.scale * (values + bonus)


class TwoColumnModel(mlflow.pyfunc.PythonModel):
    """Returns a low and a high estimate per row: not one number."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # no hints: MLflow would read them as a schema
        base = 50_000.0 * model_input["median_income"].to_numpy(dtype=float)
        return pd.DataFrame({"low": base * 0.9, "high": base * 1.1})


def example_frame(rows: list[dict[str, Any]], columns: tuple[str, ...] = FEATURE_COLUMNS) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for name in columns:
        values = [row[name] for row in rows]
        data[name] = pd.Series(values, dtype=object) if name == CATEGORICAL_COLUMN \
            else np.asarray(values, dtype=np.float64)
    return pd.DataFrame(data, columns=list(columns))


def _signature(inputs: pd.DataFrame, outputs: Any) -> Any:
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return infer_signature(inputs, outputs)


def save_custom_pyfunc(path: Path, rows: list[dict[str, Any]], *, scale: float = 1.0) -> Path:
    """A custom ``mlflow.pyfunc.PythonModel`` taking the nine record columns, with signature and input example."""
    example = example_frame(rows)
    model = AffineModel(scale)
    mlflow.pyfunc.save_model(str(path), python_model=model,
                             signature=_signature(example, model.predict(None, example)),
                             input_example=example, pip_requirements=PIP)
    return path


def save_signature_variant(path: Path, variant: str) -> Path:
    """A custom pyfunc whose signature does not fit the housing record:

    - ``extra_column``: also requires ``rooms_per_household``;
    - ``numeric_category``: types ``ocean_proximity`` as a number;
    - ``two_columns``: returns two columns.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    model: Any = AffineModel()
    specs = [ColSpec("string" if c == CATEGORICAL_COLUMN else "double", c) for c in FEATURE_COLUMNS]
    outputs = Schema([ColSpec("double")])
    if variant == "extra_column":
        specs.append(ColSpec("double", "rooms_per_household"))
    elif variant == "numeric_category":
        specs = [ColSpec("double", c) for c in FEATURE_COLUMNS]
    elif variant == "two_columns":
        model = TwoColumnModel()
        outputs = Schema([ColSpec("double", "low"), ColSpec("double", "high")])
    else:
        raise ValueError(variant)
    mlflow.pyfunc.save_model(str(path), python_model=model,
                             signature=ModelSignature(Schema(specs), outputs), pip_requirements=PIP)
    return path


def save_missing_library(path: Path) -> Path:
    """A pyfunc model whose ``loader_module`` no environment has (as a flavour whose package is not installed)."""
    path.mkdir(parents=True, exist_ok=True)
    data = path.parent / f"{path.name}-data.txt"
    data.write_text("weights\n")
    mlflow.pyfunc.save_model(str(path / "model"), loader_module=MISSING_MODULE, data_path=str(data),
                             pip_requirements=[*PIP, MISSING_MODULE])
    return path / "model"


def fit_lightgbm_subset(rows: list[dict[str, Any]], targets: list[float], seed: int = 7) -> Any:
    """A bare LGBMRegressor on ``SUBSET_COLUMNS`` (no median_income, no ocean_proximity), fitted on a frame."""
    from lightgbm import LGBMRegressor

    model = LGBMRegressor(n_estimators=60, num_leaves=15, n_jobs=1, random_state=seed, verbose=-1)
    model.fit(example_frame(rows, SUBSET_COLUMNS), np.asarray(targets, dtype=np.float64))
    return model


def save_lightgbm_subset(path: Path, rows: list[dict[str, Any]], targets: list[float]) -> Path:
    """The bare LightGBM regressor, logged with ``mlflow.lightgbm`` (skops), signature of its seven columns."""
    import mlflow.lightgbm

    model = fit_lightgbm_subset(rows, targets)
    example = example_frame(rows[:5], SUBSET_COLUMNS)
    mlflow.lightgbm.save_model(model, str(path), signature=_signature(example, model.predict(example)),
                               input_example=example, pip_requirements=[*PIP, "lightgbm", "scikit-learn"],
                               serialization_format="skops",
                               skops_trusted_types=["collections.OrderedDict", "numpy.dtype"])
    return path


def register_folder(tracking_uri: str, name: str, folder: Path) -> str:
    """Log an MLflow model folder in a new run and register it as the next version of ``name``; its version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        experiment = mlflow.set_experiment("housing-flavour-tests")
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            mlflow.log_artifacts(str(folder), "model")
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name)
        source = f"{run.info.artifact_uri}/model"
        version = client.create_model_version(name, source, run_id=run.info.run_id)
    finally:  # mlflow.set_tracking_uri also sets the variable for the whole process
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return str(version.version)

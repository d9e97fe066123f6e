"""Loading by flavour from a model folder (no server): which path serves, what is refused and why, and that
every path predicts what ``mlflow.pyfunc.load_model(...).predict`` does on the same rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from consumer.core.features import to_columns, to_frame
from consumer.core.handle import PYFUNC
from consumer.errors import FlavourLibraryMissing, SignatureRefused
from consumer.models.loader import ResolvedVersion, check_model, load_local_model
from schemas.features import FEATURE_COLUMNS
from tests.flavour_models import (
    MISSING_MODULE,
    SUBSET_COLUMNS,
    save_custom_pyfunc,
    save_lightgbm_subset,
    save_missing_library,
    save_signature_variant,
)
from tests.helpers import housing_rows
from training import data as training_data
from training.pipeline import build_pipeline
from training.tracking import SKOPS_TRUSTED_TYPES

RESOLVED = ResolvedVersion("m", "4", "champion", None, None, None)
ROWS = housing_rows(400)


def _targets(rows: list[dict[str, Any]]) -> list[float]:
    return [50_000.0 * r["median_income"] + 3.0 * r["total_rooms"] for r in rows]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import mlflow.lightgbm
    import mlflow.sklearn
    from mlflow.models import infer_signature

    root = tmp_path_factory.mktemp("flavours")
    frame = training_data.sample_rows(training_data.load_housing(), 1500, 1)
    X, y = frame[list(FEATURE_COLUMNS)], frame[training_data.TARGET_COLUMN]
    out: dict[str, Path] = {}
    for kind, save in (("linear_regression", mlflow.sklearn.save_model), ("lightgbm", mlflow.lightgbm.save_model)):
        pipeline = build_pipeline(kind).fit(X, y)
        example = X.head(5)
        save(pipeline, str(root / kind), signature=infer_signature(example, pipeline.predict(example)),
             input_example=example, pip_requirements=["mlflow"], serialization_format="skops",
             skops_trusted_types=list(SKOPS_TRUSTED_TYPES))
        out[kind] = root / kind
    out["custom"] = save_custom_pyfunc(root / "custom", ROWS[:5])
    out["subset"] = save_lightgbm_subset(root / "subset", ROWS, _targets(ROWS))
    for variant in ("extra_column", "numeric_category", "two_columns"):
        out[variant] = save_signature_variant(root / variant, variant)
    out["missing"] = save_missing_library(root / "missing")
    return out


def _reference(folder: Path, frame: pd.DataFrame) -> np.ndarray:
    import mlflow.pyfunc

    output = mlflow.pyfunc.load_model(str(folder)).predict(frame)
    return np.asarray(output, dtype=np.float64).reshape(-1)


@pytest.mark.parametrize(("folder", "flavour", "path"), [
    ("linear_regression", "sklearn", "numpy fast path"),
    ("lightgbm", "lightgbm", "numpy fast path"),
    ("subset", "lightgbm", "numpy fast path"),
    ("custom", PYFUNC, "dataframe"),
])
def test_each_flavour_serves_what_pyfunc_predicts(folders: dict[str, Path], folder: str, flavour: str,
                                                   path: str) -> None:
    handle = load_local_model(str(folders[folder]), RESOLVED)
    check_model(handle)
    assert (handle.flavour, handle.predict_path) == (flavour, path)
    assert handle.signature is not None and handle.describe()["flavour"] == flavour
    rows = housing_rows(257, start=1000)
    got = handle.predict(to_columns(rows))
    frame = to_frame(rows)[list(handle.plan.columns)]
    np.testing.assert_allclose(got, _reference(folders[folder], frame), rtol=1e-12)


def test_a_model_without_median_income_is_given_only_its_columns(folders: dict[str, Path]) -> None:
    handle = load_local_model(str(folders["subset"]), RESOLVED)
    assert handle.plan.columns == SUBSET_COLUMNS


@pytest.mark.parametrize(("folder", "named"), [
    ("extra_column", "rooms_per_household"),
    ("numeric_category", "'ocean_proximity' is typed double"),
    ("two_columns", "2 columns (low, high)"),
])
def test_a_signature_that_does_not_fit_is_refused_naming_it(folders: dict[str, Path], folder: str,
                                                             named: str) -> None:
    with pytest.raises(SignatureRefused) as caught:
        load_local_model(str(folders[folder]), RESOLVED)
    assert caught.value.reason == "signature_mismatch"
    assert named in str(caught.value)


def test_a_loader_module_that_cannot_be_imported_is_refused_naming_the_package(folders: dict[str, Path]) -> None:
    with pytest.raises(FlavourLibraryMissing) as caught:
        load_local_model(str(folders["missing"]), RESOLVED)
    assert caught.value.reason == "flavour_library_missing"
    assert caught.value.package == MISSING_MODULE
    assert f"pip install {MISSING_MODULE}" in str(caught.value)


def test_a_flavour_whose_package_is_missing_is_refused_naming_it(folders: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def no_lightgbm(name: str, *args: Any) -> Any:
        return None if name.split(".")[0] == "lightgbm" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_lightgbm)
    with pytest.raises(FlavourLibraryMissing) as caught:
        load_local_model(str(folders["lightgbm"]), RESOLVED)
    assert caught.value.package == "lightgbm" and "pip install lightgbm" in str(caught.value)


def test_a_model_without_an_output_signature_returning_two_values_fails_its_check(folders: dict[str, Path]) -> None:
    import dataclasses

    from consumer.core.signature import Signature

    handle = load_local_model(str(folders["custom"]), RESOLVED)

    class TwoPerRow:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return np.ones((len(frame), 2))

    unsigned = dataclasses.replace(handle, model=TwoPerRow(), signature=Signature(handle.signature.inputs, None)
                                   if handle.signature else None)
    with pytest.raises(SignatureRefused) as caught:
        check_model(unsigned)
    assert "one number per row" in str(caught.value)

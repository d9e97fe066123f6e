"""housing-train against a real MLflow server: runs, artifacts, registry aliases/stages, fallback file.

Each test module run uses its own registered model name, so versions are predictable whatever else
the session's server holds. Training uses ``--sample`` and a subset of models to stay fast.
"""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from consumer.core.features import FEATURE_COLUMNS, to_frame
from consumer.core.profile import psi
from training import __main__ as cli
from training.data import load_housing
from training.register import train_and_register
from training.results import TrainingConfig, TrainingResult

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data" / "housing.csv"
EXPERIMENT = "california_housing_integration_tests"


@pytest.fixture(scope="module")
def model_name() -> str:
    return f"housing_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _allow_model_loading(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # MLflow gates every model deserialization (skops included) on this flag; it defaults to true,
    # but an environment that turned it off must not fail these tests.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def first_run(mlflow_tracking_uri: str, model_name: str, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, Any], Path]:
    """housing-train through its CLI, not promoted: two models on a 2,000-row sample."""
    out = tmp_path_factory.mktemp("train-first")
    capture = tmp_path_factory.mktemp("stdout") / "result.json"
    import contextlib

    with capture.open("w") as handle, contextlib.redirect_stdout(handle):
        status = cli.main([
            "--tracking-uri", mlflow_tracking_uri, "--experiment", EXPERIMENT, "--model-name", model_name,
            "--data", str(DATA), "--sample", "2000", "--models", "linear,hgb", "--output-dir", str(out),
            "--no-progress", "--json",
        ])
    assert status == 0
    result = json.loads(capture.read_text())
    # The registry as this run left it, read now: the module's later promotions move its aliases on, and
    # pytest-randomly may run them before the test that checks this run.
    client = _client(mlflow_tracking_uri)
    version = client.get_model_version(model_name, "1")
    registered = client.get_registered_model(model_name).aliases
    aliases = {alias: registered.get(alias) for alias in ("challenger", "champion")}
    result["registry_after_run"] = {"stage": version.current_stage, "aliases": list(version.aliases),
                                    "alias_versions": aliases}
    return result, out


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_cli_registers_the_best_model_as_challenger_in_staging(
    first_run: tuple[dict[str, Any], Path], mlflow_tracking_uri: str, model_name: str
) -> None:
    result, _ = first_run
    client = _client(mlflow_tracking_uri)

    assert result["version"] == "1"
    assert set(result["models"]) == {"linear_regression", "hist_gradient_boosting"}
    best = min(result["models"], key=lambda k: result["models"][k]["rmse"])
    assert result["best_kind"] == best
    assert result["promoted"] is False

    registry = result["registry_after_run"]
    assert (registry["stage"], registry["aliases"]) == ("Staging", ["challenger"])
    assert registry["alias_versions"] == {"challenger": "1", "champion": None}
    version = client.get_model_version(model_name, "1")
    assert version.run_id == result["run_id"] == result["models"][best]["run_id"]
    assert version.tags["model_kind"] == best
    assert float(version.tags["rmse"]) == pytest.approx(result["metrics"]["rmse"], rel=1e-6)
    assert version.tags["trained_at"] == result["trained_at"]
    assert "git_sha" in version.tags
    assert best in (version.description or "")


def test_every_model_run_has_metrics_params_plots_and_the_profile(
    first_run: tuple[dict[str, Any], Path], mlflow_tracking_uri: str
) -> None:
    import mlflow

    result, out = first_run
    client = _client(mlflow_tracking_uri)
    for kind, summary in result["models"].items():
        run = client.get_run(summary["run_id"])
        for metric in ("rmse", "mae", "r2"):
            assert run.data.metrics[metric] == pytest.approx(summary[metric]), (kind, metric)
        assert run.data.params["model_kind"] == kind
        assert run.data.params["n_train"] == "1600"
        assert run.data.tags["mlflow.parentRunId"] == result["parent_run_id"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert artifacts == {"plots/predicted_vs_actual.png", "plots/residuals.png"}
        assert "reference_profile.json" in {a.path for a in client.list_artifacts(run.info.run_id)}

    parent = {a.path for a in client.list_artifacts(result["parent_run_id"], "plots")}
    assert parent == {"plots/model_comparison.png"}

    # The scorer's route to the profile: the registered version's run id.
    mlflow.set_tracking_uri(mlflow_tracking_uri)
    logged = mlflow.artifacts.load_dict(f"runs:/{result['run_id']}/reference_profile.json")
    local = json.loads((out / "reference_profile.json").read_text())
    assert logged == local
    assert psi(logged["features"]["median_income"], load_housing(DATA)["median_income"]) < 0.05


def test_registered_model_has_signature_and_input_example(
    first_run: tuple[dict[str, Any], Path], mlflow_tracking_uri: str, model_name: str
) -> None:
    import mlflow

    mlflow.set_tracking_uri(mlflow_tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{model_name}/1")
    assert info.signature is not None
    assert info.signature.inputs.input_names() == list(FEATURE_COLUMNS)
    assert info.saved_input_example_info is not None
    model = mlflow.sklearn.load_model(f"models:/{model_name}@challenger")
    assert np.isfinite(model.predict(to_frame([_record()]))).all()


def _record(**changes: Any) -> dict[str, Any]:
    base = {
        "longitude": -118.25, "latitude": 34.05, "housing_median_age": 30.0, "total_rooms": 2000.0,
        "total_bedrooms": 400.0, "population": 1000.0, "households": 380.0, "median_income": 4.2,
        "ocean_proximity": "<1H OCEAN",
    }
    return {**base, **changes}


@pytest.fixture(scope="module")
def promoted(first_run: tuple[dict[str, Any], Path], mlflow_tracking_uri: str, model_name: str,
             tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    """train_and_register called as a library, with promote=True (version 2)."""
    out = tmp_path_factory.mktemp("train-promoted")
    with threadpool_limits(limits=1):
        return train_and_register(TrainingConfig(
            tracking_uri=mlflow_tracking_uri, experiment=EXPERIMENT, model_name=model_name,
            data_path=str(DATA), models=("tree",), promote=True, output_dir=str(out),
            sample=2000, seed=42, progress=False,
        ))


def test_promote_makes_the_new_version_champion_in_production(
    promoted: TrainingResult, mlflow_tracking_uri: str, model_name: str
) -> None:
    client = _client(mlflow_tracking_uri)
    assert (promoted.version, promoted.promoted) == ("2", True)
    assert promoted.model_uri == f"models:/{model_name}/2"
    assert promoted.aliases == ("challenger", "champion")

    version = client.get_model_version(model_name, "2")
    assert version.current_stage == "Production"
    assert sorted(version.aliases) == ["challenger", "champion"]
    assert client.get_model_version_by_alias(model_name, "champion").version == "2"
    assert client.get_model_version(model_name, "1").aliases == []  # challenger moved on
    for metric in ("rmse", "mae", "r2"):
        assert client.get_run(version.run_id).data.metrics[metric] == pytest.approx(promoted.metrics[metric])


def test_fallback_file_predicts_exactly_what_the_champion_predicts(
    promoted: TrainingResult, mlflow_tracking_uri: str, model_name: str
) -> None:
    import mlflow

    metadata = json.loads(Path(promoted.metadata_path).read_text())
    assert metadata["name"] == model_name
    assert metadata["version"] == "2"
    assert metadata["run_id"] == promoted.run_id
    assert metadata["model_kind"] == promoted.best_kind
    assert metadata["metrics"] == pytest.approx(promoted.metrics)
    assert metadata["trained_at"].endswith("+00:00")
    assert metadata["feature_schema"]["columns"] == list(FEATURE_COLUMNS)
    assert metadata["feature_schema"]["dtypes"]["ocean_proximity"] == "object"
    assert metadata["sklearn_version"]
    assert Path(promoted.profile_path).exists()

    with open(promoted.fallback_path, "rb") as handle:
        fallback = pickle.load(handle)
    mlflow.set_tracking_uri(mlflow_tracking_uri)
    champion = mlflow.sklearn.load_model(f"models:/{model_name}@champion")

    rows = load_housing(DATA).head(200)
    records = [dict(zip(FEATURE_COLUMNS, r, strict=True)) for r in rows[list(FEATURE_COLUMNS)].itertuples(index=False)]
    records += [_record(total_bedrooms=None), _record(ocean_proximity="ON THE MOON")]
    frame = to_frame(records)
    expected = champion.predict(frame)
    np.testing.assert_allclose(fallback.predict(frame), expected, rtol=1e-9)
    assert np.isfinite(expected).all()


def test_promoting_again_archives_the_previous_production_version(
    mlflow_tracking_uri: str, model_name: str, tmp_path: Path
) -> None:
    # A model of its own: archiving the module's promoted version would break the tests that read it (in any
    # order pytest-randomly runs them).
    name = f"{model_name}_again"

    def promote(run: str) -> TrainingResult:
        return train_and_register(TrainingConfig(
            tracking_uri=mlflow_tracking_uri, experiment=EXPERIMENT, model_name=name, data_path=str(DATA),
            models=("linear",), promote=True, output_dir=str(tmp_path / run), sample=1000, progress=False,
        ))

    first, second = promote("first"), promote("second")
    client = _client(mlflow_tracking_uri)
    assert (first.version, first.archived_versions) == ("1", ())
    assert (second.version, second.archived_versions) == ("2", ("1",))
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert client.get_model_version(name, "2").current_stage == "Production"
    assert client.get_model_version_by_alias(name, "champion").version == "2"

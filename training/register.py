"""Training orchestration and all of training's MLflow I/O: runs, artifacts, registry, fallback files.

``train_and_register(config)`` is the one entry point (the CLI, the demo and the tests call it):

1. checks the tracking server answers (``GET <uri>/health``) before any work;
2. loads and splits the data, builds the reference feature profile;
3. one parent run in the training experiment, one nested run per model kind with params, test
   metrics (rmse, mae, r2), the model (signature + input example), predicted-vs-actual and
   residual plots, and ``reference_profile.json``; the parent run gets the comparison chart;
4. registers the best model by RMSE as a new version of the registered model with alias
   ``challenger`` and stage ``Staging`` (and, with ``promote``, alias ``champion`` and stage
   ``Production``, archiving the previous Production version);
5. writes the fallback files: ``model.pkl`` (a plain pickle of the best Pipeline, readable by
   ``pickle.load`` and ``joblib.load``), ``model.json`` (metadata) and ``reference_profile.json``.

The returned ``TrainingResult`` carries what a caller needs to act on the outcome (``promoted``,
``version``, ``model_uri``): the hook for announcing promotions on the model-updates topic.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from tqdm import tqdm

from config.mlflow import has_server, tracking_server_problem
from config.runtime import limit_thread_pools
from consumer.core.profile import build_profile
from schemas.features import FEATURE_COLUMNS, TARGET_COLUMN
from training import data as training_data
from training import plots
from training.pipeline import ESTIMATOR_STEP, MODEL_KINDS, build_pipeline, normalize_kind

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from config.settings import Settings

logger = logging.getLogger(__name__)

CHALLENGER_ALIAS = "challenger"
CHAMPION_ALIAS = "champion"
STAGING = "Staging"
PRODUCTION = "Production"
PROFILE_ARTIFACT = "reference_profile.json"
MODEL_ARTIFACT = "model"
COMPARISON_ARTIFACT = "plots/model_comparison.png"
PREDICTED_VS_ACTUAL_ARTIFACT = "plots/predicted_vs_actual.png"
RESIDUALS_ARTIFACT = "plots/residuals.png"
INPUT_EXAMPLE_ROWS = 5
UNREACHABLE_HINT = "start it with `housing-stack up` or set MLFLOW_TRACKING_URI"


class TrainingError(RuntimeError):
    """Training could not complete; the message is meant for the operator, one line."""


class TrackingServerUnreachable(TrainingError):
    """The MLflow tracking server did not answer its health check."""

    def __init__(self, uri: str, detail: str = "") -> None:
        self.uri = uri
        self.detail = detail
        super().__init__(f"MLflow tracking server at {uri} is not reachable: {UNREACHABLE_HINT}")


@dataclass(frozen=True)
class TrainingConfig:
    """What one training run does; ``from_settings`` builds it from the product settings."""

    tracking_uri: str = "http://127.0.0.1:5000"
    experiment: str = "california_housing"
    """Training experiment (not the API's prediction-logging ``california_housing_api``)."""
    model_name: str = "california_housing_best_model"
    data_path: str = training_data.DEFAULT_DATA_PATH
    models: tuple[str, ...] = MODEL_KINDS
    """Model kinds to train (a subset of MODEL_KINDS)."""
    promote: bool = False
    """Also give the new version alias ``champion`` and stage ``Production``."""
    fallback_path: str = "models/model.pkl"
    output_dir: str | None = None
    """Directory for the fallback files; overrides the directory of ``fallback_path``."""
    sample: int | None = None
    """Train on a seeded sample of this many rows (fast runs and tests)."""
    seed: int = 42
    threads: int = 1
    """OpenMP/BLAS threads while fitting (threadpoolctl); 1 is fastest when anything else runs."""
    progress: bool = True
    """Show a tqdm progress bar on stderr."""
    health_timeout: float = 5.0
    """Seconds to wait for the tracking server's health check."""

    def __post_init__(self) -> None:
        kinds = tuple(normalize_kind(k) for k in self.models)
        if not kinds:
            raise ValueError("no model kinds to train")
        object.__setattr__(self, "models", tuple(dict.fromkeys(kinds)))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainingConfig:
        """Config from the product settings (tracking URI, model name, fallback path, experiment).

        :param settings: from ``config.settings.load_settings()``.
        :param overrides: any TrainingConfig field; None values are ignored.
        """
        base = cls(
            tracking_uri=settings.mlflow.tracking_uri,
            experiment=settings.experiment.training_name,
            model_name=settings.model.name,
            fallback_path=settings.model.fallback_path,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def model_file(self) -> Path:
        """Where the fallback pickle goes."""
        path = Path(self.fallback_path)
        return Path(self.output_dir) / path.name if self.output_dir else path


class ModelResult(NamedTuple):
    """One trained model kind: its nested run and its test metrics."""

    kind: str
    run_id: str
    """The nested run holding params, metrics, plots, profile and the model."""
    model_uri: str
    """The logged model, ``models:/m-<model id>`` (MLflow 3 keeps models outside the run's artifacts)."""
    metrics: dict[str, float]
    """``rmse``, ``mae``, ``r2`` on the held-out split."""
    fit_seconds: float


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of ``train_and_register``: what was registered, where, and how every model did."""

    model_name: str
    version: str
    """The registered version, as a string ("3")."""
    model_uri: str
    """``models:/<name>/<version>``: pins exactly this version (aliases move)."""
    run_id: str
    """Run of the registered version (where ``reference_profile.json`` and the model live)."""
    best_kind: str
    metrics: dict[str, float]
    """Metrics of the registered model."""
    aliases: tuple[str, ...]
    """Aliases set on the version by this run (``challenger``, and ``champion`` if promoted)."""
    stage: str
    promoted: bool
    """True when ``champion``/``Production`` now point at this version: the cue to announce it."""
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    results: tuple[ModelResult, ...]
    fallback_path: str
    metadata_path: str
    profile_path: str
    trained_at: str
    """ISO 8601 UTC."""
    seconds: float
    """Wall time of the whole call."""
    n_train: int = 0
    n_test: int = 0
    archived_versions: tuple[str, ...] = field(default=())
    """Versions moved out of Production by the promotion."""

    @property
    def metrics_by_model(self) -> dict[str, dict[str, float]]:
        """Model kind -> its test metrics."""
        return {r.kind: dict(r.metrics) for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for logs, the demo, an announcement)."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
            "best_kind": self.best_kind,
            "metrics": self.metrics,
            "aliases": list(self.aliases),
            "stage": self.stage,
            "promoted": self.promoted,
            "parent_run_id": self.parent_run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": self.tracking_uri,
            "models": {
                r.kind: {"run_id": r.run_id, "fit_seconds": round(r.fit_seconds, 3), **r.metrics}
                for r in self.results
            },
            "fallback_path": self.fallback_path,
            "metadata_path": self.metadata_path,
            "profile_path": self.profile_path,
            "trained_at": self.trained_at,
            "seconds": round(self.seconds, 3),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "archived_versions": list(self.archived_versions),
        }


# --- small helpers -----------------------------------------------------------------------------


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with the operator's one-line message, when the tracking server does not answer.

    Only http(s) URIs are checked (``GET <uri>/health``); file and database URIs have no server.

    :raises TrackingServerUnreachable: no answer, or not 200, within ``timeout`` seconds.
    """
    if not has_server(uri):
        return
    problem = tracking_server_problem(uri, timeout)
    if problem is not None:
        raise TrackingServerUnreachable(uri, problem)


def regression_metrics(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
                       ) -> dict[str, float]:
    """``rmse``, ``mae`` and ``r2`` of predictions (plain floats)."""
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def flat_params(pipeline: Pipeline) -> dict[str, str]:
    """The pipeline's ``get_params(deep=True)`` as flat string params, objects left out.

    Keys keep sklearn's ``step__param`` paths (``model__n_estimators``); nested estimators and step
    lists are dropped because their own params already appear, flattened, under their path.
    """
    out: dict[str, str] = {}
    for key, value in sorted(pipeline.get_params(deep=True).items()):
        if value is None or isinstance(value, str | bool | int | float | np.generic):
            out[key] = str(value)
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | bool | int | float) or v is None for v in value
        ):
            out[key] = str(list(value))
        elif isinstance(value, list | tuple) and all(
            isinstance(v, list | tuple) and all(isinstance(i, str) for i in v) for v in value
        ):
            out[key] = str([list(v) for v in value])  # e.g. the one-hot categories
    return {k: v[:500] for k, v in out.items()}  # MLflow caps param values; ours are short


def git_sha(cwd: Path | None = None) -> str | None:
    """The commit the code was trained from, if it is a git checkout and git is available."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None


def _pip_requirements() -> list[str]:
    # Pinned explicitly: mlflow's inference loads the model in a subprocess per log_model (seconds each).
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in ("scikit-learn", "numpy", "pandas", "scipy", "skops"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


# Types skops will not load unless trusted: numpy/sklearn internals of our four kinds, no code.
# An allow-list, so listing a type a model does not use is harmless; a new estimator needing another
# type fails at log_model with MLflow's "untrusted types" error naming it: review it, then add it here.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    # A scorer may read the fallback at any time: it must see the old file or the new one, never half.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a scorer under another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, document: Mapping[str, Any]) -> None:
    _atomic_write_bytes(path, (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())


@contextmanager
def _quiet_stage_deprecation() -> Iterator[None]:
    # Stages are deprecated in MLflow 3 but still work, and the original API reads them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def feature_schema(frame: pd.DataFrame) -> dict[str, Any]:
    """Columns and dtypes of the feature frame the model takes (recorded in model.json)."""
    return {"columns": list(frame.columns), "dtypes": {c: str(frame[c].dtype) for c in frame.columns}}


# --- the run -----------------------------------------------------------------------------------


def _train_one(
    kind: str,
    *,
    config: TrainingConfig,
    X_train: pd.DataFrame,
    X_test: pd.DataFrame,
    y_train: pd.Series,
    y_test: pd.Series,
    profile: Mapping[str, Any],
    common_params: Mapping[str, str],
) -> tuple[ModelResult, Pipeline]:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    pipeline = build_pipeline(kind, seed=config.seed)
    with mlflow.start_run(run_name=kind, nested=True) as run:
        run_id = run.info.run_id
        mlflow.set_tags({"model_kind": kind, "role": "candidate"})
        params = {**common_params, "model_kind": kind,
                  "estimator": type(pipeline.named_steps[ESTIMATOR_STEP]).__name__, **flat_params(pipeline)}
        mlflow.log_params(params)

        started = time.perf_counter()
        pipeline.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - started
        predictions = pipeline.predict(X_test)
        metrics = regression_metrics(y_test, predictions)
        logger.info("%s: rmse=%.0f mae=%.0f r2=%.4f (fit %.1fs)", kind, metrics["rmse"], metrics["mae"],
                    metrics["r2"], fit_seconds)

        mlflow.log_metric("fit_seconds", fit_seconds)
        mlflow.log_figure(plots.predicted_vs_actual(y_test, predictions, kind), PREDICTED_VS_ACTUAL_ARTIFACT)
        mlflow.log_figure(plots.residuals_plot(y_test, predictions, kind), RESIDUALS_ARTIFACT)
        mlflow.log_dict(dict(profile), PROFILE_ARTIFACT)

        example = X_test.head(INPUT_EXAMPLE_ROWS)
        signature = infer_signature(example, pipeline.predict(example))
        model_info = mlflow.sklearn.log_model(
            sk_model=pipeline,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
        )
        # Logged on the run and linked to the logged model, so the UI shows them on both pages.
        mlflow.log_metrics(metrics, model_id=model_info.model_id)
    return ModelResult(kind, run_id, model_info.model_uri, metrics, fit_seconds), pipeline


def _register(
    config: TrainingConfig, best: ModelResult, *, trained_at: str, sha: str | None,
    n_train: int, n_test: int,
) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """Register ``best``; returns (version, stage, aliases set, archived versions)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri)
    tags = {
        "model_kind": best.kind,
        "rmse": f"{best.metrics['rmse']:.4f}",
        "mae": f"{best.metrics['mae']:.4f}",
        "r2": f"{best.metrics['r2']:.6f}",
        "trained_at": trained_at,
        "sklearn_version": sklearn.__version__,
        "n_train": str(n_train),
        "seed": str(config.seed),
    }
    if sha:
        tags["git_sha"] = sha
    if config.sample:
        tags["sample"] = str(config.sample)
    mv = mlflow.register_model(best.model_uri, config.model_name, tags=tags)
    version = str(mv.version)
    client.update_model_version(
        config.model_name, version,
        description=(
            f"{best.kind} trained {trained_at} on {n_train} rows (seed {config.seed}); held-out "
            f"({n_test} rows) RMSE {best.metrics['rmse']:,.0f}, MAE {best.metrics['mae']:,.0f}, "
            f"R2 {best.metrics['r2']:.4f}. Best of: {', '.join(config.models)}."
        ),
    )
    try:
        registered = client.get_registered_model(config.model_name)
        if not registered.description:
            client.update_registered_model(
                config.model_name,
                description="California housing median_house_value regressor (sklearn Pipeline taking the "
                            "9 raw features); the best model of each housing-train run.",
            )
    except Exception:  # the description is cosmetic: never fail a registration over it
        logger.debug("could not set the registered model description", exc_info=True)

    aliases = [CHALLENGER_ALIAS]
    client.set_registered_model_alias(config.model_name, CHALLENGER_ALIAS, version)
    stage = STAGING
    archived: list[str] = []
    with _quiet_stage_deprecation():
        client.transition_model_version_stage(config.model_name, version, STAGING)
        if config.promote:
            previous = [
                str(v.version) for v in client.get_latest_versions(config.model_name, stages=[PRODUCTION])
                if str(v.version) != version
            ]
            client.transition_model_version_stage(config.model_name, version, PRODUCTION,
                                                  archive_existing_versions=True)
            stage = PRODUCTION
            archived = previous
    if config.promote:
        client.set_registered_model_alias(config.model_name, CHAMPION_ALIAS, version)
        aliases.append(CHAMPION_ALIAS)
    logger.info("registered %s version %s (%s) with alias(es) %s, stage %s", config.model_name, version,
                best.kind, ", ".join(aliases), stage)
    return version, stage, tuple(aliases), tuple(archived)


def _write_fallback(
    config: TrainingConfig, pipeline: Pipeline, metadata: Mapping[str, Any], profile: Mapping[str, Any]
) -> tuple[Path, Path, Path]:
    model_path = config.model_file
    metadata_path = model_path.with_suffix(".json")
    profile_path = model_path.parent / PROFILE_ARTIFACT
    # A plain pickle (not joblib's format) so both pickle.load and joblib.load read it.
    _atomic_write_bytes(model_path, pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL))
    _atomic_write_json(profile_path, profile)
    _atomic_write_json(metadata_path, metadata)  # last: its presence means the set is complete
    return model_path, metadata_path, profile_path


def train_and_register(config: TrainingConfig) -> TrainingResult:
    """Train every kind in ``config.models``, log them, register the best, write the fallback.

    :param config: what to train and where to log it (``TrainingConfig.from_settings(...)``).
    :returns: the registered version and every model's run and metrics.
    :raises TrackingServerUnreachable: before any work, if the tracking server does not answer.
    :raises training.data.DataError: if the data cannot be read.
    """
    import mlflow

    started = time.perf_counter()
    check_tracking_server(config.tracking_uri, timeout=config.health_timeout)
    logger.info("tracking server %s is up", config.tracking_uri)

    df = training_data.sample_rows(training_data.load_housing(config.data_path), config.sample, config.seed)
    X_train, X_test, y_train, y_test = training_data.split(df, seed=config.seed)
    logger.info("split %d rows: %d train, %d test (seed %d)", len(df), len(X_train), len(X_test), config.seed)
    profile = build_profile(X_train)
    sha = git_sha()

    mlflow.set_tracking_uri(config.tracking_uri)
    experiment = mlflow.set_experiment(config.experiment)
    common_params = {
        "seed": str(config.seed),
        "test_size": str(training_data.TEST_SIZE),
        "n_train": str(len(X_train)),
        "n_test": str(len(X_test)),
        "sample": str(config.sample),
        "data_path": str(config.data_path),
        "threads": str(config.threads),
    }
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    results: list[ModelResult] = []
    fitted: dict[str, Pipeline] = {}
    with mlflow.start_run(run_name=f"housing-train {trained_at}") as parent:
        parent_run_id = parent.info.run_id
        tags = {"role": "comparison", "models": ",".join(config.models), "trained_at": trained_at}
        if sha:
            tags["git_sha"] = sha
        mlflow.set_tags(tags)
        mlflow.log_params({**common_params, "models": ",".join(config.models)})
        mlflow.log_dict(profile, PROFILE_ARTIFACT)

        # Thread pools limited for the whole fit/predict phase (see TrainingConfig.threads).
        with limit_thread_pools(config.threads):
            bar = tqdm(config.models, desc="training", unit="model", file=sys.stderr,
                       disable=not config.progress, leave=False)
            for kind in bar:
                bar.set_postfix_str(kind)
                result, pipeline = _train_one(
                    kind, config=config, X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test,
                    profile=profile, common_params=common_params,
                )
                results.append(result)
                fitted[kind] = pipeline
            bar.close()

        best = min(results, key=lambda r: r.metrics["rmse"])
        metrics_by_kind = {r.kind: r.metrics for r in results}
        mlflow.log_figure(plots.comparison_chart(metrics_by_kind, best=best.kind), COMPARISON_ARTIFACT)
        mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.items()})
        for r in results:
            mlflow.log_metrics({f"{r.kind}_{k}": v for k, v in r.metrics.items()})
        mlflow.set_tags({"best_model_kind": best.kind, "best_run_id": best.run_id})

        version, stage, aliases, archived = _register(
            config, best, trained_at=trained_at, sha=sha, n_train=len(X_train), n_test=len(X_test)
        )
        mlflow.set_tags({"registered_model": config.model_name, "registered_version": version})

    model_uri = f"models:/{config.model_name}/{version}"
    metadata = {
        "name": config.model_name,
        "version": version,
        "run_id": best.run_id,
        "model_uri": model_uri,
        "model_kind": best.kind,
        "metrics": best.metrics,
        "trained_at": trained_at,
        "aliases": list(aliases),
        "stage": stage,
        "feature_schema": feature_schema(X_test),
        "target": TARGET_COLUMN,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "tracking_uri": config.tracking_uri,
        "experiment": config.experiment,
        "parent_run_id": parent_run_id,
        "seed": config.seed,
        "n_train": len(X_train),
        "sample": config.sample,
        "git_sha": sha,
        "all_metrics": {r.kind: r.metrics for r in results},
    }
    assert list(X_test.columns) == list(FEATURE_COLUMNS)  # the contract the scorer relies on
    model_path, metadata_path, profile_path = _write_fallback(config, fitted[best.kind], metadata, profile)
    logger.info("fallback model written to %s", model_path)

    return TrainingResult(
        model_name=config.model_name,
        version=version,
        model_uri=model_uri,
        run_id=best.run_id,
        best_kind=best.kind,
        metrics=dict(best.metrics),
        aliases=aliases,
        stage=stage,
        promoted=config.promote,
        parent_run_id=parent_run_id,
        experiment_id=experiment.experiment_id,
        tracking_uri=config.tracking_uri,
        results=tuple(results),
        fallback_path=str(model_path),
        metadata_path=str(metadata_path),
        profile_path=str(profile_path),
        trained_at=trained_at,
        seconds=time.perf_counter() - started,
        n_train=len(X_train),
        n_test=len(X_test),
        archived_versions=archived,
    )

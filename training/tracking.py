"""Training's MLflow side: the runs it logs and the registry versions it creates and promotes.

- ``check_tracking_server``: fail fast, before any work, when the tracking server does not answer;
- ``start_experiment`` / ``parent_run``: one parent run in the training experiment (params, tags, the
  reference profile), ``log_comparison`` adds the comparison chart and every model's metrics to it;
- ``train_candidate``: one nested run per model kind: params, fit, test metrics (rmse, mae, r2), the
  model (signature + input example, skops) logged with its kind's flavour (``mlflow.lightgbm`` for LightGBM,
  ``mlflow.sklearn`` otherwise), predicted-vs-actual and residual plots, ``reference_profile.json``;
- ``register_version``: the best model as a new version with alias ``challenger`` and stage ``Staging``;
  ``promote_version``: alias ``champion`` and stage ``Production``, archiving the previous Production version.

mlflow is imported inside the functions that use it, on purpose: importing it takes seconds, and the CLI's
``--help``, its failure paths (tracking server down, bad flags) and the unit tests never need it.
"""

from __future__ import annotations

import logging
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from config.mlflow import has_server, tracking_server_problem
from training import plots
from training.pipeline import ESTIMATOR_STEP, FLAVOURS, build_pipeline
from training.results import ModelResult, TrackingServerUnreachable, TrainingConfig

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from sklearn.pipeline import Pipeline

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

# Types skops will not load unless trusted: numpy/sklearn/LightGBM internals of our kinds, no code.
# An allow-list, so listing a type a model does not use is harmless; a new estimator needing another
# type fails at log_model with MLflow's "untrusted types" error naming it: review it, then add it here.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


class Registration(NamedTuple):
    """Where a registered version stands after this run: its stage and the aliases this run set on it."""

    version: str
    """The registered version, as a string ("3")."""
    stage: str
    aliases: tuple[str, ...]
    archived: tuple[str, ...] = ()
    """Versions moved out of Production by the promotion."""


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


def _pip_requirements(flavour: str = "sklearn") -> list[str]:
    # Pinned explicitly: mlflow's inference loads the model in a subprocess per log_model (seconds each).
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    extra = ("lightgbm",) if flavour == "lightgbm" else ()
    for dist in ("scikit-learn", "numpy", "pandas", "scipy", "skops", *extra):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            continue
    return pins


@contextmanager
def _quiet_stage_deprecation() -> Iterator[None]:
    # Stages are deprecated in MLflow 3 but still work, and the original API reads them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --- the runs ----------------------------------------------------------------------------------


def start_experiment(config: TrainingConfig) -> str:
    """Point the MLflow client at ``config.tracking_uri`` and its training experiment; returns the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri)
    return str(mlflow.set_experiment(config.experiment).experiment_id)


@contextmanager
def parent_run(config: TrainingConfig, *, trained_at: str, sha: str | None, common_params: Mapping[str, str],
               profile: Mapping[str, object]) -> Iterator[str]:
    """The comparison run every model's nested run sits under; yields its run id."""
    import mlflow

    with mlflow.start_run(run_name=f"housing-train {trained_at}") as parent:
        tags = {"role": "comparison", "models": ",".join(config.models), "trained_at": trained_at}
        if sha:
            tags["git_sha"] = sha
        mlflow.set_tags(tags)
        mlflow.log_params({**common_params, "models": ",".join(config.models)})
        mlflow.log_dict(dict(profile), PROFILE_ARTIFACT)
        yield parent.info.run_id


def train_candidate(
    kind: str,
    *,
    config: TrainingConfig,
    X_train: pd.DataFrame,
    X_test: pd.DataFrame,
    y_train: pd.Series,
    y_test: pd.Series,
    profile: Mapping[str, object],
    common_params: Mapping[str, str],
) -> tuple[ModelResult, Pipeline]:
    """Fit one model kind in its own nested run and log everything about it; returns its result and the fit."""
    import mlflow
    from mlflow.models import infer_signature

    pipeline = build_pipeline(kind, seed=config.seed)
    flavour = FLAVOURS[kind]
    with mlflow.start_run(run_name=kind, nested=True) as run:
        run_id = run.info.run_id
        mlflow.set_tags({"model_kind": kind, "role": "candidate", "flavour": flavour})
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
        model_info = log_model(pipeline, flavour, signature=signature, input_example=example)
        # Logged on the run and linked to the logged model, so the UI shows them on both pages.
        mlflow.log_metrics(metrics, model_id=model_info.model_id)
    return ModelResult(kind, run_id, model_info.model_uri, metrics, fit_seconds), pipeline


def log_model(pipeline: Pipeline, flavour: str, *, signature: object, input_example: pd.DataFrame) -> ModelInfo:
    """Log the fitted pipeline in the active run with its flavour: ``mlflow.lightgbm`` for a LightGBM pipeline
    (its ``lightgbm`` flavour names the pipeline as its model class), ``mlflow.sklearn`` otherwise; skops both."""
    common = dict(name=MODEL_ARTIFACT, signature=signature, input_example=input_example,
                  pip_requirements=_pip_requirements(flavour), serialization_format="skops",
                  skops_trusted_types=list(SKOPS_TRUSTED_TYPES))
    if flavour == "lightgbm":
        import mlflow.lightgbm

        return mlflow.lightgbm.log_model(lgb_model=pipeline, **common)  # type: ignore[arg-type]
    import mlflow.sklearn

    return mlflow.sklearn.log_model(sk_model=pipeline, **common)  # type: ignore[arg-type]


def log_comparison(results: Sequence[ModelResult], best: ModelResult) -> None:
    """On the active parent run: the comparison chart, the best and every model's metrics, the best run."""
    import mlflow

    metrics_by_kind = {r.kind: r.metrics for r in results}
    mlflow.log_figure(plots.comparison_chart(metrics_by_kind, best=best.kind), COMPARISON_ARTIFACT)
    mlflow.log_metrics({f"best_{k}": v for k, v in best.metrics.items()})
    for r in results:
        mlflow.log_metrics({f"{r.kind}_{k}": v for k, v in r.metrics.items()})
    mlflow.set_tags({"best_model_kind": best.kind, "best_run_id": best.run_id})


def tag_registration(model_name: str, version: str) -> None:
    """On the active parent run: which registered version it produced."""
    import mlflow

    mlflow.set_tags({"registered_model": model_name, "registered_version": version})


# --- the registry ------------------------------------------------------------------------------


def register_version(
    config: TrainingConfig, best: ModelResult, *, trained_at: str, sha: str | None,
    n_train: int, n_test: int,
) -> Registration:
    """Register ``best`` as a new version of ``config.model_name``: alias ``challenger``, stage ``Staging``."""
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
        "flavour": FLAVOURS.get(best.kind, "sklearn"),
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
                description="California housing median_house_value regressor (a Pipeline taking the 9 raw "
                            "features: scikit-learn or LightGBM); the best model of each housing-train run.",
            )
    except Exception:  # the description is cosmetic: never fail a registration over it
        logger.debug("could not set the registered model description", exc_info=True)

    client.set_registered_model_alias(config.model_name, CHALLENGER_ALIAS, version)
    with _quiet_stage_deprecation():
        client.transition_model_version_stage(config.model_name, version, STAGING)
    return Registration(version, STAGING, (CHALLENGER_ALIAS,))


def promote_version(config: TrainingConfig, registration: Registration) -> Registration:
    """Move the version to stage ``Production`` (archiving the previous one), then give it alias ``champion``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri)
    version = registration.version
    with _quiet_stage_deprecation():
        previous = [
            str(v.version) for v in client.get_latest_versions(config.model_name, stages=[PRODUCTION])
            if str(v.version) != version
        ]
        client.transition_model_version_stage(config.model_name, version, PRODUCTION,
                                              archive_existing_versions=True)
    client.set_registered_model_alias(config.model_name, CHAMPION_ALIAS, version)
    return Registration(version, PRODUCTION, (*registration.aliases, CHAMPION_ALIAS), tuple(previous))

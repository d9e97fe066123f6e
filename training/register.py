"""Training orchestration: train -> log -> register -> promote -> write the fallback, in that order.

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

The MLflow calls are in ``training.tracking``, the fallback files in ``training.fallback``, the config and
result types in ``training.results`` (re-exported here: they are this entry point's signature).

The returned ``TrainingResult`` carries what a caller needs to act on the outcome (``promoted``,
``version``, ``model_uri``): the hook for announcing promotions on the model-updates topic.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tqdm import tqdm

from config.runtime import limit_thread_pools
from consumer.core.profile import build_profile
from schemas.features import FEATURE_COLUMNS
from training import data as training_data
from training import tracking
from training.fallback import fallback_metadata, write_fallback
from training.results import ModelResult, TrainingConfig, TrainingResult

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["TrainingConfig", "TrainingResult", "train_and_register"]

logger = logging.getLogger(__name__)


def train_and_register(config: TrainingConfig) -> TrainingResult:
    """Train every kind in ``config.models``, log them, register the best, write the fallback.

    :param config: what to train and where to log it (``TrainingConfig.from_settings(...)``).
    :returns: the registered version and every model's run and metrics.
    :raises TrackingServerUnreachable: before any work, if the tracking server does not answer.
    :raises training.data.DataError: if the data cannot be read.
    """
    started = time.perf_counter()
    tracking.check_tracking_server(config.tracking_uri, timeout=config.health_timeout)
    logger.info("tracking server %s is up", config.tracking_uri)

    df = training_data.sample_rows(training_data.load_housing(config.data_path), config.sample, config.seed)
    X_train, X_test, y_train, y_test = training_data.split(df, seed=config.seed)
    logger.info("split %d rows: %d train, %d test (seed %d)", len(df), len(X_train), len(X_test), config.seed)
    profile = build_profile(X_train)
    sha = tracking.git_sha()

    experiment_id = tracking.start_experiment(config)
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
    with tracking.parent_run(config, trained_at=trained_at, sha=sha, common_params=common_params,
                             profile=profile) as parent_run_id:
        # Thread pools limited for the whole fit/predict phase (see TrainingConfig.threads).
        with limit_thread_pools(config.threads):
            bar = tqdm(config.models, desc="training", unit="model", file=sys.stderr,
                       disable=not config.progress, leave=False)
            for kind in bar:
                bar.set_postfix_str(kind)
                result, pipeline = tracking.train_candidate(
                    kind, config=config, X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test,
                    profile=profile, common_params=common_params,
                )
                results.append(result)
                fitted[kind] = pipeline
            bar.close()

        best = min(results, key=lambda r: r.metrics["rmse"])
        tracking.log_comparison(results, best)

        registration = tracking.register_version(
            config, best, trained_at=trained_at, sha=sha, n_train=len(X_train), n_test=len(X_test)
        )
        if config.promote:
            registration = tracking.promote_version(config, registration)
        logger.info("registered %s version %s (%s) with alias(es) %s, stage %s", config.model_name,
                    registration.version, best.kind, ", ".join(registration.aliases), registration.stage)
        tracking.tag_registration(config.model_name, registration.version)

    model_uri = f"models:/{config.model_name}/{registration.version}"
    metadata = fallback_metadata(
        config, registration, best, model_uri=model_uri, results=results, features=X_test,
        parent_run_id=parent_run_id, trained_at=trained_at, sha=sha, n_train=len(X_train),
    )
    assert list(X_test.columns) == list(FEATURE_COLUMNS)  # the contract the scorer relies on
    model_path, metadata_path, profile_path = write_fallback(config, fitted[best.kind], metadata, profile)
    logger.info("fallback model written to %s", model_path)

    return TrainingResult(
        model_name=config.model_name,
        version=registration.version,
        model_uri=model_uri,
        run_id=best.run_id,
        best_kind=best.kind,
        metrics=dict(best.metrics),
        aliases=registration.aliases,
        stage=registration.stage,
        promoted=config.promote,
        parent_run_id=parent_run_id,
        experiment_id=experiment_id,
        tracking_uri=config.tracking_uri,
        results=tuple(results),
        fallback_path=str(model_path),
        metadata_path=str(metadata_path),
        profile_path=str(profile_path),
        trained_at=trained_at,
        seconds=time.perf_counter() - started,
        n_train=len(X_train),
        n_test=len(X_test),
        archived_versions=registration.archived,
    )

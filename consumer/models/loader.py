"""Resolve, load and check models from the MLflow registry, and the local fallback file when it cannot answer.

Resolution turns "the champion", "the Production version" or "version 7" into one concrete registry
version. Loading downloads that version's artifacts once, loads the scikit-learn pipeline, its stored input
example and the training feature profile, then checks that the model predicts finite values on the example
before anyone may swap it in. When the registry cannot be reached at start-up, the local fallback file
(``MODEL_PATH``) is used, and said loudly.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import pickle
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from config.mlflow import configure_mlflow_client, mlflow_answers
from config.settings import Settings
from consumer.core.features import to_frame
from consumer.core.handle import ModelHandle
from consumer.errors import MlflowUnavailable, ModelError, ModelUnavailable
from schemas.examples import EXAMPLE_RECORD

logger = logging.getLogger(__name__)

PROFILE_ARTIFACT = "reference_profile.json"



@dataclass(frozen=True)
class ResolvedVersion:
    """One concrete registry version, and how it was asked for."""

    name: str
    version: str
    alias: str | None
    stage: str | None
    run_id: str | None
    source: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"



class ModelLoader:
    """Talks to one MLflow registry for one registered model name."""

    def __init__(self, settings: Settings) -> None:
        configure_mlflow_client()
        from mlflow.tracking import MlflowClient

        self.settings = settings
        self.tracking_uri = settings.mlflow.tracking_uri
        self.name = settings.model.name
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def reachable(self) -> bool:
        return mlflow_answers(self.tracking_uri, 3.0, local_store_answers=True)

    # --- resolution ----------------------------------------------------------------------------------
    def resolve(self, *, version: str | None = None, alias: str | None = None,
                stage: str | None = None) -> ResolvedVersion:
        """One concrete version: by explicit version, else alias, else stage (first given wins)."""
        from mlflow.exceptions import MlflowException

        if not self.reachable():
            raise MlflowUnavailable(f"MLflow registry at {self.tracking_uri} is not reachable")
        try:
            if version is not None:
                mv = self.client.get_model_version(self.name, str(version))
            elif alias is not None:
                mv = self.client.get_model_version_by_alias(self.name, alias)
            elif stage is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    latest = self.client.get_latest_versions(self.name, stages=[stage])
                if not latest:
                    raise ModelError(f"registered model {self.name!r} has no version in stage {stage!r}")
                mv = latest[0]
            else:
                raise ModelError("say which model to load: a version, an alias or a stage")
        except MlflowException as exc:
            if _is_connection_problem(exc):
                raise MlflowUnavailable(f"MLflow registry at {self.tracking_uri}: {exc}") from exc
            wanted = f"version {version}" if version else (f"alias @{alias}" if alias else f"stage {stage}")
            raise ModelError(f"registered model {self.name!r} has no {wanted}: {exc.message}") from exc
        aliases = list(getattr(mv, "aliases", []) or [])
        return ResolvedVersion(
            name=self.name, version=str(mv.version),
            alias=alias or (aliases[0] if aliases else None),
            stage=mv.current_stage if mv.current_stage and mv.current_stage != "None" else None,
            run_id=mv.run_id, source=mv.source,
        )

    def resolve_configured(self) -> ResolvedVersion:
        """The version the settings ask for: MLFLOW_MODEL_VERSION, else the alias, else the stage."""
        model = self.settings.model
        if model.version:
            return self.resolve(version=model.version)
        if model.alias:
            return self.resolve(alias=model.alias)
        if model.stage:
            return self.resolve(stage=model.stage)
        raise ModelError("no model version, alias or stage configured (MLFLOW_MODEL_ALIAS / MLFLOW_MODEL_STAGE)")

    # --- loading -------------------------------------------------------------------------------------
    def load(self, resolved: ResolvedVersion, *, check: bool = True) -> ModelHandle:
        """Download, load and (by default) check one version. Raises ModelError; never returns a bad model."""
        import mlflow.artifacts
        import mlflow.sklearn
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="housing-model-") as tmp, \
                    concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="profile") as pool:
                # The drift profile downloads while the model does: a reload's time is mostly these requests.
                profile_future = pool.submit(self._load_profile, resolved.run_id, tmp)
                # The version's own artifact location: models:/ URIs would need a process-global registry URI.
                location = self.client.get_model_version_download_uri(resolved.name, resolved.version)
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=os.path.join(tmp, "model"), tracking_uri=self.tracking_uri)
                estimator = mlflow.sklearn.load_model(local)
                example = _load_input_example(Model, local)
                profile = profile_future.result()
        except MlflowException as exc:
            if _is_connection_problem(exc):
                raise MlflowUnavailable(f"MLflow registry at {self.tracking_uri}: {exc}") from exc
            raise ModelError(f"could not load {resolved.uri}: {exc.message}") from exc
        except ModelError:
            raise
        except Exception as exc:  # corrupt artifacts surface as anything: pickle, skops, OS errors
            raise ModelError(f"could not load {resolved.uri}: {type(exc).__name__}: {exc}") from exc
        handle = ModelHandle(
            model=estimator, name=resolved.name, version=resolved.version, alias=resolved.alias,
            stage=resolved.stage, uri=resolved.uri, run_id=resolved.run_id, source="registry",
            load_seconds=time.perf_counter() - started, input_example=example, reference_profile=profile,
        )
        if check:
            check_model(handle)
        return handle

    def _load_profile(self, run_id: str | None, tmp: str) -> dict[str, Any] | None:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PROFILE_ARTIFACT,
                                                       dst_path=os.path.join(tmp, "profile"),
                                                       tracking_uri=self.tracking_uri)
        except (MlflowException, OSError) as exc:
            logger.warning("run %s has no %s (drift monitoring off for it): %s", run_id, PROFILE_ARTIFACT, exc)
            return None
        with open(path) as handle:
            profile: dict[str, Any] = json.load(handle)
            return profile


def _load_input_example(model_cls: Any, local: str) -> Any:
    try:
        return model_cls.load(local).load_input_example(local)
    except Exception as exc:  # an old version without an example can still be loaded, just not checked on it
        logger.warning("model at %s has no usable input example: %s", local, exc)
        return None


def _is_connection_problem(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("connection", "max retries", "timed out", "temporarily unavailable", "503"))


def check_model(handle: ModelHandle) -> None:
    """The model must predict finite numbers on its stored input example (or a built-in row if it has none)."""
    example = handle.input_example
    frame = example if example is not None else to_frame([EXAMPLE_RECORD])
    try:
        predictions = handle.predict(frame)
    except Exception as exc:
        raise ModelError(f"{handle.label} failed its check prediction: {type(exc).__name__}: {exc}") from exc
    if predictions.size == 0 or not np.all(np.isfinite(predictions)):
        raise ModelError(f"{handle.label} predicted non-finite values on its input example")


def load_fallback(path: str | os.PathLike[str], model_name: str) -> ModelHandle:
    """Load the local fallback model (``models/model.pkl`` + ``model.json`` metadata) and check it.

    The file is a pickle: only load one written by this project's own training (see README, Security).
    """
    started = time.perf_counter()
    model_path = Path(path)
    if not model_path.exists():
        raise ModelError(f"fallback model file {model_path} does not exist (run housing-train to create it)")
    try:
        with open(model_path, "rb") as handle:
            estimator = pickle.load(handle)  # noqa: S301 - our own training output; see docstring
    except Exception as exc:
        raise ModelError(f"fallback model file {model_path} could not be loaded: {exc}") from exc
    meta_path = model_path.with_suffix(".json")
    meta: dict[str, Any] = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            logger.warning("fallback metadata %s is not valid JSON: %s", meta_path, exc)
    profile = None
    profile_path = model_path.parent / PROFILE_ARTIFACT
    if profile_path.exists():
        profile = json.loads(profile_path.read_text())
    handle_ = ModelHandle(
        model=estimator, name=str(meta.get("name") or model_name), version=str(meta.get("version") or "0"),
        alias=None, stage=None, uri=str(model_path), run_id=meta.get("run_id"), source="fallback",
        load_seconds=time.perf_counter() - started, reference_profile=profile,
    )
    check_model(handle_)
    return handle_


def load_startup_model(settings: Settings, loader: ModelLoader | None = None) -> ModelHandle:
    """The model a scorer starts with: the registry's configured version, else the fallback file.

    :raises ModelUnavailable: neither worked; the message says what to do.
    """
    registry_problem: str | None = None
    if settings.mlflow.enabled:
        loader = loader or ModelLoader(settings)
        try:
            return loader.load(loader.resolve_configured())
        except MlflowUnavailable as exc:
            registry_problem = str(exc)
        except ModelError as exc:
            # The registry answered but has no usable model: the fallback keeps the service up, loudly.
            registry_problem = str(exc)
    else:
        registry_problem = "MLflow is disabled (MLFLOW_ENABLED=false)"
    try:
        handle = load_fallback(settings.model.fallback_path, settings.model.name)
    except ModelError as exc:
        raise ModelUnavailable(
            f"no model to serve: registry: {registry_problem}; fallback: {exc}. Train and register one with "
            "`housing-train --promote` (with the MLflow server up: `housing-stack up`), or point MODEL_PATH at "
            "a fallback model file."
        ) from exc
    logger.warning("SERVING THE FALLBACK MODEL %s from %s because the registry could not be used: %s",
                   handle.label, settings.model.fallback_path, registry_problem)
    return handle

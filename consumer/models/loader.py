"""Resolve, load and check models from the MLflow registry, and the local fallback file when it cannot answer.

Resolution turns "the champion", "the Production version" or "version 7" into one concrete registry
version. Loading downloads that version's artifacts once and reads its MLmodel file: the flavour's Python
package must be importable (``flavour_library_missing`` otherwise: nothing is installed at run time), and the
signature must take the housing record and return one number per row (``consumer.core.signature``;
``signature_mismatch`` otherwise). The model is loaded with ``mlflow.pyfunc.load_model``; for a flavour with a
numpy fast path (scikit-learn pipelines, LightGBM) its native model is used when that fast path predicts
exactly what the model does, else the pyfunc model is given one DataFrame per batch. Then the model must predict
one finite number per row on its input example and on the built-in example record before anyone may swap it
in. When the registry cannot be reached at start-up, the local fallback file
(``MODEL_PATH``) is used, and said loudly.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
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
import pandas as pd

from config.mlflow import configure_mlflow_client, mlflow_answers
from config.settings import Settings
from consumer.core.fastpath import complete_example
from consumer.core.features import to_frame
from consumer.core.handle import PYFUNC, ModelHandle, OutputShapeError
from consumer.core.signature import Signature, SignatureMismatch, input_plan
from consumer.errors import (
    FlavourLibraryMissing,
    MlflowUnavailable,
    ModelCheckFailed,
    ModelError,
    ModelUnavailable,
    SignatureRefused,
)
from schemas.examples import EXAMPLE_RECORD

logger = logging.getLogger(__name__)

PROFILE_ARTIFACT = "reference_profile.json"
FAST_FLAVOURS = ("sklearn", "lightgbm")
"""Flavours whose native model may have a numpy fast path (``consumer.core.fastpath``)."""
FLAVOUR_PACKAGES: dict[str, tuple[str, str]] = {
    "sklearn": ("sklearn", "scikit-learn"),
    "lightgbm": ("lightgbm", "lightgbm"),
    "xgboost": ("xgboost", "xgboost"),
    "catboost": ("catboost", "catboost"),
    "statsmodels": ("statsmodels", "statsmodels"),
    "pytorch": ("torch", "torch"),
    "tensorflow": ("tensorflow", "tensorflow"),
    "keras": ("keras", "keras"),
    "onnx": ("onnxruntime", "onnxruntime"),
    "prophet": ("prophet", "prophet"),
    "h2o": ("h2o", "h2o"),
    "spark": ("pyspark", "pyspark"),
}
"""Flavour -> (the module it imports, the pip package that provides it)."""
MODULE_PACKAGES = {module: package for module, package in FLAVOUR_PACKAGES.values()}



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
        from mlflow.exceptions import MlflowException

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
                handle = load_local_model(local, resolved)
                handle = dataclasses.replace(handle, reference_profile=profile_future.result(),
                                             load_seconds=time.perf_counter() - started)
        except MlflowException as exc:
            if _is_connection_problem(exc):
                raise MlflowUnavailable(f"MLflow registry at {self.tracking_uri}: {exc}") from exc
            raise ModelError(f"could not load {resolved.uri}: {exc.message}") from exc
        except ModelError:
            raise
        except Exception as exc:  # corrupt artifacts surface as anything: pickle, skops, OS errors
            raise ModelError(f"could not load {resolved.uri}: {type(exc).__name__}: {exc}") from exc
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


def load_local_model(local: str, resolved: ResolvedVersion) -> ModelHandle:
    """Load a downloaded model version by its flavour (see the module doc); not yet checked.

    :raises FlavourLibraryMissing: its flavour's package (or loader module) cannot be imported here.
    :raises SignatureRefused: its signature or input example does not fit the housing record.
    """
    import mlflow.pyfunc
    from mlflow.models import Model

    mlmodel = Model.load(local)
    flavours = dict(mlmodel.flavors or {})
    if PYFUNC not in flavours:
        raise ModelError(f"{resolved.uri} has no python_function flavour ({', '.join(flavours) or 'none'}): "
                         "the scorer serves MLflow pyfunc models")
    flavour = native_flavour(flavours)
    require_libraries(flavours, resolved.uri)
    example = _load_input_example(mlmodel, local)
    raw_signature = mlmodel.signature.to_dict() if mlmodel.signature is not None else None
    signature = Signature.from_mlmodel(raw_signature)
    example_dtypes = ({str(c): str(t) for c, t in example.dtypes.items()}
                      if isinstance(example, pd.DataFrame) else None)
    try:
        plan = input_plan(signature, example_dtypes)
    except SignatureMismatch as exc:
        what = "signature" if signature is not None and signature.inputs is not None else "input example"
        raise SignatureRefused(f"{resolved.uri} ({flavour}) does not fit the housing record: its {what}: "
                               f"{exc}") from exc
    try:
        pyfunc_model = mlflow.pyfunc.load_model(local)
    except ModuleNotFoundError as exc:
        raise _library_missing(exc.name or str(exc), resolved.uri, flavour) from exc
    common: dict[str, Any] = dict(
        name=resolved.name, version=resolved.version, alias=resolved.alias, stage=resolved.stage,
        uri=resolved.uri, run_id=resolved.run_id, source="registry", input_example=example,
        flavour=flavour, signature=signature, plan=plan)
    if flavour in FAST_FLAVOURS:
        native = ModelHandle(model=pyfunc_model.get_raw_model(), **common)
        if native.fast_path:
            return native
    return ModelHandle(model=pyfunc_model, **common)


def native_flavour(flavours: dict[str, Any]) -> str:
    """The flavour a version was logged with: its first flavour other than python_function (``sklearn``,
    ``lightgbm``...), else ``python_function`` (a custom pyfunc model)."""
    return next((name for name in flavours if name != PYFUNC), PYFUNC)


def require_libraries(flavours: dict[str, Any], uri: str) -> None:
    """Every package the version's flavours need is importable, and so is its pyfunc loader module.

    :raises FlavourLibraryMissing: naming the package to install.
    """
    for flavour in flavours:
        module, package = FLAVOUR_PACKAGES.get(flavour, (None, None))
        if module is not None and package is not None and not _importable(module):
            raise FlavourLibraryMissing(
                f"{uri} is a {flavour} model, and this scorer's environment has no {package}: install it "
                f"(pip install {package}) and reload; the scorer installs nothing at run time", package)
    loader_module = str((flavours.get(PYFUNC) or {}).get("loader_module") or "")
    if loader_module and not _importable(loader_module):
        raise _library_missing(loader_module, uri, native_flavour(flavours))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or an odd name
        return False


def _library_missing(module: str, uri: str, flavour: str) -> FlavourLibraryMissing:
    top = module.split(".")[0]
    package = MODULE_PACKAGES.get(top, top)
    return FlavourLibraryMissing(
        f"{uri} ({flavour}) needs the Python module {module!r}, which this scorer's environment cannot import: "
        f"install the package that provides it (pip install {package}) and reload; the scorer installs nothing "
        "at run time", package)


def _load_input_example(mlmodel: Any, local: str) -> Any:
    try:
        return mlmodel.load_input_example(local)
    except Exception as exc:  # an old version without an example can still be loaded, just not checked on it
        logger.warning("model at %s has no usable input example: %s", local, exc)
        return None


def _is_connection_problem(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("connection", "max retries", "timed out", "temporarily unavailable", "503"))


def check_model(handle: ModelHandle) -> None:
    """The model must predict one finite number per row on its stored input example and on the built-in
    example record, given as the scoring loop gives them (the columns of its plan).

    :raises SignatureRefused: it returned more (or fewer) than one number per row.
    :raises ModelCheckFailed: it raised, or predicted a non-finite value.
    """
    checks: list[tuple[str, pd.DataFrame]] = []
    example = handle.input_example
    if isinstance(example, pd.DataFrame) and len(example):
        checks.append(("its input example", complete_example(example)))
    checks.append(("the built-in example record", to_frame([EXAMPLE_RECORD])))
    for what, frame in checks:
        try:
            predictions = handle.predict(frame)
        except OutputShapeError as exc:
            raise SignatureRefused(f"{handle.label} ({handle.flavour}) does not return one number per row on "
                                   f"{what}: {exc}") from exc
        except Exception as exc:
            raise ModelCheckFailed(f"{handle.label} failed its check prediction on {what}: "
                                   f"{type(exc).__name__}: {exc}") from exc
        if predictions.shape != (len(frame),):
            raise SignatureRefused(f"{handle.label} ({handle.flavour}) returned {predictions.shape[0]} predictions "
                                   f"for the {len(frame)} rows of {what}: one number per row expected")
        if not np.all(np.isfinite(predictions)):
            raise ModelCheckFailed(f"{handle.label} predicted non-finite values on {what}")


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
        flavour=str(meta.get("flavour") or "sklearn"),
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

"""MLflow Model Registry operations of the admin API, and the validation of what callers ask for.

``RegistryOps`` wraps one ``MlflowClient``; every method blocks (HTTP to the tracking server), so handlers
call them with ``asyncio.to_thread``. MLflow's errors are mapped to ``ApiError``: an unknown model or version
-> 404, a refused value -> 400, an unreachable server -> 503. The ``validate_*`` functions are pure and run
before anything is sent, so malformed input never reaches MLflow.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from admin_api.errors import ApiError, bad_request, not_found, unavailable
from config.mlflow import configure_mlflow_client
from config.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

T = TypeVar("T")

logger = logging.getLogger(__name__)

STAGES: Final = ("None", "Staging", "Production", "Archived")
# MLflow's own alias rules (mlflow/utils/validation.py): word characters and dashes, at most 255, not the
# reserved "latest" and not a version-like v<digits>.
ALIAS_PATTERN: Final = r"^[A-Za-z0-9_-]{1,255}$"
_ALIAS_RE: Final = re.compile(ALIAS_PATTERN)
_RESERVED_ALIAS_RE: Final = re.compile(r"^([vV]\d+|[Ll][Aa][Tt][Ee][Ss][Tt])$")
VERSION_PATTERN: Final = r"^[1-9][0-9]{0,9}$"
_VERSION_RE: Final = re.compile(VERSION_PATTERN)
# Registered model names: anything printable except quotes, backslash and slash, which would break
# MLflow's filter strings and our URL paths.
MODEL_NAME_PATTERN: Final = r"^[^\x00-\x1f\x7f'\"`\\/]{1,256}$"
_MODEL_NAME_RE: Final = re.compile(MODEL_NAME_PATTERN)
MAX_VERSIONS_WITH_METRICS: Final = 20
"""Run metrics are fetched (one call each) for the newest versions only."""

_CONNECTION_HINTS = ("connection", "max retries", "timed out", "timeout", "temporarily unavailable",
                     "name or service not known", "refused")


# --- validation (pure) ---------------------------------------------------------------------------------
def validate_model_name(name: Any) -> str:
    if not isinstance(name, str) or not _MODEL_NAME_RE.match(name):
        raise bad_request("invalid_model_name",
                          "model name must be 1-256 printable characters without quotes, backslash or slash",
                          field="name")
    return name


def validate_stage(stage: Any) -> str:
    """One of MLflow's stages, spelled exactly: None, Staging, Production, Archived."""
    if not isinstance(stage, str) or stage not in STAGES:
        raise bad_request("invalid_stage", f"stage must be one of {', '.join(STAGES)}; got {_short(stage)}",
                          field="stage", allowed=list(STAGES))
    return stage


def validate_version(version: Any, field: str = "version") -> str:
    """A registry version: a positive integer, as a number or a string of digits."""
    if isinstance(version, bool):
        version = None  # True is not version 1
    if isinstance(version, int) and 0 < version < 10**10:
        return str(version)
    if isinstance(version, str) and _VERSION_RE.match(version):
        return version
    raise bad_request("invalid_version", f"{field} must be a positive integer version such as \"3\"; "
                      f"got {_short(version)}", field=field)


def validate_alias(alias: Any) -> str:
    """MLflow's alias rules: letters, digits, _ and -, at most 255; not 'latest', not v<digits>."""
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias):
        raise bad_request("invalid_alias", "alias must be 1-255 letters, digits, '_' or '-'; got "
                          f"{_short(alias)}", field="alias")
    if _RESERVED_ALIAS_RE.match(alias):
        raise bad_request("invalid_alias", f"alias {alias!r} is reserved by MLflow ('latest' and v<digits>)",
                          field="alias")
    return alias


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- alias vs stage (pure) -----------------------------------------------------------------------------
def alias_stage_agreement(info: Mapping[str, Any], *, version: str | None, alias: str | None,
                          stage: str | None) -> dict[str, Any]:
    """Whether the served alias and its matching stage name the same version, and which one this scorer follows.

    The pair compared is the configured alias (default ``champion``) and stage (default ``Production``):
    ``housing-train --promote`` moves both together, but the admin API, the MLflow UI and webhooks move one at
    a time, so they can disagree. The source of truth is what the scorer resolves (``consumer.models.loader``):
    ``MLFLOW_MODEL_VERSION``, else ``MLFLOW_MODEL_ALIAS``, else ``MLFLOW_MODEL_STAGE``; the other one is
    informational and nothing moves it along.

    :param info: ``RegistryOps.registry_info`` (``aliases``, ``latest_versions``).
    """
    alias_name, stage_name = alias or "champion", stage or "Production"
    aliases: Mapping[str, str] = info.get("aliases") or {}
    latest: Mapping[str, str] = info.get("latest_versions") or {}
    alias_version, stage_version = aliases.get(alias_name), latest.get(stage_name)
    serving: str | None
    if version:
        truth, serving, setting = "version", version, f"MLFLOW_MODEL_VERSION={version}"
    elif alias or not stage:
        truth, serving, setting = "alias", alias_version, f"MLFLOW_MODEL_ALIAS={alias_name}"
    else:
        truth, serving, setting = "stage", stage_version, f"MLFLOW_MODEL_STAGE={stage_name}"
    consistent = alias_version is not None and alias_version == stage_version
    message: str | None = None
    if not consistent:
        if alias_version is None:
            what = f"the registry has no alias @{alias_name}"
        elif stage_version is None:
            what = f"@{alias_name} points at version {alias_version} but no version is in stage {stage_name}"
        else:
            what = (f"@{alias_name} points at version {alias_version} but the newest version in stage "
                    f"{stage_name} is version {stage_version}")
        serves = f"version {serving}" if serving is not None else "nothing it can resolve"
        if truth == "alias":
            fix = "the stage is informational (move it with POST .../transition to make them agree)"
        elif truth == "stage":
            fix = f"the alias is informational (move it with PUT .../aliases/{alias_name} to make them agree)"
        else:
            fix = "neither the alias nor the stage chooses the version"
        message = f"{what}: this scorer follows the {truth} ({setting}) and so serves {serves}; {fix}"
    return {"consistent": consistent, "alias": alias_name, "alias_version": alias_version, "stage": stage_name,
            "stage_version": stage_version, "source_of_truth": truth, "serving_version": serving,
            "message": message}


# --- MLflow -------------------------------------------------------------------------------------------
def _is_unreachable(exc: BaseException) -> bool:
    text = str(exc).lower()
    if "too many 5" in text:  # the server answered, with errors: not an outage ("too many 500 error responses")
        return False
    return any(hint in text for hint in _CONNECTION_HINTS)


def map_mlflow_error(exc: Exception, what: str) -> ApiError:
    """An ApiError for an exception MLflow raised while doing ``what``."""
    from mlflow.exceptions import MlflowException  # deferred: MLflow takes over a second to import

    if isinstance(exc, MlflowException):
        code = exc.error_code
        if code == "RESOURCE_DOES_NOT_EXIST":
            return not_found("not_found", f"{what}: {exc.message}")
        if code in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE", "MALFORMED_REQUEST"}:
            return bad_request("rejected_by_registry", f"{what}: {exc.message}")
        if code == "RESOURCE_ALREADY_EXISTS":
            return ApiError(409, "conflict", f"{what}: {exc.message}")
        if _is_unreachable(exc) or code in {"TEMPORARILY_UNAVAILABLE", "ENDPOINT_NOT_FOUND"}:
            return unavailable("mlflow_unavailable", f"{what}: MLflow is not reachable: {exc.message}")
        return ApiError(502, "mlflow_error", f"{what}: MLflow answered {code}: {exc.message}")
    if isinstance(exc, OSError) or _is_unreachable(exc):
        return unavailable("mlflow_unavailable", f"{what}: MLflow is not reachable: {exc}")
    return ApiError(502, "mlflow_error", f"{what}: {type(exc).__name__}: {exc}")


def _latest_by_stage(versions: Iterable[Any]) -> dict[str, str]:
    """``{"Production": "3", "Staging": "4"}``: the newest version in each stage (``None`` left out)."""
    latest: dict[str, int] = {}
    for mv in versions:
        stage = mv.current_stage or "None"
        if stage == "None":
            continue
        latest[stage] = max(latest.get(stage, 0), int(mv.version))
    return {stage: str(version) for stage, version in sorted(latest.items())}


def _aliases(registered: Any) -> dict[str, str]:
    aliases = getattr(registered, "aliases", None) or {}
    if isinstance(aliases, dict):
        return {str(k): str(v) for k, v in aliases.items()}
    return {str(a.alias): str(a.version) for a in aliases}  # older entity layout


class RegistryOps:
    """Blocking registry calls for the admin API (call them off the event loop)."""

    def __init__(self, settings: Settings) -> None:
        configure_mlflow_client()  # short HTTP retries, set before the client is made
        from mlflow.tracking import MlflowClient  # deferred: MLflow takes over a second to import

        self.tracking_uri = settings.mlflow.tracking_uri
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _call(self, what: str, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # stage APIs are deprecated in MLflow 3 but still the contract
                return operation(*args, **kwargs)
        except ApiError:
            raise
        except Exception as exc:
            raise map_mlflow_error(exc, what) from exc

    # --- reads -----------------------------------------------------------------------------------------
    def list_models(self) -> list[dict[str, Any]]:
        """Every registered model: name, timestamps, description, latest version per stage, aliases."""
        out: list[dict[str, Any]] = []
        page_token: str | None = None
        while True:
            page = self._call("list registered models", self.client.search_registered_models,
                              max_results=100, page_token=page_token)
            for rm in page:
                out.append({
                    "name": rm.name,
                    "creation_timestamp": rm.creation_timestamp,
                    "last_updated_timestamp": rm.last_updated_timestamp,
                    "description": rm.description or "",
                    "latest_versions": _latest_by_stage(rm.latest_versions or []),
                    "aliases": _aliases(rm),
                })
            page_token = page.token
            if not page_token:
                return out

    def _versions(self, name: str) -> list[Any]:
        escaped = name.replace("'", "\\'")
        versions = self._call(f"list versions of {name!r}", self.client.search_model_versions,
                              filter_string=f"name='{escaped}'")
        return sorted(versions, key=lambda mv: int(mv.version), reverse=True)

    def registry_info(self, name: str) -> dict[str, Any]:
        """Cheap summary for /api/model/info: latest version per stage and the aliases."""
        validate_model_name(name)
        rm = self._call(f"registered model {name!r}", self.client.get_registered_model, name)
        return {"name": rm.name, "latest_versions": _latest_by_stage(rm.latest_versions or []),
                "aliases": _aliases(rm)}

    def model_details(self, name: str) -> dict[str, Any]:
        """The model and its versions (newest first) with stage, aliases, status and run metrics."""
        validate_model_name(name)
        rm = self._call(f"registered model {name!r}", self.client.get_registered_model, name)
        aliases = _aliases(rm)
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        versions = []
        for index, mv in enumerate(self._versions(name)):
            metrics: dict[str, float] | None = None
            if mv.run_id and index < MAX_VERSIONS_WITH_METRICS:
                metrics = self._run_metrics(mv.run_id)
            versions.append({
                "version": str(mv.version),
                "stage": mv.current_stage or "None",
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "status": mv.status,
                "run_id": mv.run_id,
                "source": mv.source,
                "creation_timestamp": mv.creation_timestamp,
                "last_updated_timestamp": mv.last_updated_timestamp,
                "description": mv.description or "",
                "metrics": metrics,
            })
        return {
            "name": rm.name,
            "creation_timestamp": rm.creation_timestamp,
            "last_updated_timestamp": rm.last_updated_timestamp,
            "description": rm.description or "",
            "aliases": aliases,
            "latest_versions": _latest_by_stage(rm.latest_versions or []),
            "versions": versions,
            "count": len(versions),
        }

    def _run_metrics(self, run_id: str) -> dict[str, float] | None:
        try:
            run = self._call(f"run {run_id}", self.client.get_run, run_id)
        except ApiError as exc:
            if exc.status_code == 503:
                raise
            return None  # a deleted run does not make the model unreadable
        return {k: float(v) for k, v in run.data.metrics.items() if math.isfinite(float(v))}

    def get_version(self, name: str, version: str) -> ModelVersion:
        validate_model_name(name)
        return self._call(f"version {version} of {name!r}", self.client.get_model_version, name, version)

    # --- changes ---------------------------------------------------------------------------------------
    def transition(self, name: str, version: str, stage: str, archive_existing: bool) -> dict[str, Any]:
        """Move one version to a stage (optionally archiving the others in that stage)."""
        previous = self.get_version(name, version)
        mv = self._call(f"transition {name!r} version {version} to {stage}",
                        self.client.transition_model_version_stage, name, version, stage,
                        archive_existing_versions=archive_existing)
        logger.info("registry: %s version %s %s -> %s (archive_existing=%s)", name, version,
                    previous.current_stage, mv.current_stage, archive_existing)
        return {"name": name, "version": str(mv.version), "stage": mv.current_stage or "None",
                "previous_stage": previous.current_stage or "None", "archive_existing": archive_existing}

    def set_alias(self, name: str, alias: str, version: str) -> dict[str, Any]:
        """Point ``alias`` at ``version`` (the version must exist)."""
        self.get_version(name, version)
        previous = _aliases(self._call(f"registered model {name!r}", self.client.get_registered_model,
                                       name)).get(alias)
        self._call(f"set alias {alias!r} of {name!r}", self.client.set_registered_model_alias, name, alias, version)
        logger.info("registry: %s @%s -> version %s (was %s)", name, alias, version, previous)
        return {"name": name, "alias": alias, "version": version, "previous_version": previous}

    def rollback(self, name: str, version: str, *, alias: str | None, stage: str | None) -> dict[str, Any]:
        """Make ``version`` the served one again in the registry: point ``alias`` at it, else (a scorer that
        serves a stage) move it to ``stage``, archiving the version there.

        Every scorer resolves the registry (at start-up and at every poll), so moving it, not a scorer's memory,
        is what makes a rollback hold across the fleet, restarts and new instances.
        """
        if alias is not None:
            return {**self.set_alias(name, alias, version), "stage": None}
        if stage is None:
            raise ValueError("a rollback needs the alias or the stage the scorers serve")
        before = self.registry_info(name)["latest_versions"].get(stage)
        moved = self.transition(name, version, stage, archive_existing=True)
        return {"name": name, "alias": None, "stage": moved["stage"], "version": version, "previous_version": before}

    def delete_alias(self, name: str, alias: str) -> dict[str, Any]:
        """Remove ``alias``; 404 when the model does not have it."""
        validate_model_name(name)
        aliases = _aliases(self._call(f"registered model {name!r}", self.client.get_registered_model, name))
        if alias not in aliases:
            raise not_found("alias_not_found", f"registered model {name!r} has no alias {alias!r}")
        self._call(f"delete alias {alias!r} of {name!r}", self.client.delete_registered_model_alias, name, alias)
        logger.info("registry: %s @%s deleted (was version %s)", name, alias, aliases[alias])
        return {"name": name, "alias": alias, "version": None, "previous_version": aliases[alias]}

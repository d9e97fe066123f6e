"""The model being served: /api/model/info, /api/model/reload, /api/model/rollback, /api/model/drift and
/api/model/history."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web
from confluent_kafka import KafkaException

from admin_api.bodies import ReloadRequestBody, parse_reload, parse_rollback, read_body
from admin_api.errors import ApiError, json_response, not_found, unavailable
from admin_api.history import history_body
from admin_api.keys import app_reloader_key, registry_key, service_key
from admin_api.registry import RegistryOps, alias_stage_agreement
from admin_api.views.common import announce, registry_of, require_mlflow, settings_of, state_of
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.kafka.topic_reader import read_model_updates
from consumer.models.reloader import Reloader
from consumer.state import ReloadResult, ScorerState

RELOAD_TIMEOUT_SECONDS = 120.0
"""How long POST /api/model/reload waits for the reload before answering 504 (the reload goes on)."""
REGISTRY_INFO_TIMEOUT_SECONDS: Final = 5.0
HISTORY_TIMEOUT_SECONDS: Final = 10.0


async def model_info(request: web.Request) -> web.Response:
    settings, state = settings_of(request), state_of(request)
    handle = state.models.current
    registry_info: dict[str, Any] | None = None
    registry_error: str | None = None
    if not settings.mlflow.enabled:
        registry_error = "MLflow is disabled (MLFLOW_ENABLED=false)"
    elif state.mlflow_reachable is False:
        registry_error = f"MLflow at {settings.mlflow.tracking_uri} is unreachable"
    else:
        name = handle.name if handle is not None else settings.model.name
        try:
            registry_info = await asyncio.wait_for(asyncio.to_thread(registry_of(request).registry_info, name),
                                                   REGISTRY_INFO_TIMEOUT_SECONDS)
        except ApiError as exc:
            registry_error = exc.message
        except TimeoutError:
            registry_error = f"MLflow did not answer within {REGISTRY_INFO_TIMEOUT_SECONDS:.0f}s"
    last = state.last_reload
    prediction_logger = state.prediction_logger
    body = {"model_info": {
        "model_loaded": handle is not None,
        "model_metadata": _describe(handle),
        "mlflow_enabled": settings.mlflow.enabled,
        "registry_info": registry_info,
        "registry_error": registry_error,
        "serving": {"alias": settings.model.alias, "stage": settings.model.stage, "version": settings.model.version},
        # The alias and its stage may name different versions (moved one at a time): say so, and which one counts.
        "alias_stage": alias_stage_agreement(registry_info, version=settings.model.version,
                                             alias=settings.model.alias, stage=settings.model.stage)
        if registry_info is not None else None,
        "previous_model": _describe(state.models.previous),
        "shadow_model": _describe(state.models.shadow),
        "last_reload": last.as_dict() if last is not None else None,
        "history": [h.describe() for h in state.models.history()],
        "prediction_logging": prediction_logger.describe() if prediction_logger is not None
        else {"enabled": False},
    }}
    return json_response(body)


async def model_reload(request: web.Request) -> web.Response:
    settings, state = settings_of(request), state_of(request)
    wanted = parse_reload(await read_body(request, allow_empty=True))
    require_mlflow(settings)
    if wanted.broadcast:
        announced = await announce(request, type="reload", model_name=settings.model.name, version=wanted.version,
                                   alias=wanted.alias, stage=wanted.stage)
        if not announced["announced"]:
            raise unavailable("kafka_unavailable", f"the reload event was not published: "
                              f"{announced['announce_error']}")
        return json_response({"status": "broadcast", "event": announced["event"],
                              "topic": settings.topics.model_updates}, status=202)
    reloader = reloader_of(request.app)
    if reloader is None:
        raise unavailable("unavailable", "no model reloader is running in this process")
    # Resolve first: an unknown version or alias is the caller's mistake (404), not a failed reload.
    await asyncio.to_thread(_check_target, request.app[registry_key], settings, wanted)
    # force_mlflow (the original API's flag) is accepted for compatibility: reloads always come from the
    # registry, never from the fallback file.
    future = reloader.request(version=wanted.version, alias=wanted.alias, stage=wanted.stage, kind="reload",
                              source="admin_api")
    # Shielded: a timeout or a client that goes away stops the waiting, never the reload (cancelling the
    # reloader's future would drop its answer; before set_running_or_notify_cancel it killed the worker).
    timeout = RELOAD_TIMEOUT_SECONDS
    try:
        result: ReloadResult = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
    except TimeoutError:
        raise ApiError(504, "reload_timeout", f"the reload did not finish within {timeout:g}s; it goes on in the "
                       "background (see /api/model/info)", in_progress=True) from None
    handle = state.models.current
    body = {"status": result.result, "reload": result.as_dict(), "model_metadata": _describe(handle)}
    if result.result == "failed":
        if state.mlflow_reachable is False:
            raise unavailable("mlflow_unavailable", result.detail, reload=result.as_dict())
        raise ApiError(422, "reload_failed", result.detail, reload=result.as_dict(),
                       model_metadata=_describe(handle))
    return json_response(body)


async def model_rollback(request: web.Request) -> web.Response:
    """Roll the fleet back: move the served alias (or stage) to the version, in the registry, then announce it.

    The registry is what every scorer resolves (at start-up and at every poll), so the rollback holds for a
    restarted or new instance too; the ``rollback`` event makes the running ones switch now. A broker that does
    not take the event leaves ``announced: false``: the registry has moved, and every poll converges on it.
    """
    settings, state = settings_of(request), state_of(request)
    wanted = parse_rollback(await read_body(request, allow_empty=True))
    require_mlflow(settings)
    model = settings.model
    if model.version:
        raise ApiError(409, "pinned_version", f"this scorer serves the pinned version {model.version} "
                       "(MLFLOW_MODEL_VERSION): there is no alias or stage to roll back; change the pin instead")
    alias = model.alias or None
    stage = None if alias else model.stage
    if alias is None and stage is None:
        raise ApiError(409, "no_serving_target", "this scorer serves neither an alias (MLFLOW_MODEL_ALIAS) nor a "
                       "stage (MLFLOW_MODEL_STAGE): nothing in the registry to move back")
    version = wanted if wanted is not None else _previous_version(state, model.name)
    if version is None:
        raise ApiError(409, "nothing_to_roll_back_to", "this scorer has served no other registry version since it "
                       'started: name the version to roll back to, {"version": "3"}')
    moved = await asyncio.to_thread(registry_of(request).rollback, model.name, version, alias=alias, stage=stage)
    announced = await announce(request, type="rollback", model_name=model.name, version=version, alias=alias,
                               stage=stage)
    return json_response({"status": "rolled_back", **moved, **announced})


def _previous_version(state: ScorerState, name: str) -> str | None:
    """The registry version this process served before the current one (None: none since start-up)."""
    previous = state.models.previous
    if previous is None or previous.source != "registry" or previous.name != name:
        return None
    return previous.version


def reloader_of(app: web.Application) -> Reloader | None:
    """The service's reloader, else the app's own one (the API running without a scoring loop)."""
    service = app[service_key]
    reloader = service.reloader if service is not None else None
    return reloader if reloader is not None else app.get(app_reloader_key)


def _check_target(registry: RegistryOps, settings: Settings, wanted: ReloadRequestBody) -> None:
    name = settings.model.name
    if wanted.version is not None:
        registry.get_version(name, wanted.version)
    elif wanted.alias is not None:
        aliases = registry.registry_info(name)["aliases"]
        if wanted.alias not in aliases:
            raise not_found("alias_not_found", f"registered model {name!r} has no alias {wanted.alias!r}")
    elif wanted.stage is not None:
        stages = registry.registry_info(name)["latest_versions"]
        if wanted.stage not in stages:
            raise not_found("stage_empty", f"registered model {name!r} has no version in stage {wanted.stage}")


async def model_drift(request: web.Request) -> web.Response:
    settings, state = settings_of(request), state_of(request)
    monitor = state.drift_monitor
    if monitor is not None:
        body = monitor.snapshot()
    else:
        threshold = settings.monitoring.alert_thresholds.get("drift_psi")
        body = {"enabled": False, "status": "disabled", "window_size": settings.monitoring.drift_window,
                "window_rows": 0, "rows_seen": 0, "min_rows": 0, "threshold": threshold, "psi": dict(state.drift),
                "alerts": [], "computed_at": None, "computed_rows": 0, "model_version": None}
    return json_response(body)


async def model_history(request: web.Request) -> web.Response:
    """Events of the served model on the control topic and the derived champion/Production timeline."""
    settings = settings_of(request)
    try:
        events = await asyncio.to_thread(read_model_updates, settings, HISTORY_TIMEOUT_SECONDS)
    except (KafkaException, TimeoutError) as exc:
        raise unavailable("kafka_unavailable", f"the model history could not be read from "
                          f"{settings.topics.model_updates}: {exc}") from None
    # Both targets: training promotes to @champion and Production at once; the admin API may move either.
    return json_response(history_body([event.as_dict() for event in events], model_name=settings.model.name,
                                      alias=settings.model.alias or "champion",
                                      stage=settings.model.stage or "Production",
                                      topic=settings.topics.model_updates))


def _describe(handle: ModelHandle | None) -> dict[str, Any] | None:
    return handle.describe() if handle is not None else None

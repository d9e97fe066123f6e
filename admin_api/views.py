"""Handlers of the admin API, and the background health monitor they read.

Every blocking call (MLflow, Kafka, model prediction) runs in a worker thread via ``asyncio.to_thread``, so
the event loop keeps answering while the scorer is busy. Request bodies are checked by the pure ``parse_*``
functions before anything is called, so bad input always gets a 4xx with a JSON body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from admin_api.errors import ApiError, bad_request, json_response, not_found, unavailable
from admin_api.keys import health_key, publisher_key, registry_key, service_key, settings_key, state_key
from admin_api.registry import (
    RegistryOps,
    validate_alias,
    validate_model_name,
    validate_stage,
    validate_version,
)
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.state import ReloadResult, ScorerState

logger = logging.getLogger(__name__)

MAX_PREDICT_RECORDS: Final = 5000
KAFKA_UNHEALTHY_SECONDS: Final = 60.0
"""Kafka unreachable for longer than this makes the scorer unhealthy (shorter: degraded)."""
HEALTH_REFRESH_SECONDS: Final = 5.0
ERROR_RATE_WINDOW_SECONDS: Final = 60.0
ERROR_RATE_MIN_RECORDS: Final = 100
"""Fewer records than this in the window: no error-rate verdict (a handful of bad records is not a trend)."""
RELOAD_TIMEOUT_SECONDS: Final = 120.0
REGISTRY_INFO_TIMEOUT_SECONDS: Final = 5.0


# --- body parsing (pure) ----------------------------------------------------------------------------------
def parse_json(raw: bytes, *, allow_empty: bool = False) -> Any:
    """Parse a request body; empty bodies are ``{}`` when ``allow_empty``."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise bad_request("missing_body", "a JSON request body is required")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("malformed_json", "the request body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise bad_request("malformed_json", f"the request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("invalid_body", f"{what} must be a JSON object, got {type(body).__name__}")
    return body


def _only(body: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request("unknown_field", f"{what} has unknown field(s) {unknown[:5]}; allowed: {list(allowed)}",
                          field=unknown[0])


def _bool(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise bad_request("wrong_type", f"{name} must be true or false", field=name)
    return value


class ReloadRequestBody(NamedTuple):
    force_mlflow: bool
    version: str | None
    alias: str | None
    stage: str | None
    broadcast: bool


RELOAD_FIELDS: Final = ("force_mlflow", "version", "alias", "stage", "broadcast")


def parse_reload(body: Any) -> ReloadRequestBody:
    """``{"force_mlflow": true, "version": "3" | "alias": "champion" | "stage": "Production", "broadcast": b}``."""
    body = _object(body, "the reload request")
    _only(body, RELOAD_FIELDS, "the reload request")
    # A field that is present must be valid (null is not "absent": leave the field out instead).
    return ReloadRequestBody(
        force_mlflow=_bool(body, "force_mlflow"),
        version=validate_version(body["version"]) if "version" in body else None,
        alias=validate_alias(body["alias"]) if "alias" in body else None,
        stage=validate_stage(body["stage"]) if "stage" in body else None,
        broadcast=_bool(body, "broadcast"),
    )


TRANSITION_FIELDS: Final = ("version", "stage", "archive_existing")
ACTIVE_STAGES: Final = ("Staging", "Production")


def parse_transition(body: Any) -> tuple[str, str, bool]:
    """``{"version": "4", "stage": "Production", "archive_existing": true}`` -> (version, stage, archive)."""
    body = _object(body, "the transition request")
    _only(body, TRANSITION_FIELDS, "the transition request")
    if "version" not in body:
        raise bad_request("missing_field", "version is required", field="version")
    if "stage" not in body:
        raise bad_request("missing_field", "stage is required", field="stage",
                          allowed=["None", "Staging", "Production", "Archived"])
    version, stage, archive = validate_version(body["version"]), validate_stage(body["stage"]), _bool(
        body, "archive_existing")
    if archive and stage not in ACTIVE_STAGES:
        raise bad_request("invalid_stage", f"archive_existing only applies to {' and '.join(ACTIVE_STAGES)} "
                          f"(the stages MLflow archives others from), not {stage}", field="archive_existing")
    return version, stage, archive


def parse_alias_body(body: Any) -> str:
    """``{"version": "3"}`` -> the version the alias should point at."""
    body = _object(body, "the alias request")
    _only(body, ("version",), "the alias request")
    if "version" not in body:
        raise bad_request("missing_field", "version is required", field="version")
    return validate_version(body["version"])


def parse_predict(body: Any) -> tuple[list[dict[str, Any]], bool]:
    """One record object or a list of them -> (clean records, was_single); same checks as the stream."""
    from schemas.errors import ValidationError
    from schemas.validation import validate_record

    single = isinstance(body, dict)
    if single:
        items = [body]
    elif isinstance(body, list):
        items = body
        if not items:
            raise bad_request("invalid_body", "the list of records is empty")
        if len(items) > MAX_PREDICT_RECORDS:
            raise bad_request("too_many_records",
                           f"at most {MAX_PREDICT_RECORDS} records per request, got {len(items)}")
    else:
        raise bad_request("invalid_body", "the body must be a record object or a list of record objects")
    records = []
    for index, item in enumerate(items):
        where = {} if single else {"index": index}
        if not isinstance(item, dict):
            raise bad_request("invalid_record", f"record {index} must be a JSON object", reason="not_an_object",
                              **where)
        try:
            records.append(validate_record(item))
        except ValidationError as exc:
            raise bad_request("invalid_record", exc.message, reason=exc.reason, field=exc.field, **where) from None
    return records, single


async def read_body(request: web.Request, *, allow_empty: bool = False) -> Any:
    return parse_json(await request.read(), allow_empty=allow_empty)


# --- health -------------------------------------------------------------------------------------------------
class HealthMonitor:
    """Refreshes the cached facts /health needs (MLflow reachability, Kafka outage, DLQ rate) in the background.

    /health itself never calls MLflow: it reads what this monitor found at most ``interval`` seconds ago.
    """

    def __init__(self, settings: Settings, state: ScorerState, *, interval: float = HEALTH_REFRESH_SECONDS,
                 service: Any = None) -> None:
        self.settings = settings
        self.state = state
        self.service = service
        self.interval = interval
        self.kafka_down_since: float | None = None
        self._samples: deque[tuple[float, int, int]] = deque()
        self.refreshed_at: float | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("health refresh failed")
            await asyncio.sleep(self.interval)

    async def refresh(self) -> None:
        from config.mlflow import mlflow_answers

        if self.settings.mlflow.enabled:
            reachable = await asyncio.to_thread(mlflow_answers, self.settings.mlflow.tracking_uri, 2.0,
                                                local_store_answers=True)
            self.state.set_mlflow_reachable(reachable)
        self.observe(time.monotonic())
        self.refreshed_at = time.time()

    def observe(self, now: float) -> None:
        """Note Kafka's connection and the counters (called every refresh)."""
        state = self.state
        if self.consumer_expected and not state.kafka_connected:
            self.kafka_down_since = self.kafka_down_since or now
        else:
            self.kafka_down_since = None
        counts = state.counts
        self._samples.append((now, counts["consumed"], counts["dead_lettered"]))
        while self._samples and now - self._samples[0][0] > ERROR_RATE_WINDOW_SECONDS:
            self._samples.popleft()

    @property
    def consumer_expected(self) -> bool:
        """A scoring loop should be running (False when the API runs alone, e.g. in tests)."""
        return self.service is not None or self.state.consumer_running

    def error_rate_percent(self) -> float | None:
        """Dead-lettered / consumed over the last minute, in percent; None without enough records."""
        if len(self._samples) < 2:
            return None
        _, consumed0, dead0 = self._samples[0]
        _, consumed1, dead1 = self._samples[-1]
        consumed = consumed1 - consumed0
        if consumed < ERROR_RATE_MIN_RECORDS:
            return None
        return round(100.0 * (dead1 - dead0) / consumed, 3)

    def report(self, now: float | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /health."""
        return health_report(self.settings, self.state, kafka_down_for=self._kafka_down_for(now),
                             consumer_expected=self.consumer_expected, error_rate=self.error_rate_percent())

    def _kafka_down_for(self, now: float | None) -> float | None:
        if self.kafka_down_since is None:
            return None
        return (now if now is not None else time.monotonic()) - self.kafka_down_since


def _connection_label(reachable: bool | None, enabled: bool) -> str:
    if not enabled:
        return "disabled"
    if reachable is None:
        return "unknown"
    return "healthy" if reachable else "unhealthy"


def health_report(settings: Settings, state: ScorerState, *, kafka_down_for: float | None,
                  consumer_expected: bool, error_rate: float | None) -> tuple[int, dict[str, Any]]:
    """The /health verdict (pure over the state): healthy, degraded (200) or unhealthy (503), with reasons."""
    thresholds = settings.monitoring.alert_thresholds
    handle = state.models.current
    unhealthy: list[str] = []
    degraded: list[str] = []
    if handle is None:
        unhealthy.append("no model is loaded")
    if state.fatal_error:
        unhealthy.append(f"the scoring loop stopped: {state.fatal_error}")
    if kafka_down_for is not None:
        message = f"Kafka unreachable for {kafka_down_for:.0f}s: {state.kafka_error or 'no connection'}"
        (unhealthy if kafka_down_for >= KAFKA_UNHEALTHY_SECONDS else degraded).append(message)
    if handle is not None and handle.source == "fallback":
        degraded.append(f"serving the fallback model file {handle.uri}, not the registry")
    if settings.mlflow.enabled and state.mlflow_reachable is False:
        degraded.append(f"MLflow at {settings.mlflow.tracking_uri} is unreachable")
    last = state.last_reload
    if last is not None and last.result == "failed":
        degraded.append(f"the last model reload failed: {last.detail}")
    drift_limit = thresholds.get("drift_psi")
    drifting = {k: v for k, v in state.drift.items() if drift_limit is not None and v > drift_limit}
    if drifting:
        worst = max(drifting, key=lambda k: drifting[k])
        degraded.append(f"feature drift: PSI of {worst} is {drifting[worst]:.3f} (> {drift_limit}); "
                        f"{len(drifting)} feature(s) above the threshold")
    error_limit = thresholds.get("error_rate_percent")
    if error_rate is not None and error_limit is not None and error_rate > error_limit:
        degraded.append(f"dead-letter rate {error_rate:.2f}% over the last minute (> {error_limit}%)")
    status = "unhealthy" if unhealthy else ("degraded" if degraded else "healthy")
    mlflow_label = _connection_label(state.mlflow_reachable, settings.mlflow.enabled)
    if not consumer_expected:
        kafka_label = "not_running"
    elif kafka_down_for is not None or not state.kafka_connected:
        kafka_label = "disconnected"
    else:
        kafka_label = "connected"
    body = {
        "status": status,
        "model_loaded": handle is not None,
        "model_version": handle.version if handle else None,
        "model_name": handle.name if handle else settings.model.name,
        "model_source": handle.source if handle else None,
        "mlflow_connection": mlflow_label,
        "registry_access": mlflow_label if handle is None or handle.source == "registry" or mlflow_label != "healthy"
        else "degraded",
        "kafka_connection": kafka_label,
        "kafka_error": state.kafka_error,
        "consumer_lag": state.total_lag(),
        "assigned_partitions": len(state.assignment),
        "last_reload": last.as_dict() if last is not None else None,
        "error_rate_percent": error_rate,
        "drift_alerts": sorted(drifting),
        "uptime_seconds": round(state.uptime_seconds(), 1),
        "instance_id": state.instance_id,
        "reasons": unhealthy + degraded,
    }
    return (503 if unhealthy else 200), body


# --- helpers -----------------------------------------------------------------------------------------------
def _settings(request: web.Request) -> Settings:
    return request.app[settings_key]


def _state(request: web.Request) -> ScorerState:
    return request.app[state_key]


def _registry(request: web.Request) -> RegistryOps:
    return request.app[registry_key]


def _require_mlflow(settings: Settings) -> None:
    if not settings.mlflow.enabled:
        raise unavailable("mlflow_disabled", "MLflow is disabled (MLFLOW_ENABLED=false)")


def reloader_of(app: web.Application) -> Any:
    """The service's reloader, else the app's own one (the API running without a scoring loop)."""
    service = app[service_key]
    return getattr(service, "reloader", None) or app.get(app_reloader_key)


app_reloader_key: web.AppKey[Any] = web.AppKey("app_reloader")


async def announce(request: web.Request, **event: Any) -> dict[str, Any]:
    """Publish a ModelUpdateEvent after a registry change: ``{"announced": bool, "event": ..., ...}``."""
    from consumer.errors import ControlPublishError

    settings = _settings(request)
    try:
        published = await asyncio.to_thread(request.app[publisher_key].publish, source="admin_api", **event)
    except (ControlPublishError, ValueError) as exc:
        logger.error("registry changed but the event was not announced on %s: %s", settings.topics.model_updates,
                     exc)
        return {"announced": False, "event": None, "announce_error": str(exc)}
    return {"announced": True, "event": published}


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _describe(handle: ModelHandle | None) -> dict[str, Any] | None:
    return handle.describe() if handle is not None else None


# --- probes and metrics ------------------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    status, body = request.app[health_key].report()
    return json_response(body, status=status)


async def ready(request: web.Request) -> web.Response:
    state = _state(request)
    handle = state.models.current
    body = {"ready": state.ready, "model_loaded": handle is not None,
            "model_version": handle.version if handle else None,
            "consumer_running": state.consumer_running, "assignment_received": state.assignment_received,
            "assigned_partitions": len(state.assignment)}
    return json_response(body, status=200 if state.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(_state(request).metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    from admin_api.openapi import openapi_document

    return json_response(openapi_document(_settings(request)))


# --- the model being served -----------------------------------------------------------------------------------
async def model_info(request: web.Request) -> web.Response:
    settings, state = _settings(request), _state(request)
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
            registry_info = await asyncio.wait_for(asyncio.to_thread(_registry(request).registry_info, name),
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
        "previous_model": _describe(state.models.previous),
        "shadow_model": _describe(state.models.shadow),
        "last_reload": last.as_dict() if last is not None else None,
        "history": [h.describe() for h in state.models.history()],
        "prediction_logging": prediction_logger.describe() if prediction_logger is not None
        else {"enabled": False},
    }}
    return json_response(body)


async def model_reload(request: web.Request) -> web.Response:
    settings, state = _settings(request), _state(request)
    wanted = parse_reload(await read_body(request, allow_empty=True))
    _require_mlflow(settings)
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
    try:
        result: ReloadResult = await asyncio.wait_for(asyncio.wrap_future(future), RELOAD_TIMEOUT_SECONDS)
    except TimeoutError:
        raise ApiError(504, "reload_timeout", f"the reload did not finish within {RELOAD_TIMEOUT_SECONDS:.0f}s; "
                       "it goes on in the background (see /api/model/info)") from None
    handle = state.models.current
    body = {"status": result.result, "reload": result.as_dict(), "model_metadata": _describe(handle)}
    if result.result == "failed":
        if state.mlflow_reachable is False:
            raise unavailable("mlflow_unavailable", result.detail, reload=result.as_dict())
        raise ApiError(422, "reload_failed", result.detail, reload=result.as_dict(),
                       model_metadata=_describe(handle))
    return json_response(body)


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
    settings, state = _settings(request), _state(request)
    monitor = state.drift_monitor
    if monitor is not None:
        body = monitor.snapshot()
    else:
        threshold = settings.monitoring.alert_thresholds.get("drift_psi")
        body = {"enabled": False, "status": "disabled", "window_size": settings.monitoring.drift_window,
                "window_rows": 0, "rows_seen": 0, "min_rows": 0, "threshold": threshold, "psi": dict(state.drift),
                "alerts": [], "computed_at": None, "computed_rows": 0, "model_version": None}
    return json_response(body)


# --- registry -------------------------------------------------------------------------------------------------
async def mlflow_models(request: web.Request) -> web.Response:
    _require_mlflow(_settings(request))
    models = await asyncio.to_thread(_registry(request).list_models)
    return json_response({"registered_models": models, "count": len(models)})


async def mlflow_model(request: web.Request) -> web.Response:
    _require_mlflow(_settings(request))
    name = validate_model_name(request.match_info["name"])
    return json_response(await asyncio.to_thread(_registry(request).model_details, name))


async def mlflow_transition(request: web.Request) -> web.Response:
    _require_mlflow(_settings(request))
    name = validate_model_name(request.match_info["name"])
    version, stage, archive = parse_transition(await read_body(request))
    result = await asyncio.to_thread(_registry(request).transition, name, version, stage, archive)
    kind = "promoted" if stage in ("Staging", "Production") else "reload"
    announced = await announce(request, type=kind, model_name=name, version=version, stage=stage)
    return json_response({**result, **announced})


async def mlflow_set_alias(request: web.Request) -> web.Response:
    _require_mlflow(_settings(request))
    name = validate_model_name(request.match_info["name"])
    alias = validate_alias(request.match_info["alias"])
    version = parse_alias_body(await read_body(request))
    result = await asyncio.to_thread(_registry(request).set_alias, name, alias, version)
    announced = await announce(request, type="promoted", model_name=name, version=version, alias=alias)
    return json_response({**result, **announced})


async def mlflow_delete_alias(request: web.Request) -> web.Response:
    _require_mlflow(_settings(request))
    name = validate_model_name(request.match_info["name"])
    alias = validate_alias(request.match_info["alias"])
    result = await asyncio.to_thread(_registry(request).delete_alias, name, alias)
    announced = await announce(request, type="reload", model_name=name, alias=alias)
    return json_response({**result, **announced})


# --- predictions -------------------------------------------------------------------------------------------------
async def predict(request: web.Request) -> web.Response:
    state = _state(request)
    started = time.perf_counter()
    records, single = parse_predict(await read_body(request))
    handle = state.models.current
    if handle is None:
        raise unavailable("model_not_loaded", "no model is loaded yet")
    predictions = await asyncio.to_thread(_predict, handle, records)
    elapsed = time.perf_counter() - started
    processing_ms = round(elapsed * 1000, 3)
    state.metrics.api_predict_seconds.observe(elapsed)
    logged = _feed_monitors(state, handle, records, predictions, processing_ms)
    meta = {"model_version": handle.version, "model_name": handle.name, "model_alias": handle.alias,
            "model_source": handle.source, "timestamp": _now_iso(), "processing_time_ms": processing_ms,
            "mlflow_logged": logged}
    if single:
        return json_response({"prediction": float(predictions[0]), **meta})
    return json_response({"predictions": [float(p) for p in predictions], "count": len(records), **meta})


def _predict(handle: ModelHandle, records: list[dict[str, Any]]) -> np.ndarray:
    from consumer.core.features import to_columns

    try:
        with np.errstate(all="ignore"):  # overflow shows up below as a non-finite prediction
            predictions = handle.predict(to_columns(records))
    except Exception as exc:
        logger.warning("model %s failed on an HTTP prediction: %s", handle.label, exc)
        raise ApiError(422, "predict_failed", f"the model could not score the record(s): {type(exc).__name__}: "
                       f"{exc}", reason="predict_failed") from None
    bad = [i for i, p in enumerate(predictions) if not math.isfinite(p)]
    if bad:
        raise ApiError(422, "non_finite_prediction", f"the model returned a non-finite value for record {bad[0]}",
                       reason="non_finite_prediction", index=bad[0])
    return predictions


def _feed_monitors(state: ScorerState, handle: ModelHandle, records: list[dict[str, Any]],
                   predictions: np.ndarray, processing_ms: float) -> bool:
    """HTTP predictions count for prediction logging and drift like the stream's; never fails the request."""
    logged = False
    try:
        prediction_logger = state.prediction_logger
        if prediction_logger is not None:
            logged = bool(prediction_logger.add(predictions, handle, processing_ms))
        drift = state.drift_monitor
        if drift is not None:
            from consumer.core.features import to_columns

            drift.observe(to_columns(records))
    except Exception:
        logger.exception("feeding an HTTP prediction to the monitors failed")
    return logged


# --- fleet and webhooks ----------------------------------------------------------------------------------------
async def fleet(request: web.Request) -> web.Response:
    from consumer.kafka.control import read_fleet

    settings = _settings(request)
    try:
        statuses = await asyncio.to_thread(read_fleet, settings, 5.0)
    except TimeoutError as exc:
        raise unavailable("kafka_unavailable", f"the fleet view could not be read: {exc}") from None
    instances = sorted(statuses.values(), key=lambda s: str(s.get("instance_id")))
    return json_response({"instances": instances, "count": len(instances),
                          "topic": settings.topics.scorer_status})


async def mlflow_webhook(request: web.Request) -> web.Response:
    from admin_api.webhooks import WebhookError, event_from_webhook, verify_mlflow_webhook

    settings = _settings(request)
    if not settings.admin.webhook_secret:
        raise ApiError(403, "forbidden", "the MLflow webhook receiver is disabled: set MLFLOW_WEBHOOK_SECRET to the "
                       "webhook's secret to enable it")
    body = await request.read()
    try:
        payload = verify_mlflow_webhook(settings.admin.webhook_secret, request.headers, body, time.time())
    except WebhookError as exc:
        raise ApiError(exc.status, "webhook_rejected", str(exc)) from None
    event = event_from_webhook(payload, settings.model.name)
    if event is None:
        return json_response({"status": "ignored", "entity": str(payload.get("entity")),
                              "action": str(payload.get("action"))})
    event.pop("source", None)
    from consumer.errors import ControlPublishError

    try:
        published = await asyncio.to_thread(request.app[publisher_key].publish, source="webhook", **event)
    except ControlPublishError as exc:
        raise unavailable("kafka_unavailable", f"the webhook's event was not published: {exc}") from None
    return json_response({"status": "published", "event": published}, status=202)

"""The OpenAPI 3 description of the admin API, written by hand to match the handlers in views.py.

Request schemas say exactly what the handlers accept (extra fields are refused, ranges are the stream's
validation rules), so a fuzzer can tell valid from invalid input; response schemas list the fields every
answer carries. ``tests/integration/test_admin_fuzz.py`` checks the running app against this document.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from admin_api.registry import ALIAS_PATTERN, MODEL_NAME_PATTERN, STAGES, VERSION_PATTERN
from admin_api.views import MAX_PREDICT_RECORDS
from config.settings import Settings
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import MAX_RECORD_ID_CHARS, OCEAN_PROXIMITY_CATEGORIES

logger = logging.getLogger(__name__)

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_NUMBER = {"type": "number", "nullable": True}
VERSION = {"oneOf": [{"type": "string", "pattern": VERSION_PATTERN},
                     {"type": "integer", "minimum": 1, "maximum": 9_999_999_999}],
           "description": "A registry version: a positive integer, as a number or a string of digits."}
ALIAS = {"type": "string", "pattern": ALIAS_PATTERN, "not": {"pattern": "^([vV][0-9]+|[Ll][Aa][Tt][Ee][Ss][Tt])$"},
         "description": "MLflow alias rules: letters, digits, _ and -; not 'latest', not v<digits>."}
STAGE = {"type": "string", "enum": list(STAGES)}

MODEL_METADATA = {
    "type": "object",
    "required": ["name", "version", "model_uri", "source"],
    "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "alias": NULLABLE_STRING,
        "stage": NULLABLE_STRING, "model_uri": {"type": "string"}, "run_id": NULLABLE_STRING,
        "source": {"type": "string", "enum": ["registry", "fallback", "memory"]},
        "loaded_at": {"type": "number"}, "load_seconds": {"type": "number"},
    },
}
RELOAD_RESULT = {
    "type": "object",
    "required": ["result", "version", "detail", "at"],
    "properties": {
        "result": {"type": "string"}, "version": NULLABLE_STRING, "detail": {"type": "string"},
        "event_id": NULLABLE_STRING, "load_seconds": NULLABLE_NUMBER, "at": {"type": "number"},
    },
}
MODEL_UPDATE_EVENT = {
    "type": "object",
    "required": ["event_id", "type", "model_name", "issued_at", "source"],
    "properties": {
        "event_id": {"type": "string"}, "type": {"type": "string", "enum": ["promoted", "reload", "rollback"]},
        "model_name": {"type": "string"}, "version": NULLABLE_STRING, "alias": NULLABLE_STRING,
        "stage": NULLABLE_STRING, "model_uri": NULLABLE_STRING, "issued_at": {"type": "integer"},
        "source": {"type": "string"},
    },
}
_EVENT_PROPERTIES: dict[str, Any] = MODEL_UPDATE_EVENT["properties"]  # type: ignore[assignment]
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

_NUMERIC_FIELDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("longitude", {"minimum": -124.6, "maximum": -114.0}),
    ("latitude", {"minimum": 32.0, "maximum": 42.5}),
    ("housing_median_age", {"minimum": 0, "maximum": 200}),
    ("total_rooms", {"minimum": 0, "exclusiveMinimum": True}),
    ("total_bedrooms", {"minimum": 0, "nullable": True}),
    ("population", {"minimum": 0, "exclusiveMinimum": True}),
    ("households", {"minimum": 0, "exclusiveMinimum": True}),
    ("median_income", {"minimum": 0, "maximum": 100}),
)
HOUSING_RECORD = {
    "type": "object",
    "description": "One HousingRecord, checked like the stream's records (no coercion: numbers are numbers).",
    "required": [name for name, rule in _NUMERIC_FIELDS if not rule.get("nullable")] + ["ocean_proximity"],
    "additionalProperties": False,
    "properties": {
        **{name: {"type": "number", **rule} for name, rule in _NUMERIC_FIELDS},
        "ocean_proximity": {"type": "string", "enum": list(OCEAN_PROXIMITY_CATEGORIES)},
        "record_id": {"type": "string", "minLength": 1, "maxLength": MAX_RECORD_ID_CHARS, "nullable": True},
        "event_time": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "nullable": True},
    },
    "example": dict(EXAMPLE_RECORD),
}
PREDICTION_META = {
    "model_version": {"type": "string"}, "model_name": {"type": "string"}, "model_alias": NULLABLE_STRING,
    "model_source": {"type": "string"}, "timestamp": {"type": "string"},
    "processing_time_ms": {"type": "number"}, "mlflow_logged": {"type": "boolean"},
}
_META_REQUIRED = ["model_version", "model_name", "timestamp", "processing_time_ms", "mlflow_logged"]

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "ADMIN_API_KEY as a bearer token"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    },
    "schemas": {
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "model_loaded", "model_version", "model_name", "mlflow_connection",
                         "registry_access", "uptime_seconds", "kafka_connection", "consumer_lag", "last_reload",
                         "reasons"],
            "properties": {
                "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                "model_loaded": {"type": "boolean"}, "model_version": NULLABLE_STRING,
                "model_name": {"type": "string"}, "model_source": NULLABLE_STRING,
                "mlflow_connection": {"type": "string", "enum": ["healthy", "unhealthy", "unknown", "disabled"]},
                "registry_access": {"type": "string",
                                    "enum": ["healthy", "unhealthy", "unknown", "disabled", "degraded"]},
                "kafka_connection": {"type": "string", "enum": ["connected", "disconnected", "not_running"]},
                "kafka_error": NULLABLE_STRING, "consumer_lag": {"type": "integer", "minimum": 0},
                "assigned_partitions": {"type": "integer", "minimum": 0},
                "last_reload": {**RELOAD_RESULT, "nullable": True},
                "error_rate_percent": NULLABLE_NUMBER,
                "drift_alerts": {"type": "array", "items": {"type": "string"}},
                "uptime_seconds": {"type": "number", "minimum": 0}, "instance_id": {"type": "string"},
                "reasons": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Ready": {
            "type": "object", "required": ["ready", "model_loaded", "consumer_running"],
            "properties": {"ready": {"type": "boolean"}, "model_loaded": {"type": "boolean"},
                           "model_version": NULLABLE_STRING, "consumer_running": {"type": "boolean"},
                           "assignment_received": {"type": "boolean"},
                           "assigned_partitions": {"type": "integer"}},
        },
        "ModelMetadata": MODEL_METADATA,
        "ReloadResult": RELOAD_RESULT,
        "ModelUpdateEvent": MODEL_UPDATE_EVENT,
        "ModelInfo": {
            "type": "object", "required": ["model_info"],
            "properties": {"model_info": {
                "type": "object",
                "required": ["model_loaded", "model_metadata", "mlflow_enabled", "registry_info"],
                "properties": {
                    "model_loaded": {"type": "boolean"},
                    "model_metadata": {**MODEL_METADATA, "nullable": True},
                    "mlflow_enabled": {"type": "boolean"},
                    "registry_info": {
                        "type": "object", "nullable": True, "required": ["name", "latest_versions", "aliases"],
                        "properties": {"name": {"type": "string"}, "latest_versions": STRING_MAP,
                                       "aliases": STRING_MAP},
                    },
                    "registry_error": NULLABLE_STRING,
                    "previous_model": {**MODEL_METADATA, "nullable": True},
                    "shadow_model": {**MODEL_METADATA, "nullable": True},
                    "last_reload": {**RELOAD_RESULT, "nullable": True},
                    "history": {"type": "array", "items": MODEL_METADATA},
                },
            }},
        },
        "ReloadRequest": {
            "type": "object", "additionalProperties": False,
            "description": "All optional. Without version/alias/stage the configured target is resolved again.",
            "properties": {"force_mlflow": {"type": "boolean"}, "version": VERSION, "alias": ALIAS,
                           "stage": STAGE, "broadcast": {"type": "boolean"}},
        },
        "ReloadResponse": {
            "type": "object", "required": ["status", "reload", "model_metadata"],
            "properties": {"status": {"type": "string", "enum": ["loaded", "ignored", "started"]},
                           "reload": RELOAD_RESULT, "model_metadata": {**MODEL_METADATA, "nullable": True}},
        },
        "BroadcastResponse": {
            "type": "object", "required": ["status", "event", "topic"],
            "properties": {"status": {"type": "string", "enum": ["broadcast"]}, "event": MODEL_UPDATE_EVENT,
                           "topic": {"type": "string"}},
        },
        "RegisteredModels": {
            "type": "object", "required": ["registered_models", "count"],
            "properties": {
                "registered_models": {"type": "array", "items": {
                    "type": "object", "required": ["name", "creation_timestamp", "latest_versions", "aliases"],
                    "properties": {"name": {"type": "string"}, "creation_timestamp": {"type": "integer",
                                                                                      "nullable": True},
                                   "last_updated_timestamp": {"type": "integer", "nullable": True},
                                   "description": {"type": "string"}, "latest_versions": STRING_MAP,
                                   "aliases": STRING_MAP},
                }},
                "count": {"type": "integer", "minimum": 0},
            },
        },
        "ModelDetails": {
            "type": "object", "required": ["name", "aliases", "latest_versions", "versions", "count"],
            "properties": {
                "name": {"type": "string"}, "creation_timestamp": {"type": "integer", "nullable": True},
                "last_updated_timestamp": {"type": "integer", "nullable": True}, "description": {"type": "string"},
                "aliases": STRING_MAP, "latest_versions": STRING_MAP, "count": {"type": "integer"},
                "versions": {"type": "array", "items": {
                    "type": "object", "required": ["version", "stage", "aliases", "run_id", "metrics"],
                    "properties": {
                        "version": {"type": "string"}, "stage": STAGE,
                        "aliases": {"type": "array", "items": {"type": "string"}},
                        "status": NULLABLE_STRING, "run_id": NULLABLE_STRING, "source": NULLABLE_STRING,
                        "creation_timestamp": {"type": "integer", "nullable": True},
                        "last_updated_timestamp": {"type": "integer", "nullable": True},
                        "description": {"type": "string"},
                        "metrics": {"type": "object", "nullable": True, "additionalProperties": {"type": "number"}},
                    },
                }},
            },
        },
        "TransitionRequest": {
            "type": "object", "additionalProperties": False, "required": ["version", "stage"],
            "properties": {"version": VERSION, "stage": STAGE, "archive_existing": {"type": "boolean"}},
        },
        "AliasRequest": {
            "type": "object", "additionalProperties": False, "required": ["version"],
            "properties": {"version": VERSION},
        },
        "Announcement": {
            "type": "object", "required": ["announced", "event"],
            "properties": {"announced": {"type": "boolean"},
                           "event": {**MODEL_UPDATE_EVENT, "nullable": True},
                           "announce_error": {"type": "string"}},
        },
        "HousingRecord": HOUSING_RECORD,
        "PredictRequest": {"oneOf": [
            _ref("HousingRecord"),
            {"type": "array", "minItems": 1, "maxItems": MAX_PREDICT_RECORDS, "items": _ref("HousingRecord")},
        ]},
        "PredictResponse": {"oneOf": [
            {"type": "object", "required": ["prediction", *_META_REQUIRED],
             "properties": {"prediction": {"type": "number"}, **PREDICTION_META}},
            {"type": "object", "required": ["predictions", "count", *_META_REQUIRED],
             "properties": {"predictions": {"type": "array", "items": {"type": "number"}},
                            "count": {"type": "integer", "minimum": 1}, **PREDICTION_META}},
        ]},
        "Fleet": {
            "type": "object", "required": ["instances", "count", "topic"],
            "properties": {
                "instances": {"type": "array", "items": {
                    "type": "object", "required": ["instance_id", "model_name", "model_version", "result", "at"],
                    "properties": {"instance_id": {"type": "string"}, "model_name": {"type": "string"},
                                   "model_version": NULLABLE_STRING, "event_id": NULLABLE_STRING,
                                   "result": {"type": "string"}, "detail": NULLABLE_STRING,
                                   "load_seconds": NULLABLE_NUMBER, "at": {"type": "integer"}},
                }},
                "count": {"type": "integer", "minimum": 0}, "topic": {"type": "string"},
            },
        },
        "Drift": {
            "type": "object",
            "required": ["enabled", "status", "window_size", "threshold", "psi", "alerts", "computed_at"],
            "properties": {
                "enabled": {"type": "boolean"},
                "status": {"type": "string", "enum": ["ok", "warming_up", "no_reference_profile", "disabled"]},
                "window_size": {"type": "integer"}, "window_rows": {"type": "integer"},
                "rows_seen": {"type": "integer"}, "min_rows": {"type": "integer"},
                "threshold": NULLABLE_NUMBER,
                "psi": {"type": "object", "additionalProperties": {"type": "number"}},
                "alerts": {"type": "array", "items": {"type": "string"}},
                "computed_at": NULLABLE_NUMBER, "computed_rows": {"type": "integer"},
                "model_version": NULLABLE_STRING,
            },
        },
        "History": {
            "type": "object", "required": ["model_name", "topic", "events", "count", "timeline"],
            "properties": {
                "model_name": {"type": "string"}, "topic": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "events": {"type": "array", "items": {
                    "type": "object", "required": ["event_id", "issued_at", "type", "version", "alias", "stage",
                                                   "source"],
                    "properties": {**_EVENT_PROPERTIES, "issued_at_iso": NULLABLE_STRING},
                }},
                "timeline": {"type": "array", "items": {
                    "type": "object", "required": ["target", "version", "from", "to"],
                    "properties": {"target": {"type": "string"}, "version": {"type": "string"},
                                   "from": {"type": "integer"}, "from_iso": NULLABLE_STRING,
                                   "to": {"type": "integer", "nullable": True}, "to_iso": NULLABLE_STRING,
                                   "event_id": {"type": "string"}, "source": {"type": "string"}},
                }},
            },
        },
        "WebhookResponse": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ignored", "published"]},
                           "event": MODEL_UPDATE_EVENT, "entity": {"type": "string"},
                           "action": {"type": "string"}},
        },
    },
}

_SECURED: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
_AUTH_ERRORS = {"401": _error("Missing or wrong API key"),
                "403": _error("No API key configured: the endpoint is disabled")}
_NAME = {"name": "name", "in": "path", "required": True, "description": "Registered model name",
         "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN}}
_ALIAS_PARAM = {"name": "alias", "in": "path", "required": True, "schema": ALIAS}


def _read(summary: str, ok: dict[str, Any], *, protected: bool = True,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses = {"200": ok, **(extra or {})}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if protected:
        # Open unless ADMIN_PROTECT_READS is set.
        operation["security"] = [{}, *_SECURED]
        responses.update(_AUTH_ERRORS)
    return operation


def _write(summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None, *,
           body_required: bool = True, parameters: list[dict[str, Any]] | None = None,
           read_like: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        # read_like: a POST that changes nothing, open unless ADMIN_PROTECT_READS is set.
        "summary": summary, "security": [{}, *_SECURED] if read_like else _SECURED,
        "responses": {**responses, "400": _error("Malformed JSON or invalid field"), **_AUTH_ERRORS,
                      "413": _error("Request body too large")},
    }
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {JSON: {"schema": body}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


_MLFLOW_DOWN = _error("MLflow is unreachable or disabled")
_UPSTREAM = _error("MLflow answered with an unexpected error")

PATHS: dict[str, Any] = {
    "/health": {"get": _read("Health: healthy / degraded (200) or unhealthy (503), with reasons",
                             _json(_ref("Health"), "Healthy or degraded"), protected=False,
                             extra={"503": _json(_ref("Health"), "Unhealthy")})},
    "/ready": {"get": _read("Readiness: a model is loaded and the consumer has its assignment",
                            _json(_ref("Ready"), "Ready"), protected=False,
                            extra={"503": _json(_ref("Ready"), "Not ready")})},
    "/metrics": {"get": _read("Prometheus exposition", {"description": "Metrics in the text format",
                                                        "content": {"text/plain": {"schema": {"type": "string"}}}})},
    "/api/openapi.json": {"get": _read("This document", _json({"type": "object"}, "OpenAPI 3 document"),
                                       protected=False)},
    "/api/model/info": {"get": _read("The model being served and its registry entry",
                                     _json(_ref("ModelInfo"), "Model information"))},
    "/api/model/reload": {"post": _write(
        "Reload the model from the registry (this instance), or broadcast a reload to the whole fleet",
        {"200": _json(_ref("ReloadResponse"), "Reloaded, or ignored (already serving / not this scorer's)"),
         "202": _json(_ref("BroadcastResponse"), "Event published; every scorer reloads"),
         "404": _error("Unknown version, alias or stage"),
         "422": _error("The version could not be loaded or failed its check; the old model keeps serving"),
         "502": _UPSTREAM, "503": _error("MLflow or Kafka unreachable, or no reloader"),
         "504": _error("The reload is still running")},
        _ref("ReloadRequest"), body_required=False)},
    "/api/model/drift": {"get": _read("PSI per feature over the sliding window", _json(_ref("Drift"), "Drift"))},
    "/api/model/history": {"get": _read(
        "Promotions, reloads and rollbacks of the served model from the control topic, and which version was "
        "@champion / in Production from when to when", _json(_ref("History"), "History"),
        extra={"503": _error("Kafka unreachable")})},
    "/api/mlflow/models": {"get": _read("Registered models", _json(_ref("RegisteredModels"), "Models"),
                                        extra={"502": _UPSTREAM, "503": _MLFLOW_DOWN})},
    "/api/mlflow/models/{name}": {"get": {
        **_read("A registered model with its versions, stages, aliases and run metrics",
                _json(_ref("ModelDetails"), "Model details"),
                extra={"400": _error("Invalid model name"), "404": _error("No such registered model"),
                   "502": _UPSTREAM, "503": _MLFLOW_DOWN}),
        "parameters": [_NAME]}},
    "/api/mlflow/models/{name}/transition": {"post": _write(
        "Move a version to a stage (None, Staging, Production, Archived), then announce it",
        {"200": _json({"allOf": [_ref("Announcement"), {
            "type": "object", "required": ["name", "version", "stage", "previous_stage", "archive_existing"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "stage": STAGE,
                           "previous_stage": STAGE, "archive_existing": {"type": "boolean"}}}]},
            "Transitioned"),
         "404": _error("No such model or version"), "409": _error("Conflict"), "502": _UPSTREAM,
         "503": _MLFLOW_DOWN},
        _ref("TransitionRequest"), parameters=[_NAME])},
    "/api/mlflow/models/{name}/aliases/{alias}": {
        "put": _write("Point an alias at a version, then announce it", {
            "200": _json({"allOf": [_ref("Announcement"), {
                "type": "object", "required": ["name", "alias", "version", "previous_version"],
                "properties": {"name": {"type": "string"}, "alias": {"type": "string"},
                               "version": {"type": "string"}, "previous_version": NULLABLE_STRING}}]}, "Alias set"),
            "404": _error("No such model or version"), "409": _error("Conflict"), "502": _UPSTREAM,
            "503": _MLFLOW_DOWN},
            _ref("AliasRequest"), parameters=[_NAME, _ALIAS_PARAM]),
        "delete": _write("Delete an alias, then announce it", {
            "200": _json({"allOf": [_ref("Announcement"), {
                "type": "object", "required": ["name", "alias", "previous_version"],
                "properties": {"name": {"type": "string"}, "alias": {"type": "string"},
                               "version": NULLABLE_STRING, "previous_version": {"type": "string"}}}]},
                "Alias deleted"),
            "404": _error("No such model or alias"), "409": _error("Conflict"), "502": _UPSTREAM,
            "503": _MLFLOW_DOWN},
            parameters=[_NAME, _ALIAS_PARAM]),
    },
    "/api/predict": {"post": _write(
        "Predict one record (the original shape) or a list of records",
        {"200": _json(_ref("PredictResponse"), "Predictions"),
         "422": _error("The model could not score the record(s)"),
         "503": _error("No model loaded")},
        _ref("PredictRequest"), read_like=True)},
    "/api/fleet": {"get": _read("Latest ScorerStatus per scorer instance", _json(_ref("Fleet"), "Fleet"),
                                extra={"503": _error("Kafka unreachable")})},
    "/api/webhooks/mlflow": {"post": {
        "summary": "MLflow registry webhook (signed with MLFLOW_WEBHOOK_SECRET); alias changes are announced",
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {"200": _json(_ref("WebhookResponse"), "Not relevant to the scorers"),
                      "202": _json(_ref("WebhookResponse"), "Announced"),
                      "400": _error("Not an MLflow webhook payload"),
                      "401": _error("Missing or wrong signature, or stale timestamp"),
                      "403": _error("No webhook secret configured: the receiver is disabled"),
                      "413": _error("Request body too large"),
                      "503": _error("Kafka unreachable")},
    }},
}


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The whole document (a fresh copy: callers may change it). ``settings`` is reserved for per-deployment
    details and currently unused."""
    document = {
        "openapi": "3.0.3",
        "info": {"title": "Housing scorer admin API", "version": "1.0.0",
                 "description": "Registry, model, health, metrics, predictions, webhooks and fleet of one "
                                "housing-scorer process. Mutating endpoints need ADMIN_API_KEY."},
        "paths": PATHS,
        "components": COMPONENTS,
    }
    # No "servers": clients resolve paths against the URL they fetched this document from.
    return copy.deepcopy(document)

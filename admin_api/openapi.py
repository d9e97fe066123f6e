"""The OpenAPI 3 description of the admin API, written by hand to match the handlers in ``admin_api.views``.

Request schemas say exactly what the handlers accept (extra fields are refused, ranges are the stream's
validation rules), so a fuzzer can tell valid from invalid input; response schemas list the fields every
answer carries (both in ``admin_api.openapi_schemas``). ``tests/integration/test_admin_fuzz.py`` checks the
running app against this document.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from admin_api.openapi_schemas import (
    ALIAS,
    COMPONENTS,
    JSON,
    NULLABLE_STRING,
    STAGE,
    error_answer,
    json_answer,
    schema_ref,
)
from admin_api.registry import MODEL_NAME_PATTERN
from config.settings import Settings
from consumer.evaluation.stats import ROLES
from consumer.kafka.topic_reader import FLEET_STATES

logger = logging.getLogger(__name__)


_SECURED: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
_AUTH_ERRORS = {"401": error_answer("Missing or wrong API key"),
                "403": error_answer("No API key configured: the endpoint is disabled")}
_NAME = {"name": "name", "in": "path", "required": True, "description": "Registered model name",
         "schema": {"type": "string", "pattern": MODEL_NAME_PATTERN}}
_ALIAS_PARAM = {"name": "alias", "in": "path", "required": True, "schema": ALIAS}
_PERFORMANCE_PARAMS = [
    {"name": "model_version", "in": "query", "required": False, "description": "only this version",
     "schema": {"type": "string"}},
    {"name": "role", "in": "query", "required": False, "description": "only this role",
     "schema": {"type": "string", "enum": list(ROLES)}},
    {"name": "evaluator", "in": "query", "required": False,
     "description": "this evaluator's snapshot (default: the latest published)", "schema": {"type": "string"}},
]

_FLEET_STATE_PARAM = {
    "name": "state", "in": "query", "required": False,
    "description": "only instances in these states, comma-separated (stale: no status or heartbeat for "
                   "FLEET_STALE_AFTER_SECONDS)",
    "schema": {"type": "string", "pattern": f"^({'|'.join(FLEET_STATES)})(,({'|'.join(FLEET_STATES)}))*$"}}


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
        "responses": {**responses, "400": error_answer("Malformed JSON or invalid field"), **_AUTH_ERRORS,
                      "413": error_answer("Request body too large")},
    }
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {JSON: {"schema": body}}}
    if parameters:
        operation["parameters"] = parameters
    return operation


_MLFLOW_DOWN = error_answer("MLflow is unreachable or disabled")
_UPSTREAM = error_answer("MLflow answered with an unexpected error")

PATHS: dict[str, Any] = {
    "/health": {"get": _read("Health: healthy / degraded (200) or unhealthy (503), with reasons",
                             json_answer(schema_ref("Health"), "Healthy or degraded"), protected=False,
                             extra={"503": json_answer(schema_ref("Health"), "Unhealthy")})},
    "/live": {"get": _read("Liveness: 503 only when the scoring loop stopped or a background worker died "
                           "(a restart cures it); Kafka and MLflow outages are waited out",
                           json_answer(schema_ref("Live"), "Alive"), protected=False,
                           extra={"503": json_answer(schema_ref("Live"), "Needs a restart")})},
    "/ready": {"get": _read("Readiness: a model is loaded and the consumer has its assignment",
                            json_answer(schema_ref("Ready"), "Ready"), protected=False,
                            extra={"503": json_answer(schema_ref("Ready"), "Not ready")})},
    "/metrics": {"get": _read("Prometheus exposition", {"description": "Metrics in the text format",
                                                        "content": {"text/plain": {"schema": {"type": "string"}}}})},
    "/api/openapi.json": {"get": _read("This document", json_answer({"type": "object"}, "OpenAPI 3 document"),
                                       protected=False)},
    "/api/model/info": {"get": _read("The model being served and its registry entry",
                                     json_answer(schema_ref("ModelInfo"), "Model information"))},
    "/api/model/reload": {"post": _write(
        "Reload the model from the registry (this instance), or broadcast a reload to the whole fleet",
        {"200": json_answer(schema_ref("ReloadResponse"), "Reloaded, or ignored (already serving / not this scorer's)"),
         "202": json_answer(schema_ref("BroadcastResponse"), "Event published; every scorer reloads"),
         "404": error_answer("Unknown version, alias or stage"),
         "422": error_answer("The version could not be loaded or failed its check; the old model keeps serving"),
         "502": _UPSTREAM, "503": error_answer("MLflow or Kafka unreachable, or no reloader"),
         "504": error_answer("The reload is still running")},
        schema_ref("ReloadRequest"), body_required=False)},
    "/api/model/rollback": {"post": _write(
        "Roll the fleet back: move the served alias (or stage) to a version in the registry, then announce a "
        "rollback event naming it",
        {"200": json_answer({"allOf": [schema_ref("Announcement"), {
            "type": "object", "required": ["status", "name", "version", "previous_version"],
            "properties": {"status": {"type": "string", "enum": ["rolled_back"]}, "name": {"type": "string"},
                           "alias": NULLABLE_STRING, "stage": {**STAGE, "nullable": True},
                           "version": {"type": "string"}, "previous_version": NULLABLE_STRING}}]}, "Rolled back"),
         "404": error_answer("No such model or version"),
         "409": error_answer("A pinned MLFLOW_MODEL_VERSION, or no version given and none served before"),
         "502": _UPSTREAM, "503": _MLFLOW_DOWN},
        schema_ref("RollbackRequest"), body_required=False)},
    "/api/model/drift": {"get": _read("PSI per feature over the sliding window",
                                      json_answer(schema_ref("Drift"), "Drift"))},
    "/api/model/history": {"get": _read(
        "Promotions, reloads and rollbacks of the served model from the control topic, and which version was "
        "@champion / in Production from when to when", json_answer(schema_ref("History"), "History"),
        extra={"503": error_answer("Kafka unreachable")})},
    "/api/model/performance": {"get": {**_read(
        "Live accuracy per model version and role (RMSE, MAE, bias, MAPE, counts; sliding window and since start) "
        "from housing-evaluate's latest snapshot", json_answer(schema_ref("Performance"), "Performance"),
        extra={"400": error_answer("Unknown role"), "404": error_answer("No snapshot of that evaluator"),
               "503": error_answer("Kafka unreachable, or no evaluator has published yet")}),
        "parameters": _PERFORMANCE_PARAMS}},
    "/api/canary": {
        "get": _read("The fleet's canary (alias, share of keys) and the version this instance serves as canary",
                     json_answer(schema_ref("Canary"), "Canary"),
                     extra={"502": _UPSTREAM, "503": _MLFLOW_DOWN}),
        "put": _write("Set the fleet's canary share of keys and/or alias (registry tags), then announce it",
                      {"200": json_answer(schema_ref("CanarySet"), "Set"), "502": _UPSTREAM, "503": _MLFLOW_DOWN},
                      schema_ref("CanaryRequest")),
    },
    "/api/canary/decide": {"post": _write(
        "Run the promotion gate on the latest live accuracy: a dry run, or apply its promote / rollback",
        {"200": json_answer(schema_ref("CanaryDecision"), "The gate's decision (applied or not)"),
         "409": error_answer("No canary (the alias is missing or names the champion)"),
         "502": _UPSTREAM, "503": error_answer("MLflow or Kafka unreachable, or no evaluator snapshot yet")},
        schema_ref("DecideRequest"), body_required=False)},
    "/api/mlflow/models": {"get": _read("Registered models", json_answer(schema_ref("RegisteredModels"), "Models"),
                                        extra={"502": _UPSTREAM, "503": _MLFLOW_DOWN})},
    "/api/mlflow/models/{name}": {"get": {
        **_read("A registered model with its versions, stages, aliases and run metrics",
                json_answer(schema_ref("ModelDetails"), "Model details"),
                extra={"400": error_answer("Invalid model name"), "404": error_answer("No such registered model"),
                   "502": _UPSTREAM, "503": _MLFLOW_DOWN}),
        "parameters": [_NAME]}},
    "/api/mlflow/models/{name}/transition": {"post": _write(
        "Move a version to a stage (None, Staging, Production, Archived), then announce it",
        {"200": json_answer({"allOf": [schema_ref("Announcement"), {
            "type": "object", "required": ["name", "version", "stage", "previous_stage", "archive_existing"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}, "stage": STAGE,
                           "previous_stage": STAGE, "archive_existing": {"type": "boolean"}}}]},
            "Transitioned"),
         "404": error_answer("No such model or version"), "409": error_answer("Conflict"), "502": _UPSTREAM,
         "503": _MLFLOW_DOWN},
        schema_ref("TransitionRequest"), parameters=[_NAME])},
    "/api/mlflow/models/{name}/aliases/{alias}": {
        "put": _write("Point an alias at a version, then announce it", {
            "200": json_answer({"allOf": [schema_ref("Announcement"), {
                "type": "object", "required": ["name", "alias", "version", "previous_version"],
                "properties": {"name": {"type": "string"}, "alias": {"type": "string"},
                               "version": {"type": "string"}, "previous_version": NULLABLE_STRING}}]}, "Alias set"),
            "404": error_answer("No such model or version"), "409": error_answer("Conflict"), "502": _UPSTREAM,
            "503": _MLFLOW_DOWN},
            schema_ref("AliasRequest"), parameters=[_NAME, _ALIAS_PARAM]),
        "delete": _write("Delete an alias, then announce it", {
            "200": json_answer({"allOf": [schema_ref("Announcement"), {
                "type": "object", "required": ["name", "alias", "previous_version"],
                "properties": {"name": {"type": "string"}, "alias": {"type": "string"},
                               "version": NULLABLE_STRING, "previous_version": {"type": "string"}}}]},
                "Alias deleted"),
            "404": error_answer("No such model or alias"), "409": error_answer("Conflict"), "502": _UPSTREAM,
            "503": _MLFLOW_DOWN},
            parameters=[_NAME, _ALIAS_PARAM]),
    },
    "/api/predict": {"post": _write(
        "Predict one record (the original shape) or a list of records",
        {"200": json_answer(schema_ref("PredictResponse"), "Predictions"),
         "422": error_answer("The model could not score the record(s)"),
         "429": {**error_answer("Over ADMIN_PREDICT_RATE_LIMIT calls per minute from this client without the admin "
                                "key"),
                 "headers": {"Retry-After": {"description": "Seconds until the next call is allowed",
                                             "schema": {"type": "integer", "minimum": 1}}}},
         "503": error_answer("No model loaded")},
        schema_ref("PredictRequest"), read_like=True)},
    "/api/fleet": {"get": {**_read(
        "Latest ScorerStatus per scorer instance, with its state (serving, stale, stopped)",
        json_answer(schema_ref("Fleet"), "Fleet"),
        extra={"400": error_answer("Unknown state in the state parameter"), "503": error_answer("Kafka unreachable")}),
        "parameters": [_FLEET_STATE_PARAM]}},
    "/api/webhooks/mlflow": {"post": {
        "summary": "MLflow registry webhook (signed with MLFLOW_WEBHOOK_SECRET); alias changes are announced",
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {"200": json_answer(schema_ref("WebhookResponse"), "Not relevant to the scorers"),
                      "202": json_answer(schema_ref("WebhookResponse"), "Announced"),
                      "400": error_answer("Not an MLflow webhook payload"),
                      "401": error_answer("Missing or wrong signature, or stale timestamp"),
                      "403": error_answer("No webhook secret configured: the receiver is disabled"),
                      "409": error_answer("This delivery id was already received (a replay)"),
                      "413": error_answer("Request body too large"),
                      "503": error_answer("Kafka unreachable")},
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

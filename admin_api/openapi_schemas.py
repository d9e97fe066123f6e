"""The components of the admin API's OpenAPI document: the JSON schemas of every request and answer.

Request schemas say exactly what the handlers accept (extra fields are refused, ranges are the stream's
validation rules: ``admin_api.bodies``, ``admin_api.registry``, ``schemas.validation``); response schemas list
the fields every answer carries. ``admin_api.openapi`` adds the paths.
"""

from __future__ import annotations

from typing import Any

from admin_api.bodies import MAX_PREDICT_RECORDS
from admin_api.registry import ALIAS_PATTERN, STAGES, VERSION_PATTERN
from consumer.kafka.topic_reader import FLEET_STATES
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import MAX_RECORD_ID_CHARS, OCEAN_PROXIMITY_CATEGORIES

JSON = "application/json"


def schema_ref(name: str) -> dict[str, str]:
    """A reference to one of ``COMPONENTS["schemas"]``."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response (or body) of JSON matching ``schema``."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error_answer(description: str) -> dict[str, Any]:
    """An error response: the JSON ``Error`` body every 4xx/5xx carries."""
    return json_answer(schema_ref("Error"), description)


NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_NUMBER = {"type": "number", "nullable": True}

_PERFORMANCE_BLOCK = {
    "type": "object", "required": ["count", "rmse", "mae", "bias", "mape", "mean_delay_seconds", "sums"],
    "properties": {
        "count": {"type": "integer", "minimum": 0}, "rmse": NULLABLE_NUMBER, "mae": NULLABLE_NUMBER,
        "bias": NULLABLE_NUMBER, "mape": NULLABLE_NUMBER, "mean_delay_seconds": NULLABLE_NUMBER,
        "sums": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
PERFORMANCE = {
    "type": "object",
    "required": ["evaluator_id", "published_at", "watermark", "window_seconds", "matched", "versions", "unmatched",
                 "pending", "dead_lettered", "age_seconds", "evaluators", "topic"],
    "properties": {
        "evaluator_id": {"type": "string"}, "published_at": {"type": "integer"}, "watermark": {"type": "integer"},
        "window_seconds": {"type": "number"}, "bucket_seconds": {"type": "number"},
        "window_start": {"type": "integer", "nullable": True}, "matched": {"type": "integer", "minimum": 0},
        "versions": {"type": "array", "items": {
            "type": "object", "required": ["model_version", "role", "window", "since_start", "unmatched"],
            "properties": {"model_version": {"type": "string"}, "role": {"type": "string"},
                           "first_pair_at": {"type": "integer", "nullable": True},
                           "last_pair_at": {"type": "integer", "nullable": True},
                           "window": _PERFORMANCE_BLOCK, "since_start": _PERFORMANCE_BLOCK,
                           "unmatched": {"type": "object", "additionalProperties": {"type": "integer"}}}}},
        "unmatched": {"type": "object", "additionalProperties": {"type": "integer"}},
        "pending": {"type": "object", "additionalProperties": {"type": "integer"}},
        "pending_to_read_back": {"type": "object", "additionalProperties": {"type": "integer"},
                                 "description": "of pending, the rows a restarted evaluator has yet to re-read "
                                                "from its checkpoint's offsets"},
        "dead_lettered": {"type": "object", "additionalProperties": {"type": "integer"}},
        "bad_predictions": {"type": "integer"}, "age_seconds": {"type": "number", "minimum": 0},
        "evaluators": {"type": "array", "items": {"type": "string"}}, "topic": {"type": "string"},
    },
}
"""GET /api/model/performance: an evaluator's latest snapshot (consumer.evaluation.snapshot)."""
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
        "flavour": {"type": "string", "description": "MLflow flavour the version was logged with (sklearn, "
                    "lightgbm, python_function, ...)"},
        "predict_path": {"type": "string", "enum": ["numpy fast path", "dataframe"]},
        "tree_walk": {**NULLABLE_STRING, "description": "a tree ensemble's walk: 'compiled (tl2cgen)' or "
                      "'per-tree (scikit-learn)' with why (compiling, a missing compiler, a failed check); null "
                      "for other models"},
        "input_columns": {"type": "array", "items": {"type": "string"},
                          "description": "the record columns the model is given (its signature's)"},
        "signature": {"type": "object", "nullable": True},
    },
}
RELOAD_RESULT = {
    "type": "object",
    "required": ["result", "version", "detail", "at"],
    "properties": {
        "result": {"type": "string"}, "version": NULLABLE_STRING, "detail": {"type": "string"},
        "event_id": NULLABLE_STRING, "load_seconds": NULLABLE_NUMBER, "at": {"type": "number"},
        "reason": {**NULLABLE_STRING, "description": "why a failed reload failed: signature_mismatch, "
                   "flavour_library_missing, load_failed, check_failed, registry_unavailable, ..."},
    },
}
MODEL_UPDATE_EVENT = {
    "type": "object",
    "required": ["event_id", "type", "model_name", "issued_at", "source"],
    "properties": {
        "event_id": {"type": "string"},
        "type": {"type": "string", "enum": ["promoted", "reload", "rollback", "canary"]},
        "model_name": {"type": "string"}, "version": NULLABLE_STRING, "alias": NULLABLE_STRING,
        "stage": NULLABLE_STRING, "model_uri": NULLABLE_STRING, "issued_at": {"type": "integer"},
        "source": {"type": "string"}, "canary_fraction": NULLABLE_NUMBER, "decision": NULLABLE_STRING,
        "evidence": NULLABLE_STRING,
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

_GATE_DECISION = {
    "type": "object",
    "required": ["action", "reason", "canary_version", "champion_version", "canary_count", "champion_count"],
    "properties": {
        "action": {"type": "string", "enum": ["promote", "rollback", "wait"]}, "reason": {"type": "string"},
        "canary_version": {"type": "string"}, "champion_version": {"type": "string"},
        "canary_rmse": NULLABLE_NUMBER, "champion_rmse": NULLABLE_NUMBER,
        "canary_count": {"type": "integer"}, "champion_count": {"type": "integer"},
        "relative_difference": NULLABLE_NUMBER, "confidence": NULLABLE_NUMBER, "canary_minutes": {"type": "number"},
        "window_start": {"type": "integer", "nullable": True}, "watermark": {"type": "integer"},
        "error_rate": NULLABLE_NUMBER, "non_finite": {"type": "integer", "nullable": True},
        "drift_psi": NULLABLE_NUMBER,
    },
}
CANARY_SCHEMAS: dict[str, Any] = {
    "Canary": {
        "type": "object", "required": ["alias", "fraction", "serving", "auto_promote", "dry_run", "policy"],
        "properties": {
            "alias": {"type": "string"}, "fraction": {"type": "number", "minimum": 0, "maximum": 1},
            "serving": {"type": "object", "required": ["version", "fraction", "alias", "detail", "rejected"],
                        "properties": {"version": NULLABLE_STRING, "fraction": {"type": "number"},
                                       "alias": {"type": "string"}, "detail": {"type": "string"},
                                       "rejected": {"type": "array", "items": {"type": "string"}},
                                       "at": {"type": "number"}}},
            "auto_promote": {"type": "boolean"}, "dry_run": {"type": "boolean"},
            "policy": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "CanaryRequest": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {"fraction": {"type": "number", "minimum": 0, "maximum": 1}, "alias": ALIAS},
    },
    "CanarySet": {
        "type": "object", "required": ["alias", "fraction", "announced"],
        "properties": {"alias": {"type": "string"}, "fraction": {"type": "number"},
                       "announced": {"type": "boolean"}, "event": {**MODEL_UPDATE_EVENT, "nullable": True},
                       "announce_error": {"type": "string"}},
    },
    "DecideRequest": {"type": "object", "additionalProperties": False,
                      "properties": {"apply": {"type": "boolean", "description": "false (default): a dry run"}}},
    "CanaryDecision": {
        "type": "object", "required": ["decision", "applied", "dry_run"],
        "properties": {"decision": _GATE_DECISION, "applied": {"type": "boolean"}, "dry_run": {"type": "boolean"},
                       "registry": {"type": "array", "items": {"type": "string"}},
                       "announced": {"type": "boolean"}, "event": {**MODEL_UPDATE_EVENT, "nullable": True},
                       "announce_error": {"type": "string"}},
    },
}
"""GET/PUT /api/canary and POST /api/canary/decide (admin_api.views.canary)."""

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
                "workers": {"type": "object", "description": "each background thread: alive, dead (unhealthy), "
                            "stopped or not_started",
                            "additionalProperties": {"type": "string",
                                                     "enum": ["alive", "dead", "stopped", "not_started"]}},
                "reasons": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Live": {
            "type": "object", "required": ["alive", "reasons"],
            "properties": {"alive": {"type": "boolean"}, "reasons": {"type": "array", "items": {"type": "string"}}},
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
                    "alias_stage": {
                        "type": "object", "nullable": True,
                        "description": "Whether the served alias (default champion) and its stage (default "
                                       "Production) name the same version, and which one this scorer follows "
                                       "(source_of_truth: version, else alias, else stage); null without the "
                                       "registry",
                        "required": ["consistent", "alias", "alias_version", "stage", "stage_version",
                                     "source_of_truth", "serving_version", "message"],
                        "properties": {"consistent": {"type": "boolean"}, "alias": {"type": "string"},
                                       "alias_version": NULLABLE_STRING, "stage": {"type": "string"},
                                       "stage_version": NULLABLE_STRING,
                                       "source_of_truth": {"type": "string", "enum": ["version", "alias", "stage"]},
                                       "serving_version": NULLABLE_STRING, "message": NULLABLE_STRING},
                    },
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
        "RollbackRequest": {
            "type": "object", "additionalProperties": False,
            "description": "Without version: the registry version this scorer served before the current one.",
            "properties": {"version": VERSION},
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
            schema_ref("HousingRecord"),
            {"type": "array", "minItems": 1, "maxItems": MAX_PREDICT_RECORDS, "items": schema_ref("HousingRecord")},
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
                    "type": "object",
                    "required": ["instance_id", "model_name", "model_version", "result", "at", "state",
                                 "last_seen_at", "age_seconds"],
                    "properties": {"instance_id": {"type": "string"}, "model_name": {"type": "string"},
                                   "model_version": NULLABLE_STRING, "event_id": NULLABLE_STRING,
                                   "result": {"type": "string"}, "detail": NULLABLE_STRING,
                                   "load_seconds": NULLABLE_NUMBER, "at": {"type": "integer"},
                                   "heartbeat_at": {"type": "integer", "nullable": True},
                                   "state": {"type": "string", "enum": list(FLEET_STATES)},
                                   "last_seen_at": {"type": "integer"},
                                   "age_seconds": {"type": "number", "minimum": 0}},
                }},
                "count": {"type": "integer", "minimum": 0}, "topic": {"type": "string"},
                "by_state": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                "stale_after_seconds": {"type": "number"},
            },
        },
        "Performance": PERFORMANCE,
        **CANARY_SCHEMAS,
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

"""The control-plane contract: ModelUpdateEvent (``housing.model-updates``) and ScorerStatus
(``housing.scorer-status``), as frozen dataclasses with their codecs.

Both travel as compact JSON with the fields (and order) of their Avro schemas (``model_update_event.avsc``,
``scorer_status.avsc``), checked against those schemas with fastavro.validation; the decoders also accept
single-object Avro. Encoding rejects a field the schema does not define (a bug in the issuer); decoding drops
one (a newer issuer may add fields). ``as_dict()`` is the JSON shape the admin API answers with.

The mapping-level codecs (``encode_model_update`` / ``decode_model_update``, ``encode_scorer_status`` /
``decode_scorer_status``) are what the dataclasses' ``to_bytes`` / ``from_bytes`` use; they stay public for
readers and tests that look at the raw fields.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, Self, TypeGuard, get_args

import fastavro.validation

from schemas.clock import now_ms
from schemas.errors import DecodeError, ValidationError
from schemas.wire import (
    DEFAULT_MAX_BYTES,
    MODEL_UPDATE_EVENT,
    SCORER_STATUS,
    AvroSchema,
    WireFormat,
    detect_format,
    loads_json_object,
    read_single_object,
)

logger = logging.getLogger(__name__)

EventType = Literal["promoted", "reload", "rollback", "canary"]
"""promoted: an alias/stage now points at ``version``; reload: resolve again; rollback: back to ``version``
(or to each scorer's previous version when it is None); canary: the canary setting changed (``alias``,
``canary_fraction``), or a gate rolled the canary ``version`` back (``decision`` rollback)."""

EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)
"""The symbols of the ModelUpdateType enum in model_update_event.avsc, in its order."""


def is_event_type(value: object) -> TypeGuard[EventType]:
    return value in EVENT_TYPES


@dataclass(frozen=True, kw_only=True)
class ModelUpdateEvent:
    """An announcement on the control topic: every scorer serving ``model_name`` reloads as it says.

    Fields in model_update_event.avsc's order; ``new()`` makes one with a fresh id and issue time.
    """

    event_id: str
    """Unique id of this announcement (a UUID); scorers ignore an id they already handled."""
    type: EventType
    model_name: str
    version: str | None = None
    """Version to load; None means resolve the alias/stage."""
    alias: str | None = None
    stage: str | None = None
    model_uri: str | None = None
    """Explicit models:/ URI, if the issuer knows it."""
    issued_at: int
    """Epoch milliseconds."""
    source: str
    """Who issued it: training, admin_api, webhook, canary-gate, ..."""
    canary_fraction: float | None = None
    """``canary`` events: the share of keys the canary scores (0 for ``version`` after a rollback)."""
    decision: str | None = None
    """The promotion gate's decision this event announces (``promote``, ``rollback``); None: not a gate's."""
    evidence: str | None = None
    """The gate's evidence, a JSON object as text (both versions' RMSE and counts, the margin, the confidence)."""

    @classmethod
    def new(cls, *, type: str, model_name: str, version: str | None = None, alias: str | None = None,
            stage: str | None = None, model_uri: str | None = None, source: str, event_id: str | None = None,
            issued_at: int | None = None, canary_fraction: float | None = None, decision: str | None = None,
            evidence: str | None = None) -> Self:
        """A complete event (fresh uuid4 event id and issue time unless given).

        :raises ValueError: ``type`` is not one of ``EVENT_TYPES``.
        """
        if not is_event_type(type):
            raise ValueError(f"event type must be one of {', '.join(EVENT_TYPES)}, got {type!r}")
        return cls(
            event_id=event_id or str(uuid.uuid4()),
            type=type,
            model_name=model_name,
            version=None if version is None else str(version),
            alias=alias,
            stage=stage,
            model_uri=model_uri,
            issued_at=issued_at if issued_at is not None else now_ms(),
            source=source,
            canary_fraction=None if canary_fraction is None else float(canary_fraction),
            decision=decision,
            evidence=evidence,
        )

    def as_dict(self) -> dict[str, Any]:
        """Every field, in schema order: the event's JSON shape."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_bytes(self) -> bytes:
        """Compact JSON bytes, as published.

        :raises ValidationError: a value of the wrong type (e.g. a non-string version).
        """
        return encode_model_update(self.as_dict())

    @classmethod
    def from_bytes(cls, value: bytes) -> Self:
        """JSON (or single-object Avro) bytes → event; fields it does not know are dropped.

        :raises DecodeError: not a valid ModelUpdateEvent.
        """
        return cls(**decode_model_update(value))


@dataclass(frozen=True, kw_only=True)
class ScorerStatus:
    """One scorer instance's latest state on the compacted status topic (keyed by ``instance_id``).

    Fields in scorer_status.avsc's order.
    """

    instance_id: str
    model_name: str
    model_version: str | None = None
    """Version now serving, if any."""
    event_id: str | None = None
    """The ModelUpdateEvent this status answers, if any."""
    result: str
    """started, loaded, failed, ignored, stopped, ..."""
    detail: str | None = None
    load_seconds: float | None = None
    at: int
    """When it was first written, epoch milliseconds."""
    heartbeat_at: int | None = None
    """When it was last repeated as a heartbeat (the instance was alive then), epoch milliseconds; None before the
    first heartbeat, and from instances that predate heartbeats."""

    @property
    def last_seen_at(self) -> int:
        """The latest sign of life: the heartbeat, else the write time (epoch milliseconds)."""
        return max(self.at, self.heartbeat_at or 0)

    def as_dict(self) -> dict[str, Any]:
        """Every field, in schema order: the status's JSON shape (one instance of /api/fleet)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_bytes(self) -> bytes:
        """Compact JSON bytes, as published.

        :raises ValidationError: a value of the wrong type.
        """
        return encode_scorer_status(self.as_dict())

    @classmethod
    def from_bytes(cls, value: bytes) -> Self:
        """JSON (or single-object Avro) bytes → status; fields it does not know are dropped.

        :raises DecodeError: not a valid ScorerStatus.
        """
        return cls(**decode_scorer_status(value))


# --- the mapping-level codecs: JSON on the wire, checked against the Avro schema ------------------------


def _conform(
    schema: AvroSchema, event: Mapping[str, Any], error: type[DecodeError | ValidationError]
) -> dict[str, Any]:
    """Fill defaults, check required fields and types. Unknown fields are rejected on encode
    (a bug in the issuer) and dropped on decode (a newer issuer may add fields)."""
    if error is ValidationError:
        unknown = sorted(str(k) for k in event if k not in schema.defaults and k not in schema.required)
        if unknown:
            raise error("unknown_field", f"{schema.full_name} has no field {unknown[0]!r}", field=unknown[0])
    record: dict[str, Any] = {}
    for name in schema.field_names:
        if name in event:
            record[name] = event[name]
        elif name in schema.defaults:
            record[name] = schema.defaults[name]
        else:
            raise error("missing_field", f"{schema.full_name} field {name!r} is missing", field=name)
        if record[name] is None and name in schema.required:
            raise error("null_value", f"{schema.full_name} field {name!r} is null", field=name)
    try:
        fastavro.validation.validate(record, schema.parsed, raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        raise error("wrong_type", f"{schema.full_name} does not validate: {' '.join(str(exc).split())}") from exc
    return record


def _encode_control(schema: AvroSchema, event: Mapping[str, Any]) -> bytes:
    record = _conform(schema, event, ValidationError)
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _decode_control(schema: AvroSchema, value: bytes) -> dict[str, Any]:
    if not value:
        raise DecodeError("empty_message", f"{schema.full_name} value is empty")
    if len(value) > DEFAULT_MAX_BYTES:
        raise DecodeError("too_large", f"{schema.full_name} value of {len(value)} bytes is too large")
    fmt = detect_format(value)
    if fmt is WireFormat.AVRO_CONFLUENT:
        raise DecodeError("unknown_schema_id", f"{schema.full_name} is not read in Confluent wire format")
    if fmt is WireFormat.AVRO_SINGLE_OBJECT:
        return read_single_object(value, schema)
    return _conform(schema, loads_json_object(value), DecodeError)


def encode_model_update(event: Mapping[str, Any]) -> bytes:
    """ModelUpdateEvent mapping → compact JSON bytes. Optional fields may be omitted.

    :raises ValidationError: missing/unknown field or a value of the wrong type.
    """
    return _encode_control(MODEL_UPDATE_EVENT, event)


def decode_model_update(value: bytes) -> dict[str, Any]:
    """JSON (or single-object Avro) bytes → ModelUpdateEvent dict with every field present.

    :raises DecodeError: not a valid ModelUpdateEvent.
    """
    return _decode_control(MODEL_UPDATE_EVENT, value)


def encode_scorer_status(status: Mapping[str, Any]) -> bytes:
    """ScorerStatus mapping → compact JSON bytes. Optional fields may be omitted.

    :raises ValidationError: missing/unknown field or a value of the wrong type.
    """
    return _encode_control(SCORER_STATUS, status)


def decode_scorer_status(value: bytes) -> dict[str, Any]:
    """JSON (or single-object Avro) bytes → ScorerStatus dict with every field present.

    :raises DecodeError: not a valid ScorerStatus.
    """
    return _decode_control(SCORER_STATUS, value)

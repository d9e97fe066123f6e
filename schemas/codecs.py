"""Codecs for every value the product puts on Kafka: JSON and Avro (fastavro), detected per message.

Three wire formats, told apart by the first bytes (``detect_format``):

- JSON: a UTF-8 JSON object.
- Avro single-object encoding: ``C3 01`` + the schema's 8-byte CRC-64-AVRO fingerprint
  (little-endian) + the Avro binary body. Needs no registry.
- Confluent wire format: ``00`` + 4-byte big-endian schema id + the Avro binary body; the writer
  schema comes from the schema registry (``SchemaRegistryClient.get_schema``).

``RecordDecoder`` turns housing-record bytes into a field mapping and raises ``DecodeError`` with a
reason code (see schemas.errors.REASONS); no json or fastavro exception leaks out. Field checks are
schemas.validation's job, so NaN passes decoding and is rejected there as ``not_finite``.
``PredictionEncoder`` writes a prediction back in the format its record arrived in.
The control-plane topics (model updates, scorer status) carry JSON, checked against their Avro
schemas with fastavro.validation; their decoders also accept single-object Avro.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import threading
from collections.abc import Mapping
from enum import StrEnum
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, Final

import fastavro
import fastavro.validation
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import AVRO_DIR
from schemas.errors import DecodeError, RegistryUnavailableError, ValidationError, short_repr
from schemas.topics import PREDICTIONS, RECORDS

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 1_000_000
SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN: Final = 10
CONFLUENT_MAGIC: Final = b"\x00"
CONFLUENT_HEADER_LEN: Final = 5
_NEGATIVE_CACHE_LIMIT: Final = 10_000


class WireFormat(StrEnum):
    """How a value is framed on the wire; the ``format`` header carries ``.value``."""

    JSON = "json"
    AVRO_SINGLE_OBJECT = "avro-single-object"
    AVRO_CONFLUENT = "avro-confluent"


class AvroSchema:
    """One of our ``.avsc`` files, parsed once, with its fingerprint and single-object header."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw: dict[str, Any] = dict(raw)
        """The schema as written in the file (JSON-ready; what gets registered)."""
        self.parsed: Any = fastavro.parse_schema(self.raw)
        """fastavro's parsed form (a dict for a record schema)."""
        self.canonical: str = to_parsing_canonical_form(self.parsed)
        self.fingerprint: bytes = bytes.fromhex(fingerprint(self.canonical, "CRC-64-AVRO"))
        """8 bytes, little-endian, as they appear in single-object encoding."""
        self.header: bytes = SINGLE_OBJECT_MAGIC + self.fingerprint
        self.field_names: tuple[str, ...] = tuple(f["name"] for f in self.raw["fields"])
        self.defaults: dict[str, Any] = {f["name"]: f["default"] for f in self.raw["fields"] if "default" in f}
        self.required: tuple[str, ...] = tuple(n for n in self.field_names if n not in self.defaults)

    @classmethod
    def load(cls, file_name: str) -> AvroSchema:
        """Read and parse ``schemas/avro/<file_name>``."""
        with open(AVRO_DIR / file_name, encoding="utf-8") as fh:
            return cls(json.load(fh))

    @property
    def full_name(self) -> str:
        return f"{self.raw.get('namespace', '')}.{self.raw['name']}".lstrip(".")

    @property
    def schema_str(self) -> str:
        """The schema as compact JSON, for registering."""
        return json.dumps(self.raw, separators=(",", ":"))

    def write(self, record: Mapping[str, Any]) -> bytes:
        """Avro binary body (no framing). Raises ValueError if the record does not fit the schema."""
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self.parsed, dict(record))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
            raise ValueError(f"record does not fit {self.full_name}: {exc}") from exc
        return buf.getvalue()

    def read(self, payload: bytes, writer: Any = None) -> dict[str, Any]:
        """Read an Avro body written with ``writer`` (default: this schema) into this schema's shape.

        :raises DecodeError: truncated_avro for missing, trailing or corrupt bytes;
            unknown_schema_id when the writer schema cannot be resolved to this one.
        """
        buf = io.BytesIO(payload)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(buf, self.parsed, None)
            else:
                record = fastavro.schemaless_reader(buf, writer, self.parsed)
        except SchemaResolutionError as exc:
            raise DecodeError("unknown_schema_id", f"writer schema cannot be read as {self.full_name}: {exc}") from exc
        except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ...
            raise DecodeError(
                "truncated_avro", f"Avro body of {len(payload)} bytes cannot be read: {type(exc).__name__}: {exc}"
            ) from exc
        if buf.tell() != len(payload):
            raise DecodeError(
                "truncated_avro",
                f"Avro body has {len(payload) - buf.tell()} trailing bytes after the {self.full_name} record",
            )
        if not isinstance(record, dict):
            raise DecodeError("truncated_avro", f"Avro body is not a {self.full_name} record")
        return record


HOUSING_RECORD: Final = AvroSchema.load("housing_record.avsc")
PREDICTION: Final = AvroSchema.load("prediction.avsc")
MODEL_UPDATE_EVENT: Final = AvroSchema.load("model_update_event.avsc")
SCORER_STATUS: Final = AvroSchema.load("scorer_status.avsc")


def registry_client(url: str | None, config: Mapping[str, Any] | None = None) -> SchemaRegistryClient | None:
    """A schema-registry client for ``url`` (``mock://...`` gives the in-memory mock), or None.

    :param url: registry URL from settings; None or empty means no registry.
    :param config: extra client config (auth), merged over ``{"url": url}``.
    """
    if not url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    if url.startswith("mock://"):
        # Each mock client has its own store; share one per URL so a process's producer and scorer agree.
        if url not in _MOCK_REGISTRIES:
            _MOCK_REGISTRIES[url] = SchemaRegistryClient.new_client({**(config or {}), "url": url})
        return _MOCK_REGISTRIES[url]
    return SchemaRegistryClient.new_client({**(config or {}), "url": url})


_MOCK_REGISTRIES: dict[str, SchemaRegistryClient] = {}


def detect_format(value: bytes) -> WireFormat:
    """Tell the wire format from the first bytes.

    :raises DecodeError: bad_magic when the value starts like Avro framing but is too short or the
        second magic byte is wrong.
    """
    first = value[0] if value else None
    if first == 0x00:
        if len(value) < CONFLUENT_HEADER_LEN:
            raise DecodeError(
                "bad_magic", f"Confluent frame needs {CONFLUENT_HEADER_LEN} header bytes, got {len(value)}"
            )
        return WireFormat.AVRO_CONFLUENT
    if first == 0xC3:
        if value[1:2] != SINGLE_OBJECT_MAGIC[1:]:
            raise DecodeError("bad_magic", f"single-object Avro must start C3 01, got {value[:2].hex(' ')}")
        if len(value) < SINGLE_OBJECT_HEADER_LEN:
            raise DecodeError(
                "bad_magic",
                f"single-object Avro needs {SINGLE_OBJECT_HEADER_LEN} header bytes, got {len(value)}",
            )
        return WireFormat.AVRO_SINGLE_OBJECT
    return WireFormat.JSON


def _loads_object(value: bytes) -> dict[str, Any]:
    """UTF-8 JSON object → dict, with decode-stage reasons."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("not_utf8", f"message is not valid UTF-8 at byte {exc.start}") from exc
    try:
        obj = json.loads(text)
    except RecursionError as exc:
        raise DecodeError("malformed_json", "JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer literal over Python's digit limit
        raise DecodeError("malformed_json", f"malformed JSON: {short_repr(str(exc), 120)}") from exc
    if not isinstance(obj, dict):
        raise DecodeError("not_an_object", f"JSON top level must be an object, got {type(obj).__name__}")
    return obj


def _confluent_frame(schema_id: int, body: bytes) -> bytes:
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + body


class _WriterSchemas:
    """Writer schemas by Confluent schema id, fetched once from the registry and cached."""

    def __init__(self, schema_registry: SchemaRegistryClient | None) -> None:
        self._registry = schema_registry
        self._known: dict[int, Any] = {}
        """id -> parsed writer schema, or None when it is the reader schema itself (no resolution)."""
        self._unknown: dict[int, str] = {}
        """id -> why it cannot be used; bounded so a flood of garbage ids cannot grow it forever."""

    def resolve(self, schema_id: int, reader: AvroSchema) -> Any:
        """The parsed writer schema for ``schema_id`` (None if identical to ``reader``).

        :raises DecodeError: unknown_schema_id.
        :raises RegistryUnavailableError: the registry could not be asked.
        """
        if schema_id in self._known:
            return self._known[schema_id]
        if schema_id in self._unknown:
            raise DecodeError("unknown_schema_id", self._unknown[schema_id])
        if self._registry is None:
            raise DecodeError(
                "unknown_schema_id", f"Confluent schema id {schema_id} but no schema registry is configured"
            )
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                self._remember_unknown(schema_id, f"schema id {schema_id} is not in the registry")
                raise DecodeError("unknown_schema_id", self._unknown[schema_id]) from exc
            raise RegistryUnavailableError(f"schema registry error for id {schema_id}: {exc}") from exc
        except Exception as exc:  # network, TLS, auth: not the record's fault
            raise RegistryUnavailableError(f"schema registry unreachable for id {schema_id}: {exc}") from exc
        if registered is None:  # the mock's store may answer None
            self._remember_unknown(schema_id, f"schema id {schema_id} is not in the registry")
            raise DecodeError("unknown_schema_id", self._unknown[schema_id])
        schema_type = (getattr(registered, "schema_type", None) or "AVRO").upper()
        if schema_type != "AVRO":
            self._remember_unknown(schema_id, f"schema id {schema_id} is a {schema_type} schema, not Avro")
            raise DecodeError("unknown_schema_id", self._unknown[schema_id])
        try:
            parsed = fastavro.parse_schema(json.loads(registered.schema_str or ""))
            canonical = to_parsing_canonical_form(parsed)
        except Exception as exc:
            self._remember_unknown(schema_id, f"schema id {schema_id} is not a valid Avro schema: {exc}")
            raise DecodeError("unknown_schema_id", self._unknown[schema_id]) from exc
        writer = None if canonical == reader.canonical else parsed
        self._known[schema_id] = writer
        logger.info("schema id %d resolved (%s)", schema_id, "same as reader" if writer is None else "resolving")
        return writer

    def _remember_unknown(self, schema_id: int, why: str) -> None:
        if len(self._unknown) >= _NEGATIVE_CACHE_LIMIT:
            self._unknown.clear()
        self._unknown[schema_id] = why


def _read_avro(
    value: bytes, fmt: WireFormat, reader: AvroSchema, writers: _WriterSchemas
) -> tuple[dict[str, Any], int | None]:
    if fmt is WireFormat.AVRO_SINGLE_OBJECT:
        if value[2:SINGLE_OBJECT_HEADER_LEN] != reader.fingerprint:
            raise DecodeError(
                "unknown_fingerprint",
                f"single-object fingerprint {value[2:SINGLE_OBJECT_HEADER_LEN].hex()} is not "
                f"{reader.full_name} ({reader.fingerprint.hex()})",
            )
        return reader.read(value[SINGLE_OBJECT_HEADER_LEN:]), None
    schema_id = int.from_bytes(value[1:CONFLUENT_HEADER_LEN], "big")
    writer = writers.resolve(schema_id, reader)
    return reader.read(value[CONFLUENT_HEADER_LEN:], writer), schema_id


class RecordDecoder:
    """Decodes housing-record message values in any of the three wire formats.

    :param schema_registry: client used to resolve Confluent schema ids (cached per id); without
        one, Confluent-framed values are rejected as unknown_schema_id.
    :param max_bytes: larger values are rejected as too_large before any parsing.
    """

    def __init__(self, schema_registry: SchemaRegistryClient | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._writers = _WriterSchemas(schema_registry)

    def decode(self, value: bytes | None) -> tuple[dict[str, Any], WireFormat, int | None]:
        """Bytes → (fields, wire format, Confluent schema id or None).

        :raises DecodeError: with a decode-stage reason code.
        :raises RegistryUnavailableError: the registry could not be asked (retry, do not DLQ).
        """
        if not value:
            raise DecodeError("empty_message", "message value is null" if value is None else "message value is empty")
        if len(value) > self.max_bytes:
            raise DecodeError("too_large", f"message of {len(value)} bytes is over the {self.max_bytes}-byte limit")
        if value[0] == 0x7B:  # "{": the common JSON case skips detection
            return _loads_object(value), WireFormat.JSON, None
        fmt = detect_format(value)
        if fmt is WireFormat.JSON:
            return _loads_object(value), fmt, None
        fields, schema_id = _read_avro(value, fmt, HOUSING_RECORD, self._writers)
        return fields, fmt, schema_id


class _Registering:
    """Registers one schema under one subject on first use and caches the id."""

    def __init__(self, schema_registry: SchemaRegistryClient | None, subject: str, schema: AvroSchema) -> None:
        self._registry = schema_registry
        self.subject = subject
        self._schema = schema
        self._id: int | None = None
        self._lock = threading.Lock()

    def schema_id(self) -> int:
        if self._id is not None:
            return self._id
        if self._registry is None:
            raise ValueError(f"Confluent wire format for {self.subject} needs a schema registry")
        from confluent_kafka.schema_registry import Schema

        with self._lock:
            if self._id is None:
                try:
                    schema = Schema(self._schema.schema_str, "AVRO")
                    self._id = int(self._registry.register_schema(self.subject, schema))
                except Exception as exc:
                    raise RegistryUnavailableError(f"cannot register {self.subject}: {exc}") from exc
                logger.info("registered %s under %s as schema id %d", self._schema.full_name, self.subject, self._id)
            return self._id


def _json_string(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"expected a string, got {type(value).__name__} {short_repr(value)}")
    return encode_basestring_ascii(value)


def _json_long(value: Any) -> str:
    if type(value) is not int:
        raise ValueError(f"expected an integer, got {type(value).__name__} {short_repr(value)}")
    return repr(value)


_PREDICTION_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class PredictionJsonWriter:
    """JSON predictions for one batch: the fields every prediction of the batch shares are formatted once.

    The bytes equal ``PredictionEncoder.encode(..., WireFormat.JSON)`` (and so ``json.dumps`` with compact
    separators) for the same values; the per-record work is one f-string. ``prediction`` and
    ``shadow_prediction`` must be finite floats (the scoring core checks that before it writes).
    """

    def __init__(self, *, model_name: str, model_version: str, model_alias: str | None, model_stage: str | None,
                 scored_at: int, shadow_model_version: str | None) -> None:
        def text(value: str | None) -> str:
            return "null" if value is None else _json_string(value)

        self._model = (f',"model_name":{text(model_name)},"model_version":{text(model_version)}'
                       f',"model_alias":{text(model_alias)},"model_stage":{text(model_stage)}'
                       f',"scored_at":{_json_long(scored_at)},"source_topic":')
        self._tail = f',"shadow_model_version":{text(shadow_model_version)}}}'
        self._topics: dict[str, str] = {}

    def write(self, record_id: str, prediction: float, source_topic: str, source_partition: int,
              source_offset: int, event_time: int | None, shadow_prediction: float | None) -> bytes:
        topic = self._topics.get(source_topic)
        if topic is None:
            topic = self._topics[source_topic] = _json_string(source_topic)
        return (f'{{"record_id":{encode_basestring_ascii(record_id)},"prediction":{float(prediction)!r}'
                f'{self._model}{topic},"source_partition":{source_partition:d},"source_offset":{source_offset:d}'
                f',"event_time":{"null" if event_time is None else f"{event_time:d}"}'
                f',"shadow_prediction":{"null" if shadow_prediction is None else repr(float(shadow_prediction))}'
                f'{self._tail}').encode("ascii")


class PredictionEncoder:
    """Encodes Prediction values in the wire format the record arrived in.

    :param schema_registry: needed only for ``WireFormat.AVRO_CONFLUENT``.
    :param topic: predictions topic; the subject is ``"<topic>-value"`` unless ``subject`` is given.
    :param subject: explicit registry subject.
    """

    def __init__(
        self,
        schema_registry: SchemaRegistryClient | None = None,
        *,
        topic: str = PREDICTIONS.name,
        subject: str | None = None,
    ) -> None:
        self._confluent = _Registering(schema_registry, subject or f"{topic}-value", PREDICTION)

    @property
    def subject(self) -> str:
        return self._confluent.subject

    def encode(self, prediction: Mapping[str, Any], fmt: WireFormat) -> bytes:
        """A Prediction mapping (all prediction.avsc fields) → bytes in ``fmt``.

        :raises ValueError: the mapping does not fit prediction.avsc (or NaN in JSON), or Confluent
            format without a registry.
        :raises RegistryUnavailableError: registering the schema failed.
        """
        if fmt is WireFormat.JSON:
            return _PREDICTION_JSON.encode(prediction).encode("utf-8")
        if fmt is WireFormat.AVRO_SINGLE_OBJECT:
            return PREDICTION.header + PREDICTION.write(prediction)
        if fmt is WireFormat.AVRO_CONFLUENT:
            return _confluent_frame(self._confluent.schema_id(), PREDICTION.write(prediction))
        raise ValueError(f"unknown wire format {fmt!r}")


class RecordEncoder:
    """Encodes HousingRecord values (producers, tests). Registers the schema once for Confluent.

    :param schema_registry: needed only for ``WireFormat.AVRO_CONFLUENT``.
    :param subject: registry subject, ``"housing.records-value"`` by default.
    """

    def __init__(
        self, schema_registry: SchemaRegistryClient | None = None, *, subject: str = RECORDS.value_subject
    ) -> None:
        self._confluent = _Registering(schema_registry, subject, HOUSING_RECORD)

    def encode(self, record: Mapping[str, Any], fmt: WireFormat) -> bytes:
        """A record mapping → bytes. JSON writes the mapping as given (NaN as the ``NaN`` literal);
        Avro fills the optional fields with null and raises ValueError if it does not fit."""
        if fmt is WireFormat.JSON:
            return json.dumps(record, separators=(",", ":")).encode("utf-8")
        if fmt is WireFormat.AVRO_SINGLE_OBJECT:
            return HOUSING_RECORD.header + HOUSING_RECORD.write(record)
        if fmt is WireFormat.AVRO_CONFLUENT:
            return _confluent_frame(self._confluent.schema_id(), HOUSING_RECORD.write(record))
        raise ValueError(f"unknown wire format {fmt!r}")


def encode_record(
    record: Mapping[str, Any],
    fmt: WireFormat,
    *,
    schema_registry: SchemaRegistryClient | None = None,
    subject: str = RECORDS.value_subject,
) -> bytes:
    """One-off ``RecordEncoder(schema_registry, subject=subject).encode(record, fmt)``.

    The registry client caches registrations itself; a producer encoding many records should keep
    one RecordEncoder instead.
    """
    return RecordEncoder(schema_registry, subject=subject).encode(record, fmt)


def decode_prediction(value: bytes, schema_registry: SchemaRegistryClient | None = None) -> dict[str, Any]:
    """Prediction bytes in any wire format → dict (tests, demo, downstream readers).

    :raises DecodeError: the bytes are not a Prediction.
    """
    if not value:
        raise DecodeError("empty_message", "prediction value is empty")
    fmt = detect_format(value)
    if fmt is WireFormat.JSON:
        return _loads_object(value)
    fields, _ = _read_avro(value, fmt, PREDICTION, _WriterSchemas(schema_registry))
    return fields


# Control plane: JSON on the wire, checked against the Avro schema.


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
        fields, _ = _read_avro(value, fmt, schema, _WriterSchemas(None))
        return fields
    return _conform(schema, _loads_object(value), DecodeError)


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

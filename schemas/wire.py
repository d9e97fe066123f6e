"""How values are framed on the wire: the three formats, our Avro schemas, and the framing of each.

Three wire formats, told apart by the first bytes (``detect_format``):

- JSON: a UTF-8 JSON object.
- Avro single-object encoding: ``C3 01`` + the schema's 8-byte CRC-64-AVRO fingerprint
  (little-endian) + the Avro binary body. Needs no registry.
- Confluent wire format: ``00`` + 4-byte big-endian schema id + the Avro binary body; the writer
  schema comes from the schema registry (``schemas.registry``).

Everything here needs neither a registry nor confluent_kafka: the data-plane codecs (``schemas.codecs``) and
the control-plane contract (``schemas.control``) both build on it. Errors are ``DecodeError`` with a reason
code (see schemas.errors.REASONS); no json or fastavro exception leaks out of a reader.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas import AVRO_DIR
from schemas.errors import DecodeError, short_repr

logger = logging.getLogger(__name__)

_MEMORY_ADDRESS: Final = re.compile(r" object at 0x[0-9a-fA-F]+")

DEFAULT_MAX_BYTES: Final = 1_000_000
SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN: Final = 10
CONFLUENT_MAGIC: Final = b"\x00"
CONFLUENT_HEADER_LEN: Final = 5


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
            # fastavro names its buffer ("from <_io.BytesIO object at 0x7f...>"): drop the address, so the same
            # bad record gets the same dead-letter message in every run and process.
            detail = _MEMORY_ADDRESS.sub("", str(exc))
            raise DecodeError(
                "truncated_avro", f"Avro body of {len(payload)} bytes cannot be read: {type(exc).__name__}: {detail}"
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
PREDICTION_V1: Final = AvroSchema.load("prediction_v1.avsc")
"""Prediction before its ``role`` field: single-object values written with it are read as ``PREDICTION``."""
MODEL_UPDATE_EVENT: Final = AvroSchema.load("model_update_event.avsc")
SCORER_STATUS: Final = AvroSchema.load("scorer_status.avsc")


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


def loads_json_object(value: bytes) -> dict[str, Any]:
    """UTF-8 JSON object → dict, with decode-stage reasons.

    :raises DecodeError: not_utf8, malformed_json or not_an_object.
    """
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


def read_single_object(value: bytes, reader: AvroSchema) -> dict[str, Any]:
    """A single-object Avro value (``detect_format`` said so) written with ``reader``'s schema → dict.

    :raises DecodeError: unknown_fingerprint when it names another schema; truncated_avro.
    """
    if value[2:SINGLE_OBJECT_HEADER_LEN] != reader.fingerprint:
        raise DecodeError(
            "unknown_fingerprint",
            f"single-object fingerprint {value[2:SINGLE_OBJECT_HEADER_LEN].hex()} is not "
            f"{reader.full_name} ({reader.fingerprint.hex()})",
        )
    return reader.read(value[SINGLE_OBJECT_HEADER_LEN:])


def confluent_frame(schema_id: int, body: bytes) -> bytes:
    """An Avro body in the Confluent wire format: magic byte, 4-byte schema id, body."""
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + body


def confluent_schema_id(value: bytes) -> int:
    """The schema id of a Confluent-framed value (``detect_format`` said so)."""
    return int.from_bytes(value[1:CONFLUENT_HEADER_LEN], "big")

"""The data-plane codecs: housing records in (any wire format), predictions out (in the record's format).

``RecordDecoder`` turns housing-record bytes into a field mapping and raises ``DecodeError`` with a
reason code (see schemas.errors.REASONS); no json or fastavro exception leaks out. Field checks are
schemas.validation's job, so NaN passes decoding and is rejected there as ``not_finite``.
``PredictionEncoder`` (and ``PredictionJsonWriter`` for a whole batch) writes a prediction back in the format
its record arrived in; ``RecordEncoder`` writes records (producers, tests).

The framing itself is ``schemas.wire`` and the registry ``schemas.registry``; the names callers know from
here (``WireFormat``, ``detect_format``, ``registry_client``, the schemas) are re-exported. The control-plane
contract (model updates, scorer statuses) is ``schemas.control``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from schemas.errors import DecodeError, short_repr
from schemas.registry import SchemaRegistration, WriterSchemas, registry_client
from schemas.topics import PREDICTIONS, RECORDS
from schemas.wire import (
    CONFLUENT_HEADER_LEN,
    DEFAULT_MAX_BYTES,
    HOUSING_RECORD,
    PREDICTION,
    PREDICTION_V1,
    SINGLE_OBJECT_HEADER_LEN,
    SINGLE_OBJECT_MAGIC,
    AvroSchema,
    WireFormat,
    confluent_frame,
    confluent_schema_id,
    detect_format,
    loads_json_object,
    read_single_object,
)

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = [
    # defined here
    "PredictionEncoder",
    "PredictionJsonWriter",
    "RecordDecoder",
    "RecordEncoder",
    "decode_prediction",
    "encode_record",
    # re-exported from schemas.wire and schemas.registry, where callers have always found them
    "HOUSING_RECORD",
    "PREDICTION",
    "SINGLE_OBJECT_MAGIC",
    "WireFormat",
    "detect_format",
    "registry_client",
]

logger = logging.getLogger(__name__)


def _read_avro(
    value: bytes, fmt: WireFormat, reader: AvroSchema, writers: WriterSchemas
) -> tuple[dict[str, Any], int | None]:
    if fmt is WireFormat.AVRO_SINGLE_OBJECT:
        return read_single_object(value, reader), None
    schema_id = confluent_schema_id(value)
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
        self._writers = WriterSchemas(schema_registry)

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
            return loads_json_object(value), WireFormat.JSON, None
        fmt = detect_format(value)
        if fmt is WireFormat.JSON:
            return loads_json_object(value), fmt, None
        fields, schema_id = _read_avro(value, fmt, HOUSING_RECORD, self._writers)
        return fields, fmt, schema_id


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
                 scored_at: int, shadow_model_version: str | None, role: str = "champion") -> None:
        def text(value: str | None) -> str:
            return "null" if value is None else _json_string(value)

        self._model = (f',"model_name":{text(model_name)},"model_version":{text(model_version)}'
                       f',"model_alias":{text(model_alias)},"model_stage":{text(model_stage)}'
                       f',"scored_at":{_json_long(scored_at)},"source_topic":')
        self._tail = f',"shadow_model_version":{text(shadow_model_version)},"role":{text(role)}}}'
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

    def write_many(self, record_ids: Sequence[str], predictions: Iterable[float], source_topics: Iterable[str],
                   source_partitions: Iterable[int], source_offsets: Iterable[int],
                   event_times: Iterable[int | None],
                   shadow_predictions: Iterable[float | None] | None = None) -> list[bytes]:
        """``write`` for a batch (the same bytes, one value per record): one formatting pass and one ASCII
        encode for the batch. ``shadow_predictions`` None: every shadow prediction is null."""
        topic_texts = self._topics
        model, tail = self._model, self._tail
        texts: list[str] = []
        append = texts.append
        for record_id, prediction, topic, partition, offset, event_time, shadow_prediction in zip(
                record_ids, predictions, source_topics, source_partitions, source_offsets, event_times,
                repeat(None, len(record_ids)) if shadow_predictions is None else shadow_predictions, strict=True):
            topic_text = topic_texts.get(topic)
            if topic_text is None:
                topic_text = topic_texts[topic] = _json_string(topic)
            append(f'{{"record_id":{encode_basestring_ascii(record_id)},"prediction":{float(prediction)!r}'
                   f'{model}{topic_text},"source_partition":{partition:d},"source_offset":{offset:d}'
                   f',"event_time":{"null" if event_time is None else f"{event_time:d}"}'
                   f',"shadow_prediction":'
                   f'{"null" if shadow_prediction is None else repr(float(shadow_prediction))}{tail}')
        if not texts:
            return []
        # Escaped JSON text never holds a raw newline, so one encode of the joined batch splits back exactly.
        return "\n".join(texts).encode("ascii").split(b"\n")


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
        self._confluent = SchemaRegistration(schema_registry, subject or f"{topic}-value", PREDICTION)

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
            return confluent_frame(self._confluent.schema_id(), PREDICTION.write(prediction))
        raise ValueError(f"unknown wire format {fmt!r}")


class RecordEncoder:
    """Encodes HousingRecord values (producers, tests). Registers the schema once for Confluent.

    :param schema_registry: needed only for ``WireFormat.AVRO_CONFLUENT``.
    :param subject: registry subject, ``"housing.records-value"`` by default.
    """

    def __init__(
        self, schema_registry: SchemaRegistryClient | None = None, *, subject: str = RECORDS.value_subject
    ) -> None:
        self._confluent = SchemaRegistration(schema_registry, subject, HOUSING_RECORD)

    def encode(self, record: Mapping[str, Any], fmt: WireFormat) -> bytes:
        """A record mapping → bytes. JSON writes the mapping as given (NaN as the ``NaN`` literal);
        Avro fills the optional fields with null and raises ValueError if it does not fit."""
        if fmt is WireFormat.JSON:
            return json.dumps(record, separators=(",", ":")).encode("utf-8")
        if fmt is WireFormat.AVRO_SINGLE_OBJECT:
            return HOUSING_RECORD.header + HOUSING_RECORD.write(record)
        if fmt is WireFormat.AVRO_CONFLUENT:
            return confluent_frame(self._confluent.schema_id(), HOUSING_RECORD.write(record))
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
        return loads_json_object(value)
    if fmt is WireFormat.AVRO_SINGLE_OBJECT and value[2:SINGLE_OBJECT_HEADER_LEN] == PREDICTION_V1.fingerprint:
        # Written before the role field: resolved to today's schema (role takes its default, champion).
        return PREDICTION.read(value[SINGLE_OBJECT_HEADER_LEN:], PREDICTION_V1.parsed)
    fields, _ = _read_avro(value, fmt, PREDICTION, WriterSchemas(schema_registry))
    return fields

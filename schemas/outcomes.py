"""The Outcome contract: the observed value of a record scored earlier, on ``housing.outcomes``.

An Outcome is ``record_id`` (the housing record's, which its prediction carries), ``actual`` (the observed
median_house_value: finite, >= 0) and ``observed_at`` (epoch ms). Keyed by record id; JSON, Avro single-object
encoding or the Confluent wire format (``schemas/avro/outcome.avsc``), told apart per message like records.

``OutcomeDecoder.decode`` turns bytes into an ``Outcome`` or raises ``OutcomeError`` with one of
``OUTCOME_REASONS``: the reason an outcome is dead-lettered on ``housing.outcomes.dlq``. The evaluator adds the
reasons of the join (``unknown_record_id``, ``pending_limit``, ``duplicate_outcome``). ``OutcomeEncoder`` writes
outcomes (the producer, tests).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from schemas.errors import DecodeError, short_repr
from schemas.registry import SchemaRegistration, WriterSchemas
from schemas.validation import MAX_RECORD_ID_CHARS
from schemas.wire import (
    CONFLUENT_HEADER_LEN,
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

logger = logging.getLogger(__name__)

OUTCOME: Final = AvroSchema.load("outcome.avsc")
OUTCOME_FIELDS: Final = ("record_id", "actual", "observed_at")
DEFAULT_OUTCOMES_SUBJECT: Final = "housing.outcomes-value"
MAX_OUTCOME_BYTES: Final = 100_000
"""An outcome is three fields; anything larger is not one (dead-lettered as ``too_large``)."""

OUTCOME_REASONS: Final[dict[str, str]] = {
    # the bytes (the decode reasons of records, same codes)
    "empty_message": "the outcome's value is empty or null",
    "too_large": f"the outcome's value is over {MAX_OUTCOME_BYTES:,} bytes",
    "not_utf8": "a JSON outcome that is not valid UTF-8",
    "malformed_json": "not parseable as JSON",
    "not_an_object": "valid JSON whose top level is not an object",
    "bad_magic": "starts like Avro but the framing bytes are wrong or too short",
    "unknown_schema_id": "Confluent-framed Avro the registry cannot resolve to Outcome (or no registry)",
    "unknown_fingerprint": "single-object Avro that is not an Outcome",
    "truncated_avro": "an Avro body that cannot be read",
    # the fields
    "missing_field": "record_id, actual or observed_at is absent (or null)",
    "unknown_field": "a field Outcome does not define",
    "wrong_type": "actual not a number, observed_at not an integer, record_id not a string",
    "not_finite_actual": "actual is NaN or infinite",
    "negative_actual": "actual is below zero (a price)",
    "bad_record_id": f"record_id empty or over {MAX_RECORD_ID_CHARS} characters",
    "bad_observed_at": "observed_at is not milliseconds since the epoch (0 <= t < 2**63)",
    # the join (the evaluator's)
    "unknown_record_id": "no prediction with this record_id within the join window (an orphan outcome, or one "
    "that came later than the window)",
    "duplicate_outcome": "a second outcome for a record_id whose first outcome is still waiting for its prediction",
    "pending_limit": "the evaluator held EVALUATION_MAX_PENDING outcomes waiting for their predictions; the oldest "
    "went here instead of being dropped",
}
"""Why an outcome was dead-lettered (header ``dlq.reason``): a contract, add codes, never rename."""

_MAX_LONG: Final = 2**63


class OutcomeError(Exception):
    """An outcome that breaks the contract: dead-lettered with ``reason``, never retried."""

    retriable = False

    def __init__(self, reason: str, message: str) -> None:
        if reason not in OUTCOME_REASONS:
            raise ValueError(f"unknown outcome reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        """One of ``OUTCOME_REASONS``."""
        self.message = message[:300]
        """Human-readable, naming the field and value (short: it travels in a header)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One observed value."""

    record_id: str
    """The housing record's record_id (its prediction carries the same)."""
    actual: float
    """The observed median_house_value, finite and >= 0."""
    observed_at: int
    """When it was observed, epoch milliseconds."""

    def as_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "actual": self.actual, "observed_at": self.observed_at}


def outcome_from_fields(fields: dict[str, Any]) -> Outcome:
    """Decoded fields -> Outcome, checked.

    :raises OutcomeError: missing_field, unknown_field, wrong_type, not_finite_actual, negative_actual,
        bad_record_id or bad_observed_at.
    """
    for name in OUTCOME_FIELDS:
        if fields.get(name) is None:
            raise OutcomeError("missing_field", f"outcome field {name!r} is missing or null")
    extra = sorted(set(fields) - set(OUTCOME_FIELDS))
    if extra:
        raise OutcomeError("unknown_field", f"outcome has unknown field {short_repr(extra[0])}")
    record_id, actual, observed_at = fields["record_id"], fields["actual"], fields["observed_at"]
    if type(record_id) is not str:
        raise OutcomeError("wrong_type", f"record_id must be a string, got {type(record_id).__name__}")
    if not record_id or len(record_id) > MAX_RECORD_ID_CHARS:
        raise OutcomeError("bad_record_id", f"record_id must be 1..{MAX_RECORD_ID_CHARS} characters, "
                                            f"got {len(record_id)}")
    if type(actual) not in (int, float):
        raise OutcomeError("wrong_type", f"actual must be a number, got {type(actual).__name__} "
                                         f"{short_repr(actual)}")
    try:
        value = float(actual)
    except OverflowError:
        raise OutcomeError("not_finite_actual", "actual is too large for a double") from None
    if not math.isfinite(value):
        raise OutcomeError("not_finite_actual", f"actual must be finite, got {value!r}")
    if value < 0:
        raise OutcomeError("negative_actual", f"actual must be >= 0, got {value!r}")
    if type(observed_at) is not int:
        raise OutcomeError("wrong_type", f"observed_at must be an integer, got {type(observed_at).__name__} "
                                         f"{short_repr(observed_at)}")
    if not 0 <= observed_at < _MAX_LONG:
        raise OutcomeError("bad_observed_at", f"observed_at must be 0 <= t < 2**63 ms, got {observed_at}")
    return Outcome(record_id, value, observed_at)


class OutcomeDecoder:
    """Outcome values in any of the three wire formats -> ``Outcome``.

    :param schema_registry: resolves Confluent schema ids; without one, Confluent-framed values are
        ``unknown_schema_id``.
    """

    def __init__(self, schema_registry: SchemaRegistryClient | None = None) -> None:
        self._writers = WriterSchemas(schema_registry)

    def decode(self, value: bytes | None) -> Outcome:
        """:raises OutcomeError: with one of ``OUTCOME_REASONS``.
        :raises RegistryUnavailableError: the registry could not be asked (retry, not the outcome's fault)."""
        if not value:
            raise OutcomeError("empty_message", "outcome value is null" if value is None else "outcome value is empty")
        if len(value) > MAX_OUTCOME_BYTES:
            raise OutcomeError("too_large", f"outcome of {len(value)} bytes is over {MAX_OUTCOME_BYTES}")
        try:
            fmt = detect_format(value)
            if fmt is WireFormat.JSON:
                fields = loads_json_object(value)
            elif fmt is WireFormat.AVRO_SINGLE_OBJECT:
                fields = read_single_object(value, OUTCOME)
            else:
                writer = self._writers.resolve(confluent_schema_id(value), OUTCOME)
                fields = OUTCOME.read(value[CONFLUENT_HEADER_LEN:], writer)
        except DecodeError as exc:
            raise OutcomeError(exc.reason, exc.message) from None
        return outcome_from_fields(fields)


class OutcomeEncoder:
    """Outcome -> bytes in a wire format (the producer, tests).

    :param schema_registry: needed only for ``WireFormat.AVRO_CONFLUENT``.
    :param subject: registry subject (default ``housing.outcomes-value``).
    """

    def __init__(self, schema_registry: SchemaRegistryClient | None = None, *,
                 subject: str = DEFAULT_OUTCOMES_SUBJECT) -> None:
        self._confluent = SchemaRegistration(schema_registry, subject, OUTCOME)

    def encode(self, outcome: Outcome, fmt: WireFormat) -> bytes:
        """:raises ValueError: NaN in JSON, a value that does not fit the schema, Confluent without a registry."""
        fields = outcome.as_dict()
        if fmt is WireFormat.JSON:
            return json.dumps(fields, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if fmt is WireFormat.AVRO_SINGLE_OBJECT:
            return OUTCOME.header + OUTCOME.write(fields)
        if fmt is WireFormat.AVRO_CONFLUENT:
            return confluent_frame(self._confluent.schema_id(), OUTCOME.write(fields))
        raise ValueError(f"unknown wire format {fmt!r}")

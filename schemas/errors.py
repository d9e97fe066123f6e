"""Typed errors of decoding and validating messages, and the reason codes they carry.

Every rejected record ends up on the dead-letter topic with one of the codes in ``REASONS`` in its
``dlq.reason`` header, so the codes are a contract: add new ones, never rename.
"""

from __future__ import annotations

import logging
from typing import Final

logger = logging.getLogger(__name__)

DECODE: Final = "decode"
VALIDATE: Final = "validate"
PREDICT: Final = "predict"
PRODUCE: Final = "produce"
STAGES: Final = (DECODE, VALIDATE, PREDICT, PRODUCE)

REASONS: Final[dict[str, str]] = {
    # decode stage: the bytes are not a HousingRecord at all
    "empty_message": "the message value is empty or null",
    "too_large": "the message value is larger than the decoder's max_bytes (default 1,000,000)",
    "not_utf8": "a JSON message that is not valid UTF-8",
    "malformed_json": "not parseable as JSON (syntax error, nesting too deep, integer literal too long)",
    "not_an_object": "valid JSON whose top level is not an object (array, string, number, null)",
    "bad_magic": "starts like Avro (0x00 or 0xC3) but the framing bytes are wrong or too short",
    "unknown_schema_id": "Confluent-framed Avro whose schema id the registry does not know or cannot be read "
    "as a compatible Avro schema, or no schema registry is configured",
    "unknown_fingerprint": "single-object Avro whose CRC-64-AVRO fingerprint is not a known schema",
    "truncated_avro": "Avro payload that cannot be read: missing bytes, trailing bytes, corrupt data",
    # validate stage: a well-formed message whose fields break the HousingRecord contract
    "missing_field": "a required field is absent",
    "unknown_field": "a field that HousingRecord does not define",
    "null_value": "a required field is null (only total_bedrooms, record_id, event_time may be null)",
    "wrong_type": "a field of the wrong JSON type: bool, string, object or list where a number is "
    "expected (numbers given as strings are not coerced), or a non-string ocean_proximity",
    "not_finite": "NaN, Infinity or -Infinity (or a number too large for a double)",
    "negative_count": "a count or income below zero; total_rooms, population and households must be > 0 "
    "because features divide by them",
    "out_of_range": "outside California's bounds (latitude 32.0..42.5, longitude -124.6..-114.0) or "
    "implausible (housing_median_age > 200, median_income > 100)",
    "unknown_category": "ocean_proximity is not one of the five categories (exact, case-sensitive)",
    "bad_record_id": "record_id is not a non-empty string of at most 256 characters",
    "bad_event_time": "event_time is not an integer of milliseconds since the epoch (0 <= t < 2**63)",
    # predict stage: reported by consumer/core/scoring.py
    "predict_failed": "the model raised while predicting this record",
    "non_finite_prediction": "the model returned NaN or an infinite value for this record",
    # produce stage: reported by consumer/core/scoring.py for the Kafka layer
    "output_too_large": "the record's prediction is too large to produce: larger than the producer's "
    "message.max.bytes, or refused by the broker as larger than the predictions topic's max.message.bytes "
    "(a huge message key: the prediction keeps the input's key)",
}

MAX_MESSAGE_CHARS: Final = 300
"""Messages travel in Kafka headers: keep them short."""


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages naming a bad value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SchemaError(Exception):
    """A message that breaks the contract. Bad data, never worth retrying: it goes to the DLQ."""

    retriable = False
    stage: str = DECODE

    def __init__(self, reason: str, message: str, *, field: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        super().__init__(message)
        self.reason = reason
        """One of the codes in ``REASONS``."""
        self.message = message
        """Human-readable text naming the field and value."""
        self.field = field
        """The offending field, or None when the problem is the whole message."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r}, field={self.field!r})"


class DecodeError(SchemaError):
    """The bytes could not be turned into a mapping of fields."""

    stage = DECODE


class ValidationError(SchemaError):
    """The fields were decoded but break the HousingRecord contract."""

    stage = VALIDATE


class RegistryUnavailableError(Exception):
    """The schema registry could not be asked (network, auth, server error).

    Not the record's fault, so it is not a SchemaError and must not send the record to the DLQ:
    the caller retries or stops without committing.
    """

    retriable = True

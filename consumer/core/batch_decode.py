"""The decode and validate stage of a batch: bytes in, the valid records' feature columns and the dead letters out.

Most records are plain JSON objects that pass every rule, so the batch is taken in two routes:

- **fast**: a value that starts with ``{`` is parsed by orjson (about 4x faster than ``json``); every parsed
  batch is screened column-wise (``schemas.batch_validation.screen_records``); the rows that pass are valid and
  their columns are already built.
- **exact**: every other row (not ``{``, orjson refused it, or the screen did not pass it) goes through
  today's per-record path, ``RecordDecoder.decode`` then ``validate_record``, from the original bytes. That path
  alone decides what a row that is not certainly valid is, and names the reason exactly as it always has: the
  screen only ever lets through rows it can prove valid. (orjson also refuses what ``json`` reads differently:
  ``NaN`` literals, lone surrogates, integers past 64 bits.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import orjson

from consumer.core.features import FEATURE_COLUMNS, to_columns
from schemas.batch_validation import screen_records
from schemas.codecs import RecordDecoder, WireFormat
from schemas.errors import SchemaError
from schemas.validation import validate_record

logger = logging.getLogger(__name__)


class Message(Protocol):
    """What this stage reads of a consumed message (consumer.core.scoring.Incoming)."""

    @property
    def value(self) -> bytes | None: ...


M = TypeVar("M", bound=Message)
R = TypeVar("R")

_OPEN_BRACE = 0x7B
_OPTIONAL_DEFAULTS = (("total_bedrooms", None), ("record_id", None), ("event_time", None))


class DecodedBatch(NamedTuple, Generic[M, R]):
    valid: list[tuple[int, M, dict[str, Any], WireFormat]]
    """The valid records in input order: (index in the batch, message, clean record, wire format)."""
    rejected: list[tuple[int, R]]
    """Decode- and validate-stage dead letters with their index in the batch, in input order."""
    columns: dict[str, np.ndarray] | None
    """The valid records' feature columns (row i is valid[i]); None when no record is valid."""


def decode_validate(batch: Sequence[M], decoder: RecordDecoder,
                    reject: Callable[[M, str, str, str], R]) -> DecodedBatch[M, R]:
    """Decode and validate a batch; what the per-record path would give, in far less CPU for clean JSON.

    :param reject: builds a dead letter from (message, reason, stage, message text).
    :raises RegistryUnavailableError: the schema registry could not be asked (from the exact path).
    """
    loads = orjson.loads
    max_bytes = decoder.max_bytes
    parsed: list[dict[str, Any]] = []
    parsed_index: list[int] = []
    exact: list[int] = []
    for index, msg in enumerate(batch):
        value = msg.value
        if value and value[0] == _OPEN_BRACE and len(value) <= max_bytes:
            try:
                fields = loads(value)
            except orjson.JSONDecodeError:
                exact.append(index)
                continue
            if type(fields) is dict:
                parsed.append(fields)
                parsed_index.append(index)
                continue
        exact.append(index)

    screened: np.ndarray | None = None
    fast_columns: dict[str, np.ndarray] = {}
    if parsed:
        screened, fast_columns = screen_records(parsed)
        if not screened.all():
            exact.extend(parsed_index[row] for row in np.flatnonzero(~screened))
    if not exact:  # the common case: every record is clean JSON
        return DecodedBatch([_fast_valid(batch[index], index, fields) for index, fields in zip(parsed_index, parsed,
                                                                                               strict=True)],
                            [], fast_columns)

    exact_valid: dict[int, tuple[int, M, dict[str, Any], WireFormat]] = {}
    rejected: list[tuple[int, R]] = []
    for index in sorted(exact):
        msg = batch[index]
        try:
            fields, fmt, _ = decoder.decode(msg.value)
            record = validate_record(fields)
        except SchemaError as exc:
            rejected.append((index, reject(msg, exc.reason, exc.stage, exc.message)))
            continue
        exact_valid[index] = (index, msg, record, fmt)

    fast_rows = np.flatnonzero(screened) if screened is not None else np.empty(0, dtype=np.int64)
    fast_valid = {parsed_index[row]: _fast_valid(batch[parsed_index[row]], parsed_index[row], parsed[row])
                  for row in fast_rows.tolist()}
    if not exact_valid:
        valid = list(fast_valid.values())  # already in input order
        columns = {name: fast_columns[name][fast_rows] for name in FEATURE_COLUMNS} if valid else None
        return DecodedBatch(valid, rejected, columns)
    valid = [entry for _, entry in sorted({**fast_valid, **exact_valid}.items())]
    return DecodedBatch(valid, rejected, to_columns([record for _, _, record, _ in valid]))


def _fast_valid(msg: M, index: int, fields: dict[str, Any]) -> tuple[int, M, dict[str, Any], WireFormat]:
    # The clean record has every key validate_record's has (the absent optional fields as None)
    for name, default in _OPTIONAL_DEFAULTS:
        fields.setdefault(name, default)
    return index, msg, fields, WireFormat.JSON


__all__ = ["DecodedBatch", "decode_validate"]

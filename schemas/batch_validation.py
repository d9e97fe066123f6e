"""Column-wise screening of a batch of decoded HousingRecord fields: which rows certainly pass.

``screen_records`` checks a whole batch at once against the rules of ``schemas.validation`` (types, finiteness,
signs, ranges, categories, the optional fields' shapes, unknown fields) with numpy and C-level builtins, and
returns a mask of the rows that pass every rule plus their feature columns. It is conservative: a row it does
not pass may still be valid (for example an ``event_time`` just under 2**63, which float64 rounds up), so each
row outside the mask must go through ``validate_record``, which decides and names the first problem exactly as
it always has. A row inside the mask is one ``validate_record`` accepts, with the same feature values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Final

import numpy as np

from schemas.validation import ALLOWED_FIELDS, MAX_RECORD_ID_CHARS, NUMERIC_RULES, OCEAN_PROXIMITY_CATEGORIES

logger = logging.getLogger(__name__)

_NUMBER_TYPES: Final = frozenset({float, int})  # bool is neither: type() sees it as bool
_NULLABLE_NUMBER_TYPES: Final = _NUMBER_TYPES | {type(None)}
_CATEGORY = "ocean_proximity"
_CATEGORIES: Final = frozenset(OCEAN_PROXIMITY_CATEGORIES)
_MAX_LONG: Final = 2**63


def _column(records: Sequence[dict[str, Any]], name: str) -> list[Any]:
    """``record.get(name)`` of every record, at C speed (a missing field reads as None)."""
    return list(map(dict.get, records, repeat(name)))


def _numeric(values: list[Any], nullable: bool) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN for None or any non-number, mask of the entries of an acceptable type)."""
    rows = len(values)
    kinds = set(map(type, values))
    allowed = _NULLABLE_NUMBER_TYPES if nullable else _NUMBER_TYPES
    if kinds <= allowed:
        try:
            return np.array(values, dtype=np.float64), np.ones(rows, dtype=bool)
        except (OverflowError, ValueError, TypeError):
            pass  # an int too large for a double: the per-element route below flags it
    typed = np.fromiter((type(value) in allowed for value in values), dtype=bool, count=rows)
    numbers = np.full(rows, np.nan)
    for row in np.flatnonzero(typed):
        value = values[row]
        if value is not None:
            try:
                numbers[row] = float(value)
            except OverflowError:
                typed[row] = False
    return numbers, typed


def screen_records(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows that pass every validation rule, and the batch's feature columns.

    :param records: decoded field mappings (plain dicts, as the JSON and Avro decoders make them).
    :returns: ``(passed, columns)``: a bool mask over the rows, and one float64 array per numeric feature
        (NaN for a null ``total_bedrooms``) plus ``ocean_proximity`` as an object array, over ALL rows (only
        the passed rows' entries are meaningful). A passed row's entries equal ``validate_record``'s values.
    """
    rows = len(records)
    passed = np.fromiter(map(ALLOWED_FIELDS.issuperset, records), dtype=bool, count=rows)
    columns: dict[str, np.ndarray] = {}
    for name, nullable, minimum, exclusive, maximum in NUMERIC_RULES:
        values = _column(records, name)
        numbers, typed = _numeric(values, nullable)
        # NaN (a null, or a non-number) fails every comparison, so only a None of a nullable field is let
        # through, by the is-None mask; a NaN float value stays out (not_finite is validate_record's to name)
        good = typed & np.isfinite(numbers)
        if minimum is not None:
            good &= (numbers > minimum) if exclusive else (numbers >= minimum)
        if maximum is not None:
            good &= numbers <= maximum
        if nullable and type(None) in set(map(type, values)):
            good |= np.fromiter((value is None for value in values), dtype=bool, count=rows)
        passed &= good
        columns[name] = numbers

    categories = _column(records, _CATEGORY)
    if set(map(type, categories)) == {str}:
        passed &= np.fromiter(map(_CATEGORIES.__contains__, categories), dtype=bool, count=rows)
    else:  # None, numbers, lists (unhashable): only exact strings pass
        passed &= np.fromiter((type(value) is str and value in _CATEGORIES for value in categories),
                              dtype=bool, count=rows)
    category_column = np.empty(rows, dtype=object)
    category_column[:] = categories
    columns[_CATEGORY] = category_column

    record_ids = _column(records, "record_id")
    if set(map(type, record_ids)) == {str}:
        lengths = np.fromiter(map(len, record_ids), dtype=np.int64, count=rows)
        passed &= (lengths > 0) & (lengths <= MAX_RECORD_ID_CHARS)
    else:
        passed &= np.fromiter((value is None or (type(value) is str and 0 < len(value) <= MAX_RECORD_ID_CHARS)
                               for value in record_ids), dtype=bool, count=rows)

    event_times = _column(records, "event_time")
    kinds = set(map(type, event_times))
    times: np.ndarray | None = None
    if kinds == {int}:
        try:
            times = np.array(event_times, dtype=np.float64)
        except OverflowError:
            times = None
    if times is not None:
        # float64 rounds up near 2**63, never down past it: a bad value is never passed, a few good ones are
        # left to validate_record
        passed &= (times >= 0) & (times < float(_MAX_LONG))
    elif kinds != {type(None)}:
        passed &= np.fromiter((value is None or (type(value) is int and 0 <= value < _MAX_LONG)
                               for value in event_times), dtype=bool, count=rows)
    return passed, columns

"""Validation of decoded HousingRecord fields: the record contract beyond what JSON or Avro types say.

``validate_record`` runs once per record on the hot path, so it is plain Python over precomputed
tables. Checks run in a fixed order and the first problem wins: fields in schema order (missing,
null, type, finite, sign, range, category), then the optional fields, then unknown fields.
No coercion: ``"880"`` for a number is ``wrong_type``, ``true`` is not a number, ``NaN`` is
``not_finite``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import ValidationError, short_repr

logger = logging.getLogger(__name__)

OCEAN_PROXIMITY_CATEGORIES: Final = ("<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN")
_CATEGORIES: Final = frozenset(OCEAN_PROXIMITY_CATEGORIES)

MAX_RECORD_ID_CHARS: Final = 256
_MAX_LONG: Final = 2**63

# (field, nullable, minimum, minimum is exclusive, maximum) in schema order.
# Sign violations are negative_count, the others out_of_range. Zero rooms, people or households
# would make the per-household features divide by zero, so those must be > 0.
NUMERIC_RULES: Final[tuple[tuple[str, bool, float | None, bool, float | None], ...]] = (
    ("longitude", False, -124.6, False, -114.0),
    ("latitude", False, 32.0, False, 42.5),
    ("housing_median_age", False, 0.0, False, 200.0),
    ("total_rooms", False, 0.0, True, None),
    ("total_bedrooms", True, 0.0, False, None),
    ("population", False, 0.0, True, None),
    ("households", False, 0.0, True, None),
    ("median_income", False, 0.0, False, 100.0),
)
_GEO_FIELDS: Final = frozenset({"longitude", "latitude"})

REQUIRED_FIELDS: Final = tuple(rule[0] for rule in NUMERIC_RULES if not rule[1]) + ("ocean_proximity",)
OPTIONAL_FIELDS: Final = ("total_bedrooms", "record_id", "event_time")
ALLOWED_FIELDS: Final = frozenset(rule[0] for rule in NUMERIC_RULES) | {
    "ocean_proximity",
    "record_id",
    "event_time",
}


def _number(name: str, value: Any) -> float:
    # type() not isinstance(): bool is an int subclass and must not pass as a number
    kind = type(value)
    if kind is float:
        number = value
    elif kind is int:
        try:
            number = float(value)
        except OverflowError:
            raise ValidationError(
                "not_finite", f"field {name!r} = {short_repr(value)} is too large for a double", field=name
            ) from None
    elif kind is str:
        raise ValidationError(
            "wrong_type",
            f"field {name!r} must be a number, got the string {short_repr(value)} (strings are not coerced)",
            field=name,
        )
    elif isinstance(value, float | int) and not isinstance(value, bool):
        number = float(value)  # numpy scalars and other real-number subclasses
    else:
        raise ValidationError(
            "wrong_type",
            f"field {name!r} must be a number, got {type(value).__name__} {short_repr(value)}",
            field=name,
        )
    if not math.isfinite(number):
        raise ValidationError("not_finite", f"field {name!r} = {short_repr(value)} is not finite", field=name)
    return number


def validate_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Check decoded fields against the HousingRecord contract and return a clean record.

    :param fields: the mapping a decoder produced (JSON object or Avro record).
    :returns: a new dict with the 8 numeric features as float (``total_bedrooms`` float or None),
        ``ocean_proximity`` str, ``record_id`` str or None and ``event_time`` int or None.
    :raises ValidationError: for the first problem found, with its reason code and field.
    """
    clean: dict[str, Any] = {}
    for name, nullable, minimum, exclusive, maximum in NUMERIC_RULES:
        if name not in fields:
            if nullable:
                clean[name] = None
                continue
            raise ValidationError("missing_field", f"required field {name!r} is missing", field=name)
        value = fields[name]
        if value is None:
            if nullable:
                clean[name] = None
                continue
            raise ValidationError("null_value", f"required field {name!r} is null", field=name)
        number = _number(name, value)
        if minimum is not None and (number <= minimum if exclusive else number < minimum):
            if name in _GEO_FIELDS:
                raise ValidationError(
                    "out_of_range",
                    f"field {name!r} = {number!r} is outside California [{minimum}, {maximum}]",
                    field=name,
                )
            bound = "> 0" if exclusive else ">= 0"
            raise ValidationError("negative_count", f"field {name!r} = {number!r} must be {bound}", field=name)
        if maximum is not None and number > maximum:
            where = "outside California" if name in _GEO_FIELDS else "out of range"
            raise ValidationError(
                "out_of_range",
                f"field {name!r} = {number!r} is {where} [{minimum}, {maximum}]",
                field=name,
            )
        clean[name] = number

    if "ocean_proximity" not in fields:
        raise ValidationError("missing_field", "required field 'ocean_proximity' is missing", field="ocean_proximity")
    category = fields["ocean_proximity"]
    if category is None:
        raise ValidationError("null_value", "required field 'ocean_proximity' is null", field="ocean_proximity")
    if type(category) is not str:
        raise ValidationError(
            "wrong_type",
            f"field 'ocean_proximity' must be a string, got {type(category).__name__} {short_repr(category)}",
            field="ocean_proximity",
        )
    if category not in _CATEGORIES:
        raise ValidationError(
            "unknown_category",
            f"field 'ocean_proximity' = {short_repr(category)} is not one of {list(OCEAN_PROXIMITY_CATEGORIES)}",
            field="ocean_proximity",
        )
    clean["ocean_proximity"] = category

    record_id = fields.get("record_id")
    if record_id is not None and (type(record_id) is not str or not record_id or len(record_id) > MAX_RECORD_ID_CHARS):
        raise ValidationError(
            "bad_record_id",
            f"field 'record_id' must be a non-empty string of at most {MAX_RECORD_ID_CHARS} characters, "
            f"got {type(record_id).__name__} {short_repr(record_id)}",
            field="record_id",
        )
    clean["record_id"] = record_id

    event_time = fields.get("event_time")
    if event_time is not None and (type(event_time) is not int or not 0 <= event_time < _MAX_LONG):
        raise ValidationError(
            "bad_event_time",
            "field 'event_time' must be an integer of milliseconds since the epoch, "
            f"got {type(event_time).__name__} {short_repr(event_time)}",
            field="event_time",
        )
    clean["event_time"] = event_time

    if not ALLOWED_FIELDS.issuperset(fields):
        unknown = sorted(str(key) for key in fields if key not in ALLOWED_FIELDS)
        raise ValidationError(
            "unknown_field",
            f"unknown field {short_repr(unknown[0])} (unknown fields: {unknown[:5]})",
            field=unknown[0],
        )
    return clean

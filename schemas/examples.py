"""The canonical example HousingRecord: the first row of data/housing.csv, without the target.

One definition for every place that needs "a good record": the producer's bad-record corpus (each
bad kind is this with one defect), the consumer's check prediction for a model without a stored
input example, and the tests. Read-only; copy it (``dict(EXAMPLE_RECORD)`` or
``{**EXAMPLE_RECORD, "field": value}``) to change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

EXAMPLE_RECORD: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "longitude": -122.23,
        "latitude": 37.88,
        "housing_median_age": 41.0,
        "total_rooms": 880.0,
        "total_bedrooms": 129.0,
        "population": 322.0,
        "households": 126.0,
        "median_income": 8.3252,
        "ocean_proximity": "NEAR BAY",
    }
)
"""The nine feature fields of a valid record, in schema order (no ``record_id`` / ``event_time``)."""

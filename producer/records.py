"""Record sources for the producer: pure generators, no Kafka, no encoding.

Owns where records come from (the CSV, a seeded synthetic generator, JSON lines on stdin), how they
get their ``record_id``, and how malformed records are mixed in on purpose. Everything here yields
plain dicts (or ``OutgoingMessage`` tuples) lazily, so the publisher pulls exactly as many as it
sends and encoding happens once per record, in producer/publish.py.

Per-record cost matters (the producer must sustain 20k+ records/s on one core), so the generators
avoid per-record allocations beyond the record dict itself.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

from producer.bad_records import BAD_RECORDS, BadRecord
from schemas.features import (
    CATEGORICAL_COLUMN,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    OCEAN_PROXIMITY_CATEGORIES,
    TARGET_COLUMN,
)

logger = logging.getLogger(__name__)

Record = dict[str, Any]

__all__ = [
    "CATEGORICAL_COLUMN",
    "FEATURE_COLUMNS",
    "NUMERIC_COLUMNS",
    "OCEAN_PROXIMITY_CATEGORIES",
    "TARGET_COLUMN",
    "OutgoingMessage",
    "SourceError",
    "csv_records",
    "inject_bad",
    "stdin_records",
    "synthetic_records",
    "with_ids",
]

# The ranges observed in the public dataset; synthetic values stay inside them so a validator
# built from the data accepts every synthetic record.
BOUNDS: Mapping[str, tuple[float, float]] = {
    "longitude": (-124.35, -114.31),
    "latitude": (32.54, 41.95),
    "housing_median_age": (1.0, 52.0),
    "total_rooms": (2.0, 39320.0),
    "total_bedrooms": (1.0, 6445.0),
    "population": (3.0, 35682.0),
    "households": (1.0, 6082.0),
    "median_income": (0.4999, 15.0001),
}
DEFAULT_CSV_PATH = Path(__file__).resolve().parent.parent / "data" / "housing.csv"


class SourceError(ValueError):
    """A source's input cannot be read as records; the message says where (file, line)."""


class OutgoingMessage(NamedTuple):
    """One message for the records topic, before encoding."""

    key: bytes
    """Message key: the record id (``rec-<n>``) or ``bad-<kind>-<n>`` for injected bad records."""
    record: Record | None
    """A good record, to be stamped with ``event_time`` and encoded by the publisher."""
    value: bytes | None = None
    """Bytes sent exactly as they are (injected malformed input); set when ``record`` is None."""
    bad_kind: str | None = None
    """The BAD_RECORDS kind when this is a malformed record on purpose."""


def csv_records(path: str | Path = DEFAULT_CSV_PATH, *, loop: bool = False) -> Iterator[Record]:
    """Rows of the housing CSV as feature dicts (the 9 features; the target column is dropped).

    Numeric columns become floats; an empty ``total_bedrooms`` becomes None.

    :param path: a CSV with the public dataset's header (``data/housing.csv`` by default).
    :param loop: repeat the file forever (rows are parsed once and each pass yields fresh dicts).
    :raises SourceError: at call time, when the file cannot be read or parsed.
    """
    # Read now (not on first next()) so a missing or broken file fails before anything connects.
    rows = _read_csv(Path(path))
    if not loop:
        return iter(rows)
    if not rows:
        raise SourceError(f"{path}: no rows to loop over")
    return _repeat(rows)


def _repeat(rows: list[Record]) -> Iterator[Record]:
    # Yield copies of the cached rows: callers add ids in place, so each pass needs its own dicts.
    while True:
        for row in rows:
            yield dict(row)


def _read_csv(path: Path) -> list[Record]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read CSV {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise SourceError(f"{path}: empty file, expected a header")
        index = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in FEATURE_COLUMNS if c not in index]
        if missing:
            raise SourceError(f"{path}: missing columns {', '.join(missing)}")
        numeric = [(c, index[c]) for c in NUMERIC_COLUMNS]
        cat = index[CATEGORICAL_COLUMN]
        rows: list[Record] = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                record: Record = {c: (float(row[i]) if row[i] != "" else None) for c, i in numeric}
                record[CATEGORICAL_COLUMN] = row[cat]
            except (ValueError, IndexError) as exc:
                raise SourceError(f"{path}:{line_no}: {exc}") from None
            rows.append(record)
    logger.debug("read %d rows from %s", len(rows), path)
    return rows


class _Region(NamedTuple):
    lon: float
    lat: float
    lon_sd: float
    lat_sd: float
    proximity: tuple[str, ...]
    proximity_cum: tuple[float, ...]


def _region(lon: float, lat: float, lon_sd: float, lat_sd: float, proximity: Mapping[str, float]) -> _Region:
    names = tuple(proximity)
    return _Region(lon, lat, lon_sd, lat_sd, names, tuple(itertools.accumulate(proximity.values())))


# Population centres of the dataset, with the ocean_proximity mix seen around each; ISLAND is
# Santa Catalina, rare in the data (5 of 20,640 rows) and rare here.
_REGIONS = (
    _region(-118.25, 34.05, 0.35, 0.25, {"<1H OCEAN": 0.75, "NEAR OCEAN": 0.2, "INLAND": 0.05}),
    _region(-122.2, 37.75, 0.2, 0.2,
            {"NEAR BAY": 0.55, "<1H OCEAN": 0.25, "NEAR OCEAN": 0.15, "INLAND": 0.05}),
    _region(-117.1, 32.8, 0.2, 0.15, {"<1H OCEAN": 0.6, "NEAR OCEAN": 0.35, "INLAND": 0.05}),
    _region(-120.5, 37.0, 0.9, 1.0, {"INLAND": 0.95, "<1H OCEAN": 0.05}),
    _region(-121.5, 38.9, 0.6, 0.8, {"INLAND": 0.9, "<1H OCEAN": 0.1}),
    _region(-123.8, 40.5, 0.3, 0.8, {"NEAR OCEAN": 0.6, "INLAND": 0.4}),
    _region(-118.33, 33.35, 0.02, 0.02, {"ISLAND": 1.0}),
)
_REGION_CUM = tuple(itertools.accumulate((0.38, 0.2, 0.1, 0.15, 0.1, 0.069, 0.001)))
NULL_BEDROOMS_PROBABILITY = 0.01  # about the dataset's share of missing total_bedrooms (207 rows)


def synthetic_records(seed: int | None = 0) -> Iterator[Record]:
    """An endless stream of plausible records; the same seed gives the same stream.

    Locations cluster around the dataset's population centres inside California's bounding box;
    rooms, bedrooms and population scale with households as in the data; ``total_bedrooms`` is
    None about 1% of the time.

    :param seed: seed for the generator's own ``random.Random`` (None: different every run).
    """
    rng = random.Random(seed)
    rand, gauss, lognorm, randint = rng.random, rng.gauss, rng.lognormvariate, rng.randint
    lon_lo, lon_hi = BOUNDS["longitude"]
    lat_lo, lat_hi = BOUNDS["latitude"]
    b_rooms, b_beds, b_pop, b_hh = (BOUNDS[c] for c in ("total_rooms", "total_bedrooms", "population",
                                                         "households"))
    inc_lo, inc_hi = BOUNDS["median_income"]
    while True:
        region = _pick(_REGIONS, _REGION_CUM, rand())
        lon = min(lon_hi, max(lon_lo, gauss(region.lon, region.lon_sd)))
        lat = min(lat_hi, max(lat_lo, gauss(region.lat, region.lat_sd)))
        households = _clamp(round(lognorm(6.0, 0.55)), b_hh)
        rooms = _clamp(round(households * min(12.0, max(1.5, gauss(5.3, 1.2)))), b_rooms)
        bedrooms: float | None = _clamp(round(rooms * min(0.5, max(0.1, gauss(0.21, 0.04)))), b_beds)
        if rand() < NULL_BEDROOMS_PROBABILITY:
            bedrooms = None
        population = _clamp(round(households * min(8.0, max(1.0, gauss(2.9, 0.7)))), b_pop)
        income = min(inc_hi, max(inc_lo, round(lognorm(1.25, 0.45), 4)))
        yield {
            "longitude": round(lon, 2),
            "latitude": round(lat, 2),
            "housing_median_age": float(randint(1, 52)),
            "total_rooms": rooms,
            "total_bedrooms": bedrooms,
            "population": population,
            "households": households,
            "median_income": income,
            "ocean_proximity": _pick(region.proximity, region.proximity_cum, rand()),
        }


def _pick(items: tuple[Any, ...], cumulative: tuple[float, ...], u: float) -> Any:
    # Weights need not sum to exactly 1: scale the draw to the last cumulative weight.
    u *= cumulative[-1]
    for item, edge in zip(items, cumulative, strict=True):
        if u < edge:
            return item
    return items[-1]


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    return float(min(bounds[1], max(bounds[0], value)))


def stdin_records(stream: Iterable[str | bytes] | IO[str] | IO[bytes]) -> Iterator[Record]:
    """JSON objects, one per line (blank lines skipped), passed through as they are except that a
    ``median_house_value`` (the target, e.g. in a replay of the CSV) is dropped.

    :param stream: any iterable of lines, e.g. ``sys.stdin`` or ``sys.stdin.buffer``.
    :raises SourceError: a line that is not a JSON object, naming its line number.
    """
    for line_no, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise SourceError(f"stdin line {line_no}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise SourceError(f"stdin line {line_no}: expected a JSON object, got {type(obj).__name__}")
        obj.pop(TARGET_COLUMN, None)
        yield obj


def with_ids(records: Iterable[Record], start_id: int = 0) -> Iterator[Record]:
    """Give every record a ``record_id`` (``rec-<n>``, n counting from ``start_id``) unless it has one.

    Records are updated in place (the sources yield fresh dicts), which keeps this cheap.
    """
    for n, record in enumerate(records, start_id):
        if not record.get("record_id"):
            record["record_id"] = f"rec-{n}"
        yield record


def as_messages(records: Iterable[Record]) -> Iterator[OutgoingMessage]:
    """Wrap records with ids as messages keyed by their ``record_id``, injecting nothing."""
    for record in records:
        yield OutgoingMessage(str(record["record_id"]).encode(), record)


def inject_bad(
    records: Iterable[Record],
    fraction: float,
    seed: int | None = 0,
    *,
    corpus: Mapping[str, BadRecord] | None = None,
    first_bad_id: int = 0,
) -> Iterator[OutgoingMessage]:
    """Messages for ``records``, with malformed ones mixed in at about ``fraction`` of all messages.

    Bad records are inserted between good ones (good records are never dropped), chosen and placed
    deterministically by ``seed``; each is keyed ``bad-<kind>-<n>`` with n counting from
    ``first_bad_id``. With ``fraction == 1`` only bad records come out and the stream never ends.

    :param records: records that already carry a ``record_id``.
    :param fraction: share of bad messages among all messages, 0 to 1.
    :param seed: seed for the choice of slots and kinds.
    :param corpus: kind -> BadRecord (default: ``producer.bad_records.BAD_RECORDS``).
    """
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ValueError(f"bad fraction must be between 0 and 1, got {fraction}")
    if fraction == 0.0:
        yield from as_messages(records)
        return
    if corpus is None:
        corpus = BAD_RECORDS
    if not corpus:
        raise ValueError("no bad records to inject: the corpus is empty")
    kinds = sorted(corpus)
    values = [corpus[kind].value for kind in kinds]
    rng = random.Random(seed)
    rand, randrange = rng.random, rng.randrange
    n = first_bad_id
    it = iter(records)
    while True:
        if rand() < fraction:
            i = randrange(len(kinds))
            yield OutgoingMessage(f"bad-{kinds[i]}-{n}".encode(), None, values[i], kinds[i])
            n += 1
            continue
        record = next(it, None)
        if record is None:
            return
        yield OutgoingMessage(str(record["record_id"]).encode(), record)

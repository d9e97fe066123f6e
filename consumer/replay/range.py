"""What a replay covers: the ``--from`` / ``--to`` forms, and their resolution to offsets per partition. Pure: the
Kafka look-ups (watermarks, offsets for a timestamp) are handed in, so every rule here is unit-tested.

Forms (``--from`` is inclusive, ``--to`` exclusive: ``[from, to)``):

- ``2024-05-01T10:00:00Z``, ``2024-05-01T12:00:00+02:00``, ``2024-05-01``: an ISO-8601 time (no zone: UTC);
- ``1714557600000``: epoch milliseconds (13 digits; a small number is refused as a likely offset or seconds);
- ``offset:1234``: that offset on every partition;
- ``0:100,1:200``: per partition; only the partitions named are replayed;
- ``earliest`` (``--from`` only): the first offset still kept; ``now`` (``--to`` only, its default): the end of each
  partition when the replay starts (records arriving later are not replayed).

A time resolves per partition to the first offset whose record timestamp is at or after it (Kafka's
``offsets_for_times``; the end of the partition when none is).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from consumer.replay.errors import RangeError

Role = Literal["from", "to"]
Watermarks = Mapping[int, tuple[int, int]]
"""partition -> (low, high): the first offset kept and the offset after the last one."""
OffsetsForTime = Callable[[int], Mapping[int, "int | None"]]
"""epoch ms -> partition -> the first offset with a timestamp at or after it (None: no such record yet)."""

EARLIEST = "earliest"
NOW = "now"
OFFSET_PREFIX = "offset:"
MIN_EPOCH_MS = 100_000_000_000
"""1973-03-03 in epoch ms: a bare number below this is an offset or epoch seconds typed by mistake, not a time."""
_PER_PARTITION = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeBound:
    """A point in time, epoch ms."""

    ms: int
    text: str

    def describe(self) -> str:
        return f"{datetime.fromtimestamp(self.ms / 1000, UTC).isoformat(timespec='milliseconds')} ({self.ms})"


@dataclass(frozen=True)
class OffsetBound:
    """Offsets: the same one on every partition (``every``), or one per named partition (``per_partition``)."""

    every: int | None = None
    per_partition: Mapping[int, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.every is not None:
            return f"offset {self.every}"
        return ", ".join(f"{p}:{o}" for p, o in sorted(self.per_partition.items()))


@dataclass(frozen=True)
class EdgeBound:
    """``earliest`` (the low watermarks) or ``now`` (the high watermarks when the replay starts)."""

    edge: Literal["earliest", "now"]

    def describe(self) -> str:
        return self.edge


Bound = TimeBound | OffsetBound | EdgeBound


@dataclass(frozen=True)
class PartitionRange:
    """The offsets ``[start, end)`` of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """Offsets in the range (records, less any aborted upstream records and transaction markers)."""
        return self.end - self.start


@dataclass(frozen=True)
class ResolvedRange:
    ranges: list[PartitionRange]
    """One per replayed partition, by partition."""
    notes: list[str]
    """Adjustments worth a log line (an offset below the low watermark moved up to it)."""

    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)

    def describe(self) -> str:
        """``0:100-200, 1:150-300`` (end exclusive)."""
        return ", ".join(f"{r.partition}:{r.start}-{r.end}" for r in self.ranges) or "nothing"


def parse_bound(text: str, role: Role) -> Bound:
    """One ``--from`` / ``--to`` value.

    :raises RangeError: not one of the forms (the message lists them).
    """
    flag = f"--{role}"
    value = text.strip()
    if not value:
        raise RangeError(f"{flag} is empty: {FORMS}")
    lowered = value.lower()
    if lowered in (EARLIEST, NOW):
        if (role == "from") != (lowered == EARLIEST):
            raise RangeError(f"{flag} {value}: '{EARLIEST}' is for --from, '{NOW}' for --to")
        return EdgeBound("earliest" if lowered == EARLIEST else "now")
    if lowered.startswith(OFFSET_PREFIX):
        number = value[len(OFFSET_PREFIX):].strip()
        if not number.isdigit():
            raise RangeError(f"{flag} {value}: an offset is a number >= 0 (offset:1234)")
        return OffsetBound(every=int(number))
    if _PER_PARTITION.match(value):
        per_partition: dict[int, int] = {}
        for item in value.split(","):
            partition, offset = (int(part) for part in item.split(":"))
            if partition in per_partition:
                raise RangeError(f"{flag} {value}: partition {partition} is named twice")
            per_partition[partition] = offset
        return OffsetBound(per_partition=per_partition)
    if value.isdigit():
        ms = int(value)
        if ms < MIN_EPOCH_MS:
            raise RangeError(f"{flag} {value}: a bare number is a time in epoch milliseconds (13 digits, e.g. "
                             f"1714557600000); for an offset write offset:{value} (or per partition 0:{value})")
        return TimeBound(ms, value)
    return TimeBound(parse_time_ms(value, flag), value)


def parse_time_ms(value: str, flag: str) -> int:
    """An ISO-8601 date or date-time in epoch ms; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RangeError(f"{flag} {value}: not a time, an offset or a keyword: {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


FORMS = ("use an ISO-8601 time (2024-05-01T10:00:00Z; no zone means UTC), epoch milliseconds (1714557600000), "
         "offset:N (every partition), P:N,P:N (per partition), earliest (--from) or now (--to)")


def check_order(start: Bound, end: Bound) -> None:
    """Before any look-up: two times must not be inverted.

    :raises RangeError: ``--from`` is after ``--to``.
    """
    if isinstance(start, TimeBound) and isinstance(end, TimeBound) and start.ms > end.ms:
        raise RangeError(f"--from {start.describe()} is after --to {end.describe()}")


def resolve_range(start: Bound, end: Bound, watermarks: Watermarks,
                  offsets_for_time: OffsetsForTime) -> ResolvedRange:
    """The offsets ``[start, end)`` of each partition to replay.

    :param watermarks: every partition of the topic -> (low, high), read when the replay starts.
    :param offsets_for_time: looks up a time (called at most once per time bound).
    :raises RangeError: an unknown partition, an offset past a partition's end, a bound before what the topic
        still keeps, or ``--from`` after ``--to`` on some partition.
    """
    check_order(start, end)
    partitions = _partitions(start, end, watermarks)
    notes: list[str] = []
    starts = _offsets(start, "from", partitions, watermarks, offsets_for_time)
    ends = _offsets(end, "to", partitions, watermarks, offsets_for_time)
    ranges = []
    for partition in partitions:
        low, high = watermarks[partition]
        first, last = starts[partition], ends[partition]
        if last < low:
            raise RangeError(f"--to {end.describe()} is offset {last} on partition {partition}, before the first "
                             f"offset the topic still keeps ({low}): those records are gone (retention)")
        if first < low:
            notes.append(f"partition {partition}: --from offset {first} was deleted by retention; starting at the "
                         f"first offset kept, {low}")
            first = low
        if first > last:
            raise RangeError(f"--from {start.describe()} is after --to {end.describe()} on partition {partition} "
                             f"(offset {first} > {last})")
        ranges.append(PartitionRange(partition, first, last))
    return ResolvedRange(ranges, notes)


def _partitions(start: Bound, end: Bound, watermarks: Watermarks) -> list[int]:
    named = [set(b.per_partition) for b in (start, end) if isinstance(b, OffsetBound) and b.per_partition]
    if len(named) == 2 and named[0] != named[1]:
        raise RangeError(f"--from names partitions {sorted(named[0])} and --to {sorted(named[1])}: per-partition "
                         "bounds must name the same partitions")
    wanted = sorted(named[0]) if named else sorted(watermarks)
    unknown = [p for p in wanted if p not in watermarks]
    if unknown:
        raise RangeError(f"partition(s) {unknown} do not exist: the topic has partitions 0..{len(watermarks) - 1}")
    return wanted


def _offsets(bound: Bound, role: Role, partitions: list[int], watermarks: Watermarks,
             offsets_for_time: OffsetsForTime) -> dict[int, int]:
    if isinstance(bound, EdgeBound):
        index = 0 if bound.edge == "earliest" else 1
        return {p: watermarks[p][index] for p in partitions}
    if isinstance(bound, TimeBound):
        found = offsets_for_time(bound.ms)
        resolved = {}
        for partition in partitions:
            offset = found.get(partition)
            resolved[partition] = watermarks[partition][1] if offset is None else offset
        return resolved
    offsets = {p: bound.every if bound.every is not None else bound.per_partition[p] for p in partitions}
    for partition, offset in offsets.items():
        high = watermarks[partition][1]
        if offset > high:  # ``high`` itself is fine: the end, exclusive
            hint = " (use --to now for the end)" if role == "to" else ""
            raise RangeError(f"--{role} offset {offset} on partition {partition} is past its end, offset {high}{hint}")
    return offsets

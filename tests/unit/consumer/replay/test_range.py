"""consumer.replay.range: the --from / --to forms and their resolution to offsets per partition (pure)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from consumer.replay.errors import RangeError
from consumer.replay.range import (
    EdgeBound,
    OffsetBound,
    PartitionRange,
    TimeBound,
    parse_bound,
    resolve_range,
)

MAY_1_10H_UTC = 1714557600000
WATERMARKS = {0: (0, 100), 1: (10, 80), 2: (0, 0)}


class Times:
    """offsets_for_time of a topic: a fixed answer per time, and the calls it got."""

    def __init__(self, answers: Mapping[int, Mapping[int, int | None]]) -> None:
        self.answers = answers
        self.calls: list[int] = []

    def __call__(self, ms: int) -> Mapping[int, int | None]:
        self.calls.append(ms)
        return self.answers[ms]


@pytest.mark.parametrize(("text", "ms"), [
    ("2024-05-01T10:00:00Z", MAY_1_10H_UTC),
    ("2024-05-01T12:00:00+02:00", MAY_1_10H_UTC),
    ("2024-05-01T10:00:00", MAY_1_10H_UTC),  # no zone: UTC
    ("2024-05-01T10:00:00.250Z", MAY_1_10H_UTC + 250),
    ("2024-05-01", MAY_1_10H_UTC - 10 * 3_600_000),
    (str(MAY_1_10H_UTC), MAY_1_10H_UTC),
])
def test_times_in_iso_8601_or_epoch_ms(text: str, ms: int) -> None:
    bound = parse_bound(text, "from")
    assert isinstance(bound, TimeBound) and bound.ms == ms


def test_offsets_for_every_partition_or_per_partition() -> None:
    assert parse_bound("offset:1234", "from") == OffsetBound(every=1234)
    assert parse_bound("0:100, 1:200", "to") == OffsetBound(per_partition={0: 100, 1: 200})
    assert parse_bound("3:0", "from") == OffsetBound(per_partition={3: 0})


def test_earliest_is_for_from_and_now_for_to() -> None:
    assert parse_bound("earliest", "from") == EdgeBound("earliest")
    assert parse_bound("NOW", "to") == EdgeBound("now")
    with pytest.raises(RangeError, match="'earliest' is for --from"):
        parse_bound("now", "from")
    with pytest.raises(RangeError, match="'earliest' is for --from"):
        parse_bound("earliest", "to")


@pytest.mark.parametrize(("text", "says"), [
    ("100", "for an offset write offset:100"),  # an offset typed bare is not a time in 1970
    ("1714557600", "epoch milliseconds"),  # epoch seconds
    ("offset:-3", "an offset is a number"),
    ("offset:abc", "an offset is a number"),
    ("0:1,0:2", "partition 0 is named twice"),
    ("yesterday", "ISO-8601"),
    ("2024-13-01", "ISO-8601"),
    ("  ", "--from is empty"),
])
def test_what_is_not_a_bound_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(RangeError, match=says):
        parse_bound(text, "from")


def test_times_resolve_per_partition_and_a_time_after_the_last_record_is_the_end() -> None:
    start, end = TimeBound(1000, "a"), TimeBound(2000, "b")
    times = Times({1000: {0: 5, 1: 12, 2: None}, 2000: {0: 50, 1: None, 2: None}})
    resolved = resolve_range(start, end, WATERMARKS, times)
    assert resolved.ranges == [PartitionRange(0, 5, 50), PartitionRange(1, 12, 80), PartitionRange(2, 0, 0)]
    assert resolved.size == 45 + 68
    assert times.calls == [1000, 2000]  # once per bound, for every partition at once
    assert resolved.describe() == "0:5-50, 1:12-80, 2:0-0"


def test_earliest_to_now_is_every_partition_between_its_watermarks() -> None:
    resolved = resolve_range(EdgeBound("earliest"), EdgeBound("now"), WATERMARKS, Times({}))
    assert resolved.ranges == [PartitionRange(0, 0, 100), PartitionRange(1, 10, 80), PartitionRange(2, 0, 0)]


def test_per_partition_bounds_replay_only_the_partitions_they_name() -> None:
    resolved = resolve_range(OffsetBound(per_partition={1: 20}), EdgeBound("now"), WATERMARKS, Times({}))
    assert resolved.ranges == [PartitionRange(1, 20, 80)]
    both = resolve_range(OffsetBound(per_partition={0: 1, 1: 20}), OffsetBound(per_partition={0: 9, 1: 30}),
                         WATERMARKS, Times({}))
    assert both.ranges == [PartitionRange(0, 1, 9), PartitionRange(1, 20, 30)]
    with pytest.raises(RangeError, match="must name the same partitions"):
        resolve_range(OffsetBound(per_partition={0: 1}), OffsetBound(per_partition={0: 9, 1: 30}), WATERMARKS,
                      Times({}))
    with pytest.raises(RangeError, match=r"partition\(s\) \[7\] do not exist"):
        resolve_range(OffsetBound(per_partition={7: 1}), EdgeBound("now"), WATERMARKS, Times({}))


def test_an_offset_past_the_end_is_refused_and_the_end_itself_is_fine() -> None:
    watermarks = {0: (0, 100)}
    assert resolve_range(OffsetBound(every=0), OffsetBound(every=100), watermarks, Times({})).ranges == \
        [PartitionRange(0, 0, 100)]
    with pytest.raises(RangeError, match=r"--to offset 101 on partition 0 is past its end, offset 100 \(use --to now"):
        resolve_range(OffsetBound(every=0), OffsetBound(every=101), watermarks, Times({}))
    with pytest.raises(RangeError, match="--from offset 101"):
        resolve_range(OffsetBound(every=101), EdgeBound("now"), watermarks, Times({}))


def test_a_start_deleted_by_retention_moves_up_to_what_is_kept_and_says_so() -> None:
    resolved = resolve_range(OffsetBound(every=3), EdgeBound("now"), {0: (0, 100), 1: (10, 80)}, Times({}))
    assert resolved.ranges == [PartitionRange(0, 3, 100), PartitionRange(1, 10, 80)]
    assert len(resolved.notes) == 1 and "partition 1" in resolved.notes[0] and "10" in resolved.notes[0]
    with pytest.raises(RangeError, match="before the first offset the topic still keeps"):
        resolve_range(EdgeBound("earliest"), OffsetBound(every=5), {0: (10, 80)}, Times({}))


def test_from_after_to_is_refused_times_before_any_look_up() -> None:
    times = Times({})
    with pytest.raises(RangeError, match="is after --to"):
        resolve_range(TimeBound(2000, "b"), TimeBound(1000, "a"), WATERMARKS, times)
    assert times.calls == []
    with pytest.raises(RangeError, match=r"after --to .* on partition 0 \(offset 9 > 2\)"):
        resolve_range(OffsetBound(every=9), OffsetBound(every=2), {0: (0, 100)}, Times({}))
    # A time and an offset compare once resolved.
    with pytest.raises(RangeError, match="on partition 0"):
        resolve_range(TimeBound(1000, "a"), OffsetBound(every=2), {0: (0, 100)}, Times({1000: {0: 40}}))


def test_an_empty_range_is_a_range() -> None:
    resolved = resolve_range(TimeBound(1000, "a"), TimeBound(1000, "a"), {0: (0, 100)}, Times({1000: {0: 40}}))
    assert resolved.ranges == [PartitionRange(0, 40, 40)] and resolved.size == 0

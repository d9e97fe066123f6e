"""consumer.replay.progress: the marker committed with each replay offset, and where a re-run resumes (pure)."""

from __future__ import annotations

import pytest

from consumer.replay.errors import ProgressConflict
from consumer.replay.progress import Committed, Marker, ReplayJob, plan_resume
from consumer.replay.range import PartitionRange

JOB = ReplayJob("out", "housing", "3")
RANGES = [PartitionRange(0, 100, 200), PartitionRange(1, 50, 60)]


def marker(job: ReplayJob = JOB, start: int = 100, end: int = 200) -> str:
    return Marker(job, start, end).encode()


def test_the_marker_reads_back_and_anything_else_is_no_marker() -> None:
    assert Marker.decode(marker()) == Marker(JOB, 100, 200)
    assert len(marker()) < 200  # offset metadata is capped by the broker (offset.metadata.max.bytes, 4096)
    for other in (None, "", "not json", "[]", '{"kind": "someone-else"}', '{"kind": "housing-replay/1"}'):
        assert Marker.decode(other) is None


def test_without_progress_every_partition_starts_at_its_range() -> None:
    plan = plan_resume(RANGES, JOB, {0: Committed(-1001), 1: Committed(-1001)}, "g")
    assert plan.positions == {0: 100, 1: 50} and plan.already_replayed == 0 and not plan.resumed
    assert plan_resume(RANGES, JOB, {}, "g").positions == {0: 100, 1: 50}


def test_the_same_replay_resumes_at_its_committed_offsets() -> None:
    committed = {0: Committed(150, marker()), 1: Committed(60, marker(start=50, end=60))}
    plan = plan_resume(RANGES, JOB, committed, "g")
    assert plan.positions == {0: 150, 1: 60} and plan.already_replayed == 50 + 10 and plan.resumed


def test_the_same_replay_with_an_earlier_end_has_nothing_left_where_it_got_further() -> None:
    committed = {0: Committed(250, marker(end=300))}  # an earlier run (--to now, later) got to 250
    plan = plan_resume(RANGES, JOB, committed, "g")
    assert plan.positions == {0: 200, 1: 50} and plan.already_replayed == 100


def test_a_finished_different_replay_leaves_this_one_to_start_afresh() -> None:
    other = ReplayJob("out", "housing", "2")
    plan = plan_resume(RANGES, JOB, {0: Committed(400, marker(other, 0, 400))}, "g")
    assert plan.positions == {0: 100, 1: 50} and plan.already_replayed == 0
    # The same version from another start is another replay too.
    assert plan_resume(RANGES, JOB, {0: Committed(90, marker(start=0, end=90))}, "g").positions[0] == 100


def test_an_unfinished_different_replay_is_refused_naming_it() -> None:
    other = ReplayJob("out", "housing", "2")
    with pytest.raises(ProgressConflict, match=r"unfinished replay \(housing v2 into out, partition 0 at offset "
                                               r"150 of 0-400\)"):
        plan_resume(RANGES, JOB, {0: Committed(150, marker(other, 0, 400))}, "g")


def test_offsets_no_replay_wrote_are_refused() -> None:
    with pytest.raises(ProgressConflict, match="no housing-replay wrote"):
        plan_resume(RANGES, JOB, {1: Committed(55, None)}, "housing-scorer")

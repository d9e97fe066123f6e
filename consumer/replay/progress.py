"""The replay's progress marker, and where a re-run resumes. Pure.

Every replay transaction commits, with its outputs, the next input offset of each partition it advanced to the
replay group (never the live group), each with this marker as the offset's metadata: which replay wrote it
(output topic, model name and version) and the partition's range. A re-run reads them back before it starts:

- the same replay (same output topic, model version and range start): it resumes at the committed offsets, so a
  replay that crashed or was interrupted is finished with each input scored once in the output topic;
- an earlier replay that is finished (its committed offset reached its range's end): this one starts afresh;
- an earlier replay that is not finished: refused (``ProgressConflict``), since resuming it with other
  arguments, or starting over, would leave its output half of one thing and half of another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumer.replay.errors import ProgressConflict
from consumer.replay.range import PartitionRange

MARKER_KIND = "housing-replay/1"


@dataclass(frozen=True)
class ReplayJob:
    """What makes two runs the same replay (with the partition's range start)."""

    output_topic: str
    model_name: str
    model_version: str

    def describe(self) -> str:
        return f"{self.model_name} v{self.model_version} into {self.output_topic}"


@dataclass(frozen=True)
class Marker:
    """The metadata of one committed replay offset."""

    job: ReplayJob
    start: int
    end: int

    def encode(self) -> str:
        return json.dumps({"kind": MARKER_KIND, "output": self.job.output_topic, "model": self.job.model_name,
                           "version": self.job.model_version, "start": self.start, "end": self.end},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Marker | None:
        """The marker in an offset's metadata; None when the metadata is no replay marker."""
        try:
            fields = json.loads(text or "")
            if not isinstance(fields, dict) or fields.get("kind") != MARKER_KIND:
                return None
            job = ReplayJob(str(fields["output"]), str(fields["model"]), str(fields["version"]))
            return cls(job, int(fields["start"]), int(fields["end"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Committed:
    """The replay group's committed offset of one partition, as Kafka returns it."""

    offset: int
    """The next offset to read; negative when nothing was committed."""
    metadata: str | None = None


@dataclass(frozen=True)
class ResumePlan:
    positions: dict[int, int]
    """partition -> the offset to start reading at (== the range's end: nothing left there)."""
    already_replayed: int
    """Offsets of the range an earlier run of this replay committed."""

    @property
    def resumed(self) -> bool:
        return self.already_replayed > 0


def plan_resume(ranges: Sequence[PartitionRange], job: ReplayJob, committed: Mapping[int, Committed],
                replay_group: str) -> ResumePlan:
    """Where each partition starts, given what the replay group has committed.

    :raises ProgressConflict: the group holds offsets no replay wrote, or an unfinished different replay.
    """
    positions: dict[int, int] = {}
    already = 0
    for r in ranges:
        found = committed.get(r.partition)
        if found is None or found.offset < 0:
            positions[r.partition] = r.start
            continue
        marker = Marker.decode(found.metadata)
        if marker is None:
            raise ProgressConflict(
                f"replay group {replay_group!r} has offset {found.offset} committed on partition {r.partition} that "
                "no housing-replay wrote: it is some consumer's group; choose another --replay-group")
        if marker.job == job and marker.start == r.start:
            position = min(max(found.offset, r.start), r.end)
            positions[r.partition] = position
            already += position - r.start
        elif found.offset >= marker.end:  # that replay finished: its progress says nothing about this one
            positions[r.partition] = r.start
        else:
            raise ProgressConflict(
                f"replay group {replay_group!r} holds an unfinished replay ({marker.job.describe()}, partition "
                f"{r.partition} at offset {found.offset} of {marker.start}-{marker.end}): re-run that replay to "
                "finish it, or give this one its own --output-topic or --replay-group")
    return ResumePlan(positions, already)

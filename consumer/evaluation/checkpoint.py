"""The evaluator's checkpoint: everything it knows, as of a position in both input topics. Pure.

A checkpoint holds the sums (``LiveStats``), the counts of what fell out of the join, the next offset to read of
every partition of both inputs, and the offsets of the rows still waiting (pending). It is written in the same
Kafka transaction as the dead letters of the outcomes read since the previous one, so after a crash (kill -9)
the evaluator resumes from the last committed checkpoint, reads each partition again from its oldest pending
offset, puts back exactly the rows that were pending (``Resume.classify``: ``restore``), skips those already
counted (``skip``) and handles the rest as new: no matched pair lost, none counted twice, every dead letter once.

Encoding: JSON; the pending offsets of a partition as zlib-compressed little-endian deltas (base64), so a
10-minute window of pending rows stays well under the checkpoint topic's message limit.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np

FORMAT: Final = 1
Side = Literal["predictions", "outcomes"]
SIDES: Final[tuple[Side, ...]] = ("predictions", "outcomes")


class CheckpointError(ValueError):
    """The bytes are not a checkpoint this evaluator can resume from."""


def encode_offsets(offsets: list[int]) -> str:
    array = np.asarray(sorted(offsets), dtype=np.int64)
    deltas = np.diff(array, prepend=np.int64(0)).astype("<i8")
    return base64.b64encode(zlib.compress(deltas.tobytes(), 6)).decode("ascii")


def decode_offsets(text: str) -> list[int]:
    deltas = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<i8")
    return [int(v) for v in np.cumsum(deltas)]


@dataclass
class Checkpoint:
    """The evaluator's state at a cut through both inputs."""

    evaluator_id: str
    written_at: int
    watermark: int
    topics: dict[str, str]
    """side -> topic name: a checkpoint of other topics is not resumed from."""
    next_offsets: dict[str, dict[int, int]]
    """side -> partition -> the next offset to read."""
    pending: dict[str, dict[int, list[int]]]
    """side -> partition -> offsets of the rows still waiting, sorted."""
    stats: list[dict[str, Any]]
    """``LiveStats.to_state()``."""
    counts: list[tuple[str, str, str, int]]
    """(kind, model_version, role, rows) of the join's unmatched kinds."""
    matched: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    """Outcomes dead-lettered, by reason (decode and join reasons)."""
    bad_predictions: int = 0
    """Prediction messages that could not be read (counted, logged: the scorer's own output)."""
    health: dict[str, Any] = field(default_factory=dict)
    """``HealthStats.to_state()`` (the deciding evaluator's canary health, with the dead-letter topic's
    positions); empty when not deciding, and in checkpoints written before it existed."""

    def encode(self) -> bytes:
        document = {
            "format": FORMAT, "evaluator_id": self.evaluator_id, "written_at": self.written_at,
            "watermark": self.watermark, "topics": self.topics,
            "next_offsets": {side: {str(p): o for p, o in parts.items()} for side, parts in self.next_offsets.items()},
            "pending": {side: {str(p): encode_offsets(o) for p, o in parts.items() if o}
                        for side, parts in self.pending.items()},
            "stats": self.stats, "counts": [list(c) for c in self.counts], "matched": self.matched,
            "dead_lettered": self.dead_lettered, "bad_predictions": self.bad_predictions,
        }
        if self.health:
            document["health"] = self.health
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, value: bytes) -> Checkpoint:
        """:raises CheckpointError: not JSON, another format, or fields missing."""
        try:
            document = json.loads(value)
            if document.get("format") != FORMAT:
                raise CheckpointError(f"checkpoint format {document.get('format')!r}, expected {FORMAT}")
            return cls(
                evaluator_id=str(document["evaluator_id"]), written_at=int(document["written_at"]),
                watermark=int(document["watermark"]), topics=dict(document["topics"]),
                next_offsets={side: {int(p): int(o) for p, o in parts.items()}
                              for side, parts in document["next_offsets"].items()},
                pending={side: {int(p): decode_offsets(o) for p, o in parts.items()}
                         for side, parts in document["pending"].items()},
                stats=list(document["stats"]),
                counts=[(str(k), str(v), str(r), int(n)) for k, v, r, n in document["counts"]],
                matched=int(document["matched"]), dead_lettered={str(k): int(v) for k, v in
                                                                 document["dead_lettered"].items()},
                bad_predictions=int(document.get("bad_predictions", 0)),
                health=dict(document.get("health") or {}),
            )
        except CheckpointError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as exc:
            raise CheckpointError(f"not a readable checkpoint: {type(exc).__name__}: {exc}") from None


Verdict = Literal["restore", "skip", "new"]


class Resume:
    """Where to start reading after a checkpoint, and what each message read again is.

    :param checkpoint: the last committed checkpoint, or None (a first start: everything is new).
    """

    def __init__(self, checkpoint: Checkpoint | None) -> None:
        self._next: Mapping[str, Mapping[int, int]] = checkpoint.next_offsets if checkpoint else {}
        self._pending: dict[str, dict[int, set[int]]] = {
            side: {p: set(offsets) for p, offsets in parts.items()}
            for side, parts in (checkpoint.pending.items() if checkpoint else ())
        }
        self._restores_left = sum(len(s) for parts in self._pending.values() for s in parts.values())

    def start_offset(self, side: str, partition: int) -> int | None:
        """The first offset to read of a partition: its oldest pending row, else its next offset; None for a
        partition the checkpoint does not know (the start policy decides)."""
        following = self._next.get(side, {}).get(partition)
        if following is None:
            return None
        pending = self._pending.get(side, {}).get(partition)
        return min(min(pending), following) if pending else following

    def classify(self, side: str, partition: int, offset: int) -> Verdict:
        """``restore`` a row that was pending at the checkpoint, ``skip`` one it had counted already, ``new``
        one past it."""
        following = self._next.get(side, {}).get(partition)
        if following is None or offset >= following:
            return "new"
        pending = self._pending.get(side, {}).get(partition)
        if pending is not None and offset in pending:
            pending.discard(offset)
            self._restores_left -= 1
            return "restore"
        return "skip"

    def not_read_back(self, side: str) -> dict[int, list[int]]:
        """partition -> offsets pending at the checkpoint not read back yet: still pending, so the next
        checkpoint must name them too."""
        return {p: sorted(offsets) for p, offsets in self._pending.get(side, {}).items() if offsets}

    def unread(self, side: str) -> int:
        """Rows of ``side`` pending at the checkpoint not read back yet: pending all the same (a snapshot that
        left them out would show them as gone until they are read again)."""
        return sum(len(offsets) for offsets in self._pending.get(side, {}).values())

    @property
    def restores_left(self) -> int:
        """Pending rows of the checkpoint not read back yet (0 once the state is whole again)."""
        return self._restores_left

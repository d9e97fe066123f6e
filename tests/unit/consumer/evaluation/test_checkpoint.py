"""consumer.evaluation.checkpoint: the encoding round-trips, and a restart from a checkpoint (reading each
partition again from its oldest pending row) ends in exactly the state of a run without the restart."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.evaluation.checkpoint import Checkpoint, CheckpointError, Resume, decode_offsets, encode_offsets
from consumer.evaluation.join import Joiner, ObservedOutcome, ScoredPrediction
from consumer.evaluation.stats import LiveStats
from schemas.outcomes import Outcome

WINDOW = 30_000


def test_offsets_round_trip_compactly() -> None:
    offsets = sorted({int(x) for x in np.random.default_rng(1).integers(0, 10**7, 100_000)})
    text = encode_offsets(offsets)
    assert decode_offsets(text) == offsets
    assert len(text) < 8 * len(offsets)
    assert decode_offsets(encode_offsets([])) == []


def test_a_checkpoint_round_trips_and_garbage_is_refused() -> None:
    checkpoint = Checkpoint("ev", 1, 2, {"predictions": "p", "outcomes": "o"}, {"predictions": {0: 5}},
                            {"predictions": {0: [1, 3]}, "outcomes": {}}, [], [("orphan_outcome", "", "", 2)],
                            matched=3, dead_lettered={"unknown_record_id": 2}, bad_predictions=1)
    assert Checkpoint.decode(checkpoint.encode()) == checkpoint
    for bad in (b"", b"{}", b'{"format": 99}', b"\xff"):
        with pytest.raises(CheckpointError):
            Checkpoint.decode(bad)


# A tiny log: (side, partition) -> messages in offset order; what the evaluator reads, in an interleaving.
Message = tuple[str, int, int, tuple[str, float, int]]


def make_log(seed: int) -> list[Message]:
    rng = np.random.default_rng(seed)
    out: list[Message] = []
    offsets = {("predictions", 0): 0, ("predictions", 1): 0, ("outcomes", 0): 0}
    for i in range(600):
        t = i * 100
        partition = int(rng.integers(0, 2))
        key = ("predictions", partition)
        out.append(("predictions", partition, offsets[key], (f"r{i}", float(rng.normal(100, 10)), t)))
        offsets[key] += 1
        if rng.random() < 0.85:  # some outcomes never come; some come later than the window
            delay = int(rng.choice([rng.integers(-2_000, 20_000), rng.integers(40_000, 60_000)], p=[0.9, 0.1]))
            out.append(("outcomes", 0, -1, (f"r{i}", float(rng.normal(100, 10)), t + delay)))
    # outcomes in observed order, offsets in that order
    outcomes = sorted((m for m in out if m[0] == "outcomes"), key=lambda m: m[3][2])
    outcomes = [("outcomes", 0, n, m[3]) for n, m in enumerate(outcomes)]
    merged = [m for m in out if m[0] == "predictions"] + outcomes
    merged.sort(key=lambda m: m[3][2])
    return merged


def feed(joiner: Joiner, messages: list[Message], resume: Resume, next_offsets: dict[str, dict[int, int]]) -> None:
    for side, partition, offset, (record_id, value, at) in messages:
        next_offsets.setdefault(side, {})
        next_offsets[side][partition] = max(next_offsets[side].get(partition, 0), offset + 1)
        if resume.classify(side, partition, offset) == "skip":
            continue
        if side == "predictions":
            joiner.add_predictions([ScoredPrediction(record_id, value, "1", "champion", at, None, None, partition,
                                                     offset)])
        else:
            joiner.add_outcomes([ObservedOutcome(Outcome(record_id, value, at), partition, offset, None, b"")])
        joiner.advance(at - 5_000)


def state(joiner: Joiner) -> tuple[object, ...]:
    return (joiner.matched, sorted(joiner.counts.items()), joiner.stats.to_state(), sorted(joiner.predictions),
            sorted(joiner.outcomes))


@pytest.mark.parametrize("cut", [50, 333, 700, 1000])
def test_a_restart_from_the_checkpoint_ends_in_the_state_of_an_uninterrupted_run(cut: int) -> None:
    log = make_log(3)
    whole = Joiner(LiveStats(WINDOW, 1_000), WINDOW, 10_000)
    feed(whole, log, Resume(None), {})

    first = Joiner(LiveStats(WINDOW, 1_000), WINDOW, 10_000)
    positions: dict[str, dict[int, int]] = {}
    feed(first, log[:cut], Resume(None), positions)
    dead_before = len(first.take_dead_letters())
    pending_p, pending_o = first.pending_offsets()
    checkpoint = Checkpoint.decode(Checkpoint(
        "ev", 0, first.watermark, {}, positions, {"predictions": pending_p, "outcomes": pending_o},
        first.stats.to_state(), [(k, v, r, n) for (k, v, r), n in first.counts.items()], first.matched).encode())
    # ... killed here; whatever it did after the checkpoint is lost with its open transaction.

    second = Joiner(LiveStats(WINDOW, 1_000), WINDOW, 10_000)
    second.stats.restore(checkpoint.stats)
    second.counts.update({(k, v, r): n for k, v, r, n in checkpoint.counts})
    second.matched, second.watermark = checkpoint.matched, checkpoint.watermark
    resume = Resume(checkpoint)
    starts = {(side, p): resume.start_offset(side, p) for side, parts in positions.items() for p in parts}
    again = [m for m in log if (m[0], m[1]) not in starts or m[2] >= (starts[(m[0], m[1])] or 0)]
    feed(second, again, resume, {})
    assert resume.restores_left == 0
    assert state(second) == state(whole)
    assert dead_before + len(second.take_dead_letters()) == len(whole.take_dead_letters())

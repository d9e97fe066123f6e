"""The join of outcomes to predictions by record id, in a bounded window. Pure: no Kafka, no clock.

A prediction waits for its outcome (and an outcome that came first for its prediction) at
most ``window_ms`` of event time and ``max_pending`` rows per side. Event time is the predictions' ``scored_at``
and the outcomes' ``observed_at``; ``advance(watermark)`` moves the join's clock (the runner's watermark: the
slower of the two inputs) and expires what waited longer than the window. A prediction and an outcome match
when their times are at most the window apart. Predictions wait in arrival order and expire from the oldest
arrival on (an input's skew delays a row's expiry, never its count); outcomes, whose lateness differs from
record to record, expire by their own ``observed_at`` (a heap), so an old one read after newer ones does not
wait behind them. A row that arrives older than the window already is counted at once. Nothing falls out
silently; every row ends as one of:

- matched: a pair for the prediction's (version, role), and one for the shadow's when the prediction has one;
- ``prediction_without_outcome``: expired (counted per version and role, the shadow's too);
- ``prediction_dropped_limit``: the oldest beyond ``max_pending`` (counted per version and role);
- ``duplicate_prediction``: a second prediction of a record id still waiting (counted, the first is kept);
- ``orphan_outcome``: an outcome that expired without a prediction: dead-lettered ``unknown_record_id``;
- ``late_outcome``: an outcome whose prediction was more than the window away: dead-lettered ``unknown_record_id``;
- ``outcome_dropped_limit``: the oldest beyond ``max_pending``: dead-lettered ``pending_limit``;
- ``duplicate_outcome``: a second outcome of a record id still waiting: dead-lettered ``duplicate_outcome``.

The rows still waiting are the join's state besides the sums: ``pending_offsets`` names them by partition and
offset for the checkpoint, and ``restore_prediction`` / ``restore_outcome`` put them back after a restart.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Final, NamedTuple

import numpy as np

from consumer.evaluation.stats import GroupKey, LiveStats
from schemas.outcomes import Outcome

PREDICTION_KINDS: Final = ("prediction_without_outcome", "prediction_dropped_limit", "duplicate_prediction")
OUTCOME_KINDS: Final = ("orphan_outcome", "late_outcome", "outcome_dropped_limit", "duplicate_outcome")
UNMATCHED_KINDS: Final = PREDICTION_KINDS + OUTCOME_KINDS
SHADOW_ROLE: Final = "shadow"
"""The role of a prediction's shadow pair (a group of its own, beside the prediction's version and role)."""


@dataclass(frozen=True, slots=True)
class ScoredPrediction:
    """What the join needs of one prediction message."""

    record_id: str
    prediction: float
    model_version: str
    role: str
    scored_at: int
    shadow_prediction: float | None
    shadow_model_version: str | None
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class ObservedOutcome:
    """One outcome message, decoded, with its bytes (a dead letter carries them unchanged)."""

    outcome: Outcome
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class DeadOutcome:
    """An outcome to dead-letter: the original message and why."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    reason: str
    message: str


class _Waiting(NamedTuple):
    scored_at: int
    prediction: float
    group: int
    shadow_prediction: float | None
    shadow_group: int
    partition: int
    offset: int


class Joiner:
    """The pending rows of both sides, the counts of what fell out, and the sums of what matched.

    :param stats: where matched pairs go.
    :param window_ms: how far apart in event time a prediction and its outcome may be, and how long either waits.
    :param max_pending: rows per side at most.
    """

    def __init__(self, stats: LiveStats, window_ms: int, max_pending: int) -> None:
        self.stats = stats
        self.window_ms = window_ms
        self.max_pending = max_pending
        self.keys: list[GroupKey] = []
        self._index: dict[GroupKey, int] = {}
        self.predictions: dict[str, _Waiting] = {}
        self.outcomes: dict[str, ObservedOutcome] = {}
        self._outcome_expiry: list[tuple[int, str]] = []
        """Heap of (observed_at, record id) of the waiting outcomes: outcomes arrive in any order of event time
        (lateness varies per record), so the insertion order cannot say which expired (an old orphan read after
        newer outcomes would wait behind them). Entries of rows matched or dropped meanwhile are skipped."""
        self.counts: Counter[tuple[str, str, str]] = Counter()
        """(kind, model_version, role) -> rows; outcome kinds have version and role ''."""
        self.matched = 0
        self.watermark = 0
        self._dead: list[DeadOutcome] = []
        self._pairs: tuple[list[int], list[float], list[float], list[int], list[int]] = ([], [], [], [], [])

    # --- input ---------------------------------------------------------------------------------------------

    def add_predictions(self, rows: Iterable[ScoredPrediction]) -> None:
        predictions, outcomes, window = self.predictions, self.outcomes, self.window_ms
        for row in rows:
            waiting = self._waiting(row)
            if row.record_id in predictions:
                self._count_prediction("duplicate_prediction", waiting)
                continue
            observed = outcomes.get(row.record_id)
            if observed is not None:
                del outcomes[row.record_id]
                if abs(observed.outcome.observed_at - row.scored_at) <= window:
                    self._pair(waiting, observed.outcome)
                    continue
                self._dead_letter(observed, "late_outcome", "unknown_record_id",
                                  self._apart(observed.outcome.observed_at, row.scored_at))
            if row.scored_at < self.watermark - window:  # older than the window already: it would only wait
                self._count_prediction("prediction_without_outcome", waiting)
                continue
            predictions[row.record_id] = waiting
        self._limit()
        self._flush_pairs()

    def add_outcomes(self, rows: Iterable[ObservedOutcome]) -> None:
        predictions, outcomes, window = self.predictions, self.outcomes, self.window_ms
        for observed in rows:
            record_id = observed.outcome.record_id
            waiting = predictions.get(record_id)
            if waiting is not None:
                if abs(observed.outcome.observed_at - waiting.scored_at) <= window:
                    del predictions[record_id]
                    self._pair(waiting, observed.outcome)
                else:
                    self._dead_letter(observed, "late_outcome", "unknown_record_id",
                                      self._apart(observed.outcome.observed_at, waiting.scored_at))
                continue
            if record_id in outcomes:
                self._dead_letter(observed, "duplicate_outcome", "duplicate_outcome",
                                  f"an outcome for {record_id!r} is already waiting for its prediction")
                continue
            if observed.outcome.observed_at < self.watermark - window:
                self._dead_letter(observed, "orphan_outcome", "unknown_record_id",
                                  f"no prediction for {record_id!r} within the {window / 1000:g} s window")
                continue
            outcomes[record_id] = observed
            heapq.heappush(self._outcome_expiry, (observed.outcome.observed_at, record_id))
        self._limit()
        self._flush_pairs()

    def restore_prediction(self, row: ScoredPrediction) -> None:
        """Put back a prediction that was waiting at the checkpoint (no matching, no counting)."""
        self.predictions[row.record_id] = self._waiting(row)

    def restore_outcome(self, observed: ObservedOutcome) -> None:
        """Put back an outcome that was waiting at the checkpoint."""
        self.outcomes[observed.outcome.record_id] = observed
        heapq.heappush(self._outcome_expiry, (observed.outcome.observed_at, observed.outcome.record_id))

    def advance(self, watermark_ms: int) -> None:
        """Move the clock (never back) and expire the rows that waited longer than the window."""
        if watermark_ms <= self.watermark:
            return
        self.watermark = watermark_ms
        cutoff = watermark_ms - self.window_ms
        expired_predictions = []
        for record_id, waiting in self.predictions.items():  # insertion order: stop at the first still in time
            if waiting.scored_at >= cutoff:
                break
            expired_predictions.append(record_id)
        for record_id in expired_predictions:
            self._count_prediction("prediction_without_outcome", self.predictions.pop(record_id))
        heap, outcomes = self._outcome_expiry, self.outcomes
        while heap and heap[0][0] < cutoff:
            observed_at, record_id = heapq.heappop(heap)
            observed = outcomes.get(record_id)
            if observed is None or observed.outcome.observed_at != observed_at:
                continue  # matched or dropped meanwhile (or a newer outcome of that id waits: its own entry)
            del outcomes[record_id]
            self._dead_letter(observed, "orphan_outcome", "unknown_record_id",
                              f"no prediction for {record_id!r} within the {self.window_ms / 1000:g} s window")
        self.stats.prune(watermark_ms)

    # --- output --------------------------------------------------------------------------------------------

    def take_dead_letters(self) -> list[DeadOutcome]:
        """The outcomes to dead-letter since the last call."""
        dead, self._dead = self._dead, []
        return dead

    def pending_offsets(self) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
        """(predictions, outcomes): partition -> offsets of the rows still waiting, sorted."""
        predictions: dict[int, list[int]] = {}
        for waiting in self.predictions.values():
            predictions.setdefault(waiting.partition, []).append(waiting.offset)
        outcomes: dict[int, list[int]] = {}
        for observed in self.outcomes.values():
            outcomes.setdefault(observed.partition, []).append(observed.offset)
        for found in (predictions, outcomes):
            for offsets in found.values():
                offsets.sort()
        return predictions, outcomes

    def unmatched(self) -> dict[str, int]:
        """kind -> messages, over all versions: a prediction with a shadow counts once, like ``matched`` (its
        shadow's count is in ``counts``, under the shadow's version), so matched + pending + the prediction
        kinds = the predictions read."""
        totals = dict.fromkeys(UNMATCHED_KINDS, 0)
        for (kind, _, role), n in self.counts.items():
            if role != SHADOW_ROLE:
                totals[kind] += n
        return totals

    # --- internals -----------------------------------------------------------------------------------------

    def group(self, key: GroupKey) -> int:
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.keys)
            self.keys.append(key)
        return index

    def _waiting(self, row: ScoredPrediction) -> _Waiting:
        shadow = -1
        if row.shadow_prediction is not None and row.shadow_model_version is not None:
            shadow = self.group((row.shadow_model_version, SHADOW_ROLE))
        return _Waiting(row.scored_at, row.prediction, self.group((row.model_version, row.role)),
                        row.shadow_prediction, shadow, row.partition, row.offset)

    def _pair(self, waiting: _Waiting, outcome: Outcome) -> None:
        groups, predictions, actuals, ats, delays = self._pairs
        delay = outcome.observed_at - waiting.scored_at
        groups.append(waiting.group)
        predictions.append(waiting.prediction)
        actuals.append(outcome.actual)
        ats.append(outcome.observed_at)
        delays.append(delay)
        if waiting.shadow_group >= 0 and waiting.shadow_prediction is not None:
            groups.append(waiting.shadow_group)
            predictions.append(waiting.shadow_prediction)
            actuals.append(outcome.actual)
            ats.append(outcome.observed_at)
            delays.append(delay)
        self.matched += 1

    def _flush_pairs(self) -> None:
        groups, predictions, actuals, ats, delays = self._pairs
        if groups:
            self.stats.add(self.keys, np.array(groups), np.array(predictions), np.array(actuals),
                           np.array(ats, dtype=np.int64), np.array(delays, dtype=np.int64))
            self._pairs = ([], [], [], [], [])

    def _count_prediction(self, kind: str, waiting: _Waiting) -> None:
        version, role = self.keys[waiting.group]
        self.counts[(kind, version, role)] += 1
        if waiting.shadow_group >= 0:
            version, role = self.keys[waiting.shadow_group]
            self.counts[(kind, version, role)] += 1

    def _dead_letter(self, observed: ObservedOutcome, kind: str, reason: str, message: str) -> None:
        self.counts[(kind, "", "")] += 1
        self._dead.append(DeadOutcome(observed.key, observed.value, observed.partition, observed.offset,
                                      reason, message))

    def _limit(self) -> None:
        # One pass over the oldest keys: popping the front one at a time rescans the dict's deleted slots.
        excess = len(self.predictions) - self.max_pending
        if excess > 0:
            for oldest in list(islice(self.predictions, excess)):
                self._count_prediction("prediction_dropped_limit", self.predictions.pop(oldest))
        excess = len(self.outcomes) - self.max_pending
        if excess > 0:
            for oldest in list(islice(self.outcomes, excess)):
                self._dead_letter(self.outcomes.pop(oldest), "outcome_dropped_limit", "pending_limit",
                                  f"more than {self.max_pending} outcomes waiting for their predictions")

    def _apart(self, observed_at: int, scored_at: int) -> str:
        return (f"outcome observed {(observed_at - scored_at) / 1000:+.1f} s from its prediction, more than the "
                f"{self.window_ms / 1000:g} s window")

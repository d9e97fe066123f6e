"""consumer.evaluation.join: matching in and out of order, the window, the row limit, and that every row that
does not match is counted (and every such outcome dead-lettered with its reason)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.evaluation.join import Joiner, ObservedOutcome, ScoredPrediction
from consumer.evaluation.stats import LiveStats
from schemas.outcomes import Outcome

WINDOW = 60_000


def prediction(record_id: str, value: float, at: int, *, version: str = "1", role: str = "champion",
               shadow: float | None = None, offset: int = 0) -> ScoredPrediction:
    return ScoredPrediction(record_id, value, version, role, at, shadow, None if shadow is None else "2", 0, offset)


def outcome(record_id: str, actual: float, at: int, offset: int = 0) -> ObservedOutcome:
    return ObservedOutcome(Outcome(record_id, actual, at), 1, offset, record_id.encode(), b"{...}")


def joiner(max_pending: int = 1000) -> Joiner:
    return Joiner(LiveStats(WINDOW, 10_000), WINDOW, max_pending)


def test_outcomes_match_in_either_order_and_the_metrics_are_those_of_the_pairs() -> None:
    j = joiner()
    j.add_predictions([prediction("a", 100.0, 1_000), prediction("b", 200.0, 1_000)])
    j.add_outcomes([outcome("a", 110.0, 5_000), outcome("c", 300.0, 5_000)])  # c: before its prediction
    j.add_predictions([prediction("c", 330.0, 6_000)])
    j.add_outcomes([outcome("b", 150.0, 9_000)])
    assert j.matched == 3 and not j.predictions and not j.outcomes
    errors = np.array([100 - 110, 330 - 300, 200 - 150], dtype=float)
    metrics = j.stats.groups[("1", "champion")].since_start.metrics()
    assert metrics["count"] == 3
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean(errors ** 2))))
    assert metrics["bias"] == pytest.approx(float(np.mean(errors)))
    assert metrics["mean_delay_seconds"] == pytest.approx((4 - 1 + 8) / 3)  # c's outcome came 1 s early
    assert j.take_dead_letters() == []


def test_a_shadow_prediction_is_paired_with_the_same_outcome() -> None:
    j = joiner()
    j.add_predictions([prediction("a", 100.0, 0, shadow=90.0)])
    j.add_outcomes([outcome("a", 100.0, 1)])
    assert j.stats.groups[("1", "champion")].since_start.metrics()["rmse"] == 0.0
    assert j.stats.groups[("2", "shadow")].since_start.metrics()["rmse"] == pytest.approx(10.0)
    assert j.matched == 1


def test_expiry_counts_predictions_without_outcome_and_dead_letters_orphan_outcomes() -> None:
    j = joiner()
    j.add_predictions([prediction("a", 1.0, 0, shadow=2.0), prediction("b", 1.0, 50_000)])
    j.add_outcomes([outcome("x", 1.0, 10_000, offset=7)])
    j.advance(WINDOW + 20_000)  # a (at 0) and x (at 10 s) waited longer than the window; b did not
    assert set(j.predictions) == {"b"} and not j.outcomes
    assert j.counts[("prediction_without_outcome", "1", "champion")] == 1
    assert j.counts[("prediction_without_outcome", "2", "shadow")] == 1
    dead = j.take_dead_letters()
    assert [(d.reason, d.offset, d.value) for d in dead] == [("unknown_record_id", 7, b"{...}")]
    assert j.unmatched()["orphan_outcome"] == 1
    j.advance(WINDOW + 10_000)  # the clock never goes back
    assert j.watermark == WINDOW + 20_000


def test_an_outcome_more_than_the_window_from_its_prediction_is_late() -> None:
    j = joiner()
    j.add_predictions([prediction("a", 1.0, 0)])
    j.add_outcomes([outcome("a", 1.0, WINDOW + 1)])
    assert j.matched == 0 and "a" in j.predictions
    assert [d.reason for d in j.take_dead_letters()] == ["unknown_record_id"]
    assert j.unmatched()["late_outcome"] == 1
    # the other order: the outcome waits, its prediction comes far later
    j.add_outcomes([outcome("b", 1.0, 0)])
    j.add_predictions([prediction("b", 1.0, WINDOW + 5)])
    assert j.unmatched()["late_outcome"] == 2 and "b" in j.predictions and "b" not in j.outcomes


def test_duplicates_are_counted_and_the_first_kept() -> None:
    j = joiner()
    j.add_predictions([prediction("a", 1.0, 0), prediction("a", 5.0, 1)])
    j.add_outcomes([outcome("b", 1.0, 0), outcome("b", 2.0, 1, offset=3)])
    assert j.counts[("duplicate_prediction", "1", "champion")] == 1
    assert [(d.reason, d.offset) for d in j.take_dead_letters()] == [("duplicate_outcome", 3)]
    j.add_outcomes([outcome("a", 1.0, 2)])
    assert j.stats.groups[("1", "champion")].since_start.metrics()["rmse"] == 0.0  # the first prediction


def test_the_row_limit_drops_the_oldest_and_counts_them() -> None:
    j = joiner(max_pending=2)
    j.add_predictions([prediction(f"p{i}", 1.0, i, offset=i) for i in range(5)])
    j.add_outcomes([outcome(f"o{i}", 1.0, i, offset=i) for i in range(3)])
    assert list(j.predictions) == ["p3", "p4"] and list(j.outcomes) == ["o1", "o2"]
    assert j.counts[("prediction_dropped_limit", "1", "champion")] == 3
    assert [(d.reason, d.offset) for d in j.take_dead_letters()] == [("pending_limit", 0)]
    assert j.pending_offsets() == ({0: [3, 4]}, {1: [1, 2]})


def test_every_row_is_accounted_for() -> None:
    """matched + every unmatched kind = the rows that went in, on a random mix."""
    rng = np.random.default_rng(7)
    j = joiner(max_pending=50)
    ids = [f"r{i}" for i in range(400)]
    predictions = [prediction(r, 1.0, int(t)) for r, t in zip(ids, rng.integers(0, 200_000, 400), strict=True)
                   if rng.random() < 0.9]
    outcomes = [outcome(r, 1.0, int(t)) for r, t in zip(ids, rng.integers(0, 200_000, 400), strict=True)
                if rng.random() < 0.8]
    for chunk in range(0, 400, 40):
        j.add_predictions(predictions[chunk:chunk + 40])
        j.add_outcomes(outcomes[chunk:chunk + 40])
        j.advance(chunk * 500)
    j.advance(10**9)
    unmatched = j.unmatched()
    assert j.matched + sum(unmatched[k] for k in ("prediction_without_outcome", "prediction_dropped_limit",
                                                  "duplicate_prediction")) == len(predictions)
    assert j.matched + sum(unmatched[k] for k in ("orphan_outcome", "late_outcome", "outcome_dropped_limit",
                                                  "duplicate_outcome")) == len(outcomes)
    assert len(j.take_dead_letters()) == len(outcomes) - j.matched


def test_a_row_older_than_the_window_on_arrival_is_counted_at_once() -> None:
    """Rows expire in arrival order; one that comes after newer ones, already past the window, must not wait
    behind them."""
    j = joiner()
    j.add_outcomes([outcome("new", 1.0, 100_000)])
    j.advance(100_000)
    j.add_outcomes([outcome("old", 1.0, 100_000 - WINDOW - 1)])
    j.add_predictions([prediction("older", 1.0, 100_000 - WINDOW - 1)])
    assert list(j.outcomes) == ["new"] and not j.predictions
    assert [d.reason for d in j.take_dead_letters()] == ["unknown_record_id"]
    assert j.unmatched()["orphan_outcome"] == 1 and j.unmatched()["prediction_without_outcome"] == 1


def test_an_old_orphan_read_after_newer_outcomes_expires_when_its_own_time_has_passed() -> None:
    """Outcomes arrive in any order of observed_at: an orphan read while the clock was still at 0 (the
    evaluator's first seconds) behind newer outcomes must not wait for them to expire (seen in CI:
    test_evaluation's orphan stayed pending; insertion-order expiry stopped at the first newer outcome)."""
    j = joiner()
    j.add_outcomes([outcome("new-1", 1.0, 200_000, offset=1), outcome("orphan", 1.0, 10_000, offset=2),
                    outcome("new-2", 1.0, 190_000, offset=3)])
    j.advance(WINDOW + 20_000)  # past the orphan's window, not the others'
    assert set(j.outcomes) == {"new-1", "new-2"}
    assert [(d.reason, d.offset) for d in j.take_dead_letters()] == [("unknown_record_id", 2)]


def test_an_outcome_matched_before_its_expiry_is_not_dead_lettered_by_its_old_heap_entry() -> None:
    j = joiner()
    j.add_outcomes([outcome("a", 1.0, 10_000)])
    j.add_predictions([prediction("a", 1.0, 9_000)])  # matched: the outcome no longer waits
    j.add_outcomes([outcome("b", 1.0, 100_000)])
    j.advance(WINDOW + 50_000)
    assert j.matched == 1 and set(j.outcomes) == {"b"} and j.take_dead_letters() == []

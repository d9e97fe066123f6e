"""The promotion gate: from the evaluator's snapshot, promote the canary, roll it back, or wait. Pure.

The canary and the champion are compared on the same sliding window of matched pairs (the snapshot's
``window`` sums of ``(canary version, canary)`` and ``(champion version, champion)``). Once the canary has at
least ``min_matched`` pairs (the champion too) and its first pair is ``min_minutes`` old:

- ``promote`` when canary RMSE <= champion RMSE * (1 - promote_margin);
- ``rollback`` when canary RMSE >= champion RMSE * (1 + rollback_margin), or at once (no minimum of matched
  pairs or age) when its failure rate, its non-finite predictions or its prediction drift against the champion
  exceed their thresholds (``Health``, from ``consumer.evaluation.health``; the failure rate and the drift once
  the canary, and for the drift the champion too, has ``health_min_records`` records in the window: below that
  one failure or a few predictions are noise, not evidence; non-finite predictions count from the first);
- else ``wait``.

The confidence is P(canary MSE < champion MSE) under a normal approximation of each window's mean squared error
(for normal errors Var(MSE) ~ 2 MSE^2 / n): evidence, not a test the decision waits for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from config.settings import CanarySettings

Action = Literal["promote", "rollback", "wait"]


@dataclass(frozen=True)
class GatePolicy:
    """The thresholds (settings ``CANARY_*``; their defaults live in the settings table only)."""

    min_matched: int
    min_minutes: float
    promote_margin: float
    rollback_margin: float
    max_error_rate: float
    max_non_finite: int
    max_drift_psi: float
    health_min_records: int

    @classmethod
    def from_settings(cls, canary: CanarySettings) -> GatePolicy:
        return cls(canary.min_matched, canary.min_minutes, canary.promote_margin, canary.rollback_margin,
                   canary.max_error_rate, canary.max_non_finite, canary.max_drift_psi, canary.health_min_records)


@dataclass(frozen=True)
class Health:
    """What the scorers saw of the canary besides its accuracy (None: not known)."""

    error_rate: float | None = None
    """Failed records / records the canary scored or failed on, in the window."""
    non_finite: int | None = None
    """Non-finite predictions of the canary in the window."""
    drift_psi: float | None = None
    """PSI of the canary's predictions against the champion's, in the window."""
    records: int | None = None
    """Records the canary scored or failed on in the window (None: not known, the rates are taken as given)."""
    champion_records: int | None = None
    """Predictions of the champion in the window (the drift's reference)."""


@dataclass(frozen=True)
class Decision:
    """The gate's answer and everything it was based on (the audit record's evidence)."""

    action: Action
    reason: str
    canary_version: str
    champion_version: str
    canary_rmse: float | None
    champion_rmse: float | None
    canary_count: int
    champion_count: int
    relative_difference: float | None
    """(canary RMSE - champion RMSE) / champion RMSE: negative when the canary is better."""
    confidence: float | None
    """P(canary MSE < champion MSE), normal approximation."""
    canary_minutes: float
    window_start: int | None
    watermark: int
    error_rate: float | None = None
    non_finite: int | None = None
    drift_psi: float | None = None
    health_records: int | None = None
    """Records the canary scored or failed on in the window (the failure rate's denominator)."""

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def _window(snapshot: Mapping[str, Any], version: str, role: str) -> tuple[Mapping[str, Any] | None, int | None]:
    for entry in snapshot.get("versions", []):
        if entry.get("model_version") == version and entry.get("role") == role:
            return entry.get("window", {}).get("sums", {}), entry.get("first_pair_at")
    return None, None


def _mse(sums: Mapping[str, Any] | None) -> tuple[float | None, int]:
    if not sums or not sums.get("count"):
        return None, 0
    count = int(sums["count"])
    return float(sums["sum_squared_error"]) / count, count


def confidence_better(canary_mse: float, canary_n: int, champion_mse: float, champion_n: int) -> float | None:
    """P(canary MSE < champion MSE) with Var(MSE) ~ 2 MSE^2 / n; None when it cannot be said."""
    if canary_n <= 0 or champion_n <= 0:
        return None
    spread = math.sqrt(2 * canary_mse**2 / canary_n + 2 * champion_mse**2 / champion_n)
    if spread == 0:
        return None
    z = (champion_mse - canary_mse) / spread
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def decide(snapshot: Mapping[str, Any], *, canary_version: str, champion_version: str, policy: GatePolicy,
           health: Health | None = None) -> Decision:
    """The gate's decision for ``canary_version`` against ``champion_version`` on the snapshot's window."""
    health = health or Health()
    canary_sums, first_at = _window(snapshot, canary_version, "canary")
    champion_sums, _ = _window(snapshot, champion_version, "champion")
    canary_mse, canary_n = _mse(canary_sums)
    champion_mse, champion_n = _mse(champion_sums)
    watermark = int(snapshot.get("watermark") or 0)
    minutes = (watermark - first_at) / 60_000 if first_at is not None and watermark else 0.0
    canary_rmse = math.sqrt(canary_mse) if canary_mse is not None else None
    champion_rmse = math.sqrt(champion_mse) if champion_mse is not None else None
    relative = None
    if canary_rmse is not None and champion_rmse:
        relative = (canary_rmse - champion_rmse) / champion_rmse
    confidence = None
    if canary_mse is not None and champion_mse is not None:
        confidence = confidence_better(canary_mse, canary_n, champion_mse, champion_n)

    def answer(action: Action, reason: str) -> Decision:
        return Decision(action, reason, canary_version, champion_version, canary_rmse, champion_rmse, canary_n,
                        champion_n, relative, confidence, round(minutes, 3), snapshot.get("window_start"),
                        watermark, health.error_rate, health.non_finite, health.drift_psi, health.records)

    def enough(records: int | None) -> bool:
        return records is None or records >= policy.health_min_records

    if health.error_rate is not None and enough(health.records) and health.error_rate > policy.max_error_rate:
        return answer("rollback", f"canary failure rate {health.error_rate:.2%} > {policy.max_error_rate:.2%}")
    if health.non_finite is not None and health.non_finite > policy.max_non_finite:
        return answer("rollback", f"canary predicted {health.non_finite} non-finite values "
                                  f"(> {policy.max_non_finite})")
    if health.drift_psi is not None and enough(health.records) and enough(health.champion_records) and \
            health.drift_psi > policy.max_drift_psi:
        return answer("rollback", f"canary prediction drift PSI {health.drift_psi:.3f} > {policy.max_drift_psi}")
    if canary_n < policy.min_matched or champion_n < policy.min_matched:
        return answer("wait", f"matched pairs in the window: canary {canary_n}, champion {champion_n}; "
                              f"{policy.min_matched} needed")
    if minutes < policy.min_minutes:
        return answer("wait", f"canary observed for {minutes:.1f} of {policy.min_minutes:g} minutes")
    assert canary_rmse is not None and champion_rmse is not None and relative is not None
    if canary_rmse <= champion_rmse * (1 - policy.promote_margin):
        return answer("promote", f"canary RMSE {canary_rmse:,.0f} is {-relative:.1%} below the champion's "
                                 f"{champion_rmse:,.0f} (margin {policy.promote_margin:.1%})")
    if canary_rmse >= champion_rmse * (1 + policy.rollback_margin):
        return answer("rollback", f"canary RMSE {canary_rmse:,.0f} is {relative:.1%} above the champion's "
                                  f"{champion_rmse:,.0f} (margin {policy.rollback_margin:.1%})")
    return answer("wait", f"canary RMSE {canary_rmse:,.0f} within the margins of the champion's "
                          f"{champion_rmse:,.0f} ({relative:+.1%})")


def prediction_psi(canary: Sequence[float], champion: Sequence[float], *, epsilon: float = 1e-4) -> float | None:
    """Population stability index of two histograms over the same bins (counts); None when either is empty."""
    total_canary, total_champion = sum(canary), sum(champion)
    if total_canary <= 0 or total_champion <= 0:
        return None
    psi = 0.0
    for a, b in zip(canary, champion, strict=True):
        p = max(a / total_canary, epsilon)
        q = max(b / total_champion, epsilon)
        psi += (p - q) * math.log(p / q)
    return psi


def table(decision: Decision) -> str:
    """The evidence as a small text table (logs, the demo)."""
    def number(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = [("", "canary", "champion"),
            ("version", f"v{decision.canary_version}", f"v{decision.champion_version}"),
            ("matched pairs (window)", str(decision.canary_count), str(decision.champion_count)),
            ("live RMSE (window)", number(decision.canary_rmse, ",.0f"), number(decision.champion_rmse, ",.0f"))]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    lines.append(f"difference {number(decision.relative_difference, '+.1%')}, confidence canary better "
                 f"{number(decision.confidence, '.3f')}, canary observed {decision.canary_minutes:.1f} min")
    lines.append(f"decision: {decision.action.upper()}: {decision.reason}")
    return "\n".join(lines)

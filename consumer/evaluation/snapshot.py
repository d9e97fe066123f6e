"""The evaluator's published view: live accuracy per model version and role, as one JSON document. Pure.

Published on the compacted ``housing.evaluation`` topic (key = evaluator id) with every checkpoint, served by
the evaluator's ``/performance`` and by the scorers' ``GET /api/model/performance``, and what a promotion gate
reads: per (version, role) the metrics *and* the sums over the sliding window and since the version's first
pair, so two versions can be compared on the same window with their counts and variances.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from consumer.evaluation.join import UNMATCHED_KINDS, Joiner
from consumer.evaluation.stats import Sums

SNAPSHOT_FORMAT: Final = 1


def _block(sums: Sums) -> dict[str, Any]:
    return {**sums.metrics(), "sums": {"count": sums.count, "sum_error": sums.sum_error,
                                       "sum_abs_error": sums.sum_abs_error,
                                       "sum_squared_error": sums.sum_squared_error,
                                       "sum_abs_pct_error": sums.sum_abs_pct_error, "pct_count": sums.pct_count}}


def build_snapshot(joiner: Joiner, *, evaluator_id: str, at_ms: int, dead_lettered: Mapping[str, int],
                   bad_predictions: int, unread_pending: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The view of ``joiner`` (and its stats) at its watermark.

    :param at_ms: wall-clock time of the snapshot (``published_at``).
    :param dead_lettered: outcomes dead-lettered so far, by reason.
    :param unread_pending: side -> rows pending at the checkpoint resumed from that are not read back into
        ``joiner`` yet (``Resume.unread``): counted as pending, and shown as ``pending_to_read_back``.
    """
    unread = {side: int((unread_pending or {}).get(side, 0)) for side in ("predictions", "outcomes")}
    stats = joiner.stats
    now = joiner.watermark
    unmatched_by_group: dict[tuple[str, str], dict[str, int]] = {}
    for (kind, version, role), n in joiner.counts.items():
        if version:
            unmatched_by_group.setdefault((version, role), {})[kind] = n
    versions = []
    keys = sorted(set(stats.groups) | set(unmatched_by_group))
    for key in keys:
        version, role = key
        group = stats.groups.get(key)
        versions.append({
            "model_version": version, "role": role,
            "first_pair_at": group.first_at if group else None, "last_pair_at": group.last_at if group else None,
            "window": _block(stats.window(key, now)),
            "since_start": _block(group.since_start if group else Sums()),
            "unmatched": {kind: unmatched_by_group.get(key, {}).get(kind, 0)
                          for kind in ("prediction_without_outcome", "prediction_dropped_limit",
                                       "duplicate_prediction")},
        })
    return {
        "format": SNAPSHOT_FORMAT, "evaluator_id": evaluator_id, "published_at": at_ms, "watermark": now,
        "window_seconds": stats.window_ms / 1000.0, "bucket_seconds": stats.bucket_ms / 1000.0,
        "window_start": stats.window_start_bucket(now) * stats.bucket_ms if now else None,
        "matched": joiner.matched, "versions": versions,
        "unmatched": {kind: joiner.unmatched().get(kind, 0) for kind in UNMATCHED_KINDS},
        "pending": {"predictions": len(joiner.predictions) + unread["predictions"],
                    "outcomes": len(joiner.outcomes) + unread["outcomes"]},
        "pending_to_read_back": unread,
        "dead_lettered": dict(sorted(dead_lettered.items())), "bad_predictions": bad_predictions,
    }


def select(snapshot: Mapping[str, Any], *, model_version: str | None = None, role: str | None = None
           ) -> dict[str, Any]:
    """``snapshot`` with only the versions matching the filters (None: any)."""
    versions = [v for v in snapshot.get("versions", [])
                if (model_version is None or v["model_version"] == model_version)
                and (role is None or v["role"] == role)]
    return {**snapshot, "versions": versions}

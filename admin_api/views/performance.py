"""GET /api/model/performance: live accuracy per model version and role, from the evaluator's snapshots.

``housing-evaluate`` publishes a snapshot with every checkpoint to the compacted ``housing.evaluation`` topic
(key = evaluator id); this reads the latest per evaluator, the way /api/fleet reads the scorers' statuses, so
every scorer answers the same without knowing where an evaluator runs. Filters: ``model_version``, ``role``
(champion, canary, shadow), ``evaluator`` (default: the one that published last).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from admin_api.errors import bad_request, json_response, not_found, unavailable
from admin_api.views.common import settings_of
from consumer.evaluation.snapshot import select
from consumer.evaluation.stats import ROLES
from consumer.kafka.evaluation_io import EvaluationKafkaError, latest_values
from schemas.clock import now_ms

logger = logging.getLogger(__name__)


def snapshots_of(values: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """evaluator id -> its latest snapshot; unreadable values are logged and left out."""
    out = {}
    for key, value in values.items():
        try:
            snapshot = json.loads(value)
        except ValueError as exc:
            logger.warning("performance: unreadable snapshot of evaluator %r: %s", key, exc)
            continue
        if isinstance(snapshot, dict) and isinstance(snapshot.get("versions"), list):
            out[key] = snapshot
    return out


async def model_performance(request: web.Request) -> web.Response:
    settings = settings_of(request)
    role = request.query.get("role")
    if role is not None and role not in ROLES:
        raise bad_request("invalid_role", f"unknown role {role!r}: use one of {', '.join(ROLES)}",
                          allowed=list(ROLES))
    try:
        values = await asyncio.to_thread(latest_values, settings, settings.topics.evaluation, 5.0,
                                         purpose="performance")
    except EvaluationKafkaError as exc:
        raise unavailable("kafka_unavailable", f"the evaluator's snapshots could not be read: {exc}") from None
    snapshots = snapshots_of(values)
    wanted = request.query.get("evaluator")
    if wanted is not None:
        if wanted not in snapshots:
            raise not_found("unknown_evaluator", f"no snapshot of evaluator {wanted!r} on {settings.topics.evaluation}",
                            evaluators=sorted(snapshots))
        chosen = snapshots[wanted]
    elif snapshots:
        chosen = max(snapshots.values(), key=lambda s: int(s.get("published_at", 0)))
    else:
        raise unavailable("no_evaluation", f"no evaluator has published to {settings.topics.evaluation} yet: run "
                          "housing-evaluate (it publishes with every checkpoint)")
    body = select(chosen, model_version=request.query.get("model_version"), role=role)
    body["age_seconds"] = round(max(0.0, (now_ms() - int(chosen.get("published_at", 0))) / 1000.0), 1)
    body["evaluators"] = sorted(snapshots)
    body["topic"] = settings.topics.evaluation
    return json_response(body)

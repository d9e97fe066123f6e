"""The control plane on Kafka, from the API: /api/fleet (the scorers' latest statuses) and the MLflow webhook
receiver (a verified delivery becomes a ModelUpdateEvent for every scorer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from admin_api.errors import ApiError, bad_request, json_response, unavailable
from admin_api.guards import deliveries_of
from admin_api.keys import publisher_key
from admin_api.views.common import settings_of
from admin_api.webhooks import WebhookError, event_from_webhook, verify_delivery
from consumer.errors import ControlPublishError
from consumer.kafka.topic_reader import FLEET_STATES, fleet_view, read_fleet
from schemas.clock import now_ms


async def fleet(request: web.Request) -> web.Response:
    """The latest status of every instance with its state (serving, stale, stopped); ``?state=a,b`` filters."""
    settings = settings_of(request)
    wanted = _wanted_states(request)
    try:
        statuses = await asyncio.to_thread(read_fleet, settings, 5.0)
    except TimeoutError as exc:
        raise unavailable("kafka_unavailable", f"the fleet view could not be read: {exc}") from None
    members = fleet_view(statuses, now_ms=now_ms(), stale_after=settings.admin.fleet_stale_after)
    instances = [m.as_dict() for m in members if wanted is None or m.state in wanted]
    return json_response({"instances": instances, "count": len(instances),
                          "by_state": {state: sum(m.state == state for m in members) for state in FLEET_STATES},
                          "stale_after_seconds": settings.admin.fleet_stale_after,
                          "topic": settings.topics.scorer_status})


def _wanted_states(request: web.Request) -> set[str] | None:
    """The ``state`` query parameter (comma-separated, may repeat); None: no filter.

    :raises ApiError: 400 for an empty or unknown state.
    """
    if "state" not in request.query:
        return None
    asked = [part for value in request.query.getall("state") for part in value.split(",")]
    unknown = [state for state in asked if state not in FLEET_STATES]
    if unknown:
        raise bad_request("invalid_state", f"unknown fleet state {unknown[0]!r} in the state parameter: use one or "
                          f"more of {', '.join(FLEET_STATES)}, separated by commas", allowed=list(FLEET_STATES))
    return set(asked)


async def mlflow_webhook(request: web.Request) -> web.Response:
    settings = settings_of(request)
    if not settings.admin.webhook_secret:
        raise ApiError(403, "forbidden", "the MLflow webhook receiver is disabled: set MLFLOW_WEBHOOK_SECRET to the "
                       "webhook's secret to enable it")
    body = await request.read()
    now = time.time()
    try:
        delivery = verify_delivery(settings.admin.webhook_secret, request.headers, body, now)
    except WebhookError as exc:
        raise ApiError(exc.status, "webhook_rejected", str(exc)) from None
    deliveries = deliveries_of(request.app)
    if not deliveries.claim(delivery.delivery_id, delivery.sent_at, now):
        shown = delivery.delivery_id[:100]
        raise ApiError(409, "webhook_replayed", f"delivery {shown} was already received: a second delivery of the "
                       "same id is refused as a replay", delivery_id=shown)
    try:
        return await _act_on(request, delivery.payload)
    except BaseException:  # not handled: MLflow's retry of this delivery (same id) must be accepted
        deliveries.release(delivery.delivery_id)
        raise


async def _act_on(request: web.Request, payload: dict[str, Any]) -> web.Response:
    settings = settings_of(request)
    event = event_from_webhook(payload, settings.model.name)
    if event is None:
        return json_response({"status": "ignored", "entity": str(payload.get("entity")),
                              "action": str(payload.get("action"))})
    event.pop("source", None)
    try:
        published = await asyncio.to_thread(request.app[publisher_key].publish, source="webhook", **event)
    except ControlPublishError as exc:
        raise unavailable("kafka_unavailable", f"the webhook's event was not published: {exc}") from None
    return json_response({"status": "published", "event": published.as_dict()}, status=202)


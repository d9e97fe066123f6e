"""What several handler modules share: the app's pieces for a request, the MLflow guard, and the announcement
of a registry change on the control topic."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from admin_api.errors import unavailable
from admin_api.keys import publisher_key, registry_key, settings_key, state_key
from admin_api.registry import RegistryOps
from config.settings import Settings
from consumer.errors import ControlPublishError
from consumer.state import ScorerState

logger = logging.getLogger(__name__)


def settings_of(request: web.Request) -> Settings:
    return request.app[settings_key]


def state_of(request: web.Request) -> ScorerState:
    return request.app[state_key]


def registry_of(request: web.Request) -> RegistryOps:
    return request.app[registry_key]


def require_mlflow(settings: Settings) -> None:
    """Raise 503 ``mlflow_disabled`` when the registry endpoints have no registry to talk to."""
    if not settings.mlflow.enabled:
        raise unavailable("mlflow_disabled", "MLflow is disabled (MLFLOW_ENABLED=false)")


async def announce(request: web.Request, **event: Any) -> dict[str, Any]:
    """Publish a ModelUpdateEvent after a registry change: ``{"announced": bool, "event": ..., ...}``."""
    settings = settings_of(request)
    try:
        published = await asyncio.to_thread(request.app[publisher_key].publish, source="admin_api", **event)
    except (ControlPublishError, ValueError) as exc:
        logger.error("registry changed but the event was not announced on %s: %s", settings.topics.model_updates,
                     exc)
        return {"announced": False, "event": None, "announce_error": str(exc)}
    return {"announced": True, "event": published.as_dict()}

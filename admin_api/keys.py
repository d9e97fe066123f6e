"""Typed application keys: what the admin API's handlers find on ``request.app``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from admin_api.registry import RegistryOps
    from admin_api.views import HealthMonitor
    from config.settings import Settings
    from consumer.kafka.control import ModelUpdatePublisher
    from consumer.state import ScorerState

settings_key: web.AppKey[Settings] = web.AppKey("settings")
state_key: web.AppKey[ScorerState] = web.AppKey("state")
service_key: web.AppKey[Any] = web.AppKey("service")
"""The ScorerService, or None when the API runs without a scoring loop (tests)."""
registry_key: web.AppKey[RegistryOps] = web.AppKey("registry")
health_key: web.AppKey[HealthMonitor] = web.AppKey("health")
publisher_key: web.AppKey[ModelUpdatePublisher] = web.AppKey("model_update_publisher")
"""Announces registry changes on the control topic: one producer for the app's lifetime."""

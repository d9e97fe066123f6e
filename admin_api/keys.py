"""Typed application keys: what the admin API's handlers find on ``request.app``."""

from __future__ import annotations

from aiohttp import web

from admin_api.health import HealthMonitor
from admin_api.host import ScoringService
from admin_api.registry import RegistryOps
from config.settings import Settings
from consumer.kafka.control import ModelUpdatePublisher
from consumer.models.reloader import Reloader
from consumer.state import ScorerState

settings_key: web.AppKey[Settings] = web.AppKey("settings")
state_key: web.AppKey[ScorerState] = web.AppKey("state")
service_key: web.AppKey[ScoringService | None] = web.AppKey("service")
"""The ScorerService, or None when the API runs without a scoring loop (tests)."""
registry_key: web.AppKey[RegistryOps] = web.AppKey("registry")
health_key: web.AppKey[HealthMonitor] = web.AppKey("health")
publisher_key: web.AppKey[ModelUpdatePublisher] = web.AppKey("model_update_publisher")
"""Announces registry changes on the control topic: one producer for the app's lifetime."""
app_reloader_key: web.AppKey[Reloader] = web.AppKey("app_reloader")
"""The app's own reloader, when it runs without a service that has one (see ``app._own_helpers``)."""

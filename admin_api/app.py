"""The admin API application: ``create_app`` wires settings, shared state, routes and middlewares.

It runs inside the scorer process (built by ``consumer/__main__.py``, served by ``ScorerService``) on the
asyncio loop, next to the scoring thread. Middlewares, outermost first: request metrics, JSON errors, API-key
auth. Background work owned by the app: the health monitor (cached MLflow reachability, Kafka outage, DLQ
rate); the control-topic publisher (one Kafka producer for all its announcements, closed with the app); and,
when it runs without a service (tests, ``python -m admin_api``), its own model reloader and monitoring hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from admin_api.auth import auth_middleware
from admin_api.errors import Handler, error_middleware
from admin_api.health import HealthMonitor
from admin_api.host import ScoringService
from admin_api.keys import (
    app_reloader_key,
    health_key,
    publisher_key,
    registry_key,
    service_key,
    settings_key,
    state_key,
)
from admin_api.registry import RegistryOps
from admin_api.routes import setup_routes
from config.settings import Settings, SettingsError
from consumer.kafka.control import ModelUpdatePublisher
from consumer.models.reloader import Reloader
from consumer.monitoring.hooks import build_monitoring_hooks
from consumer.state import ScorerState
from consumer.workers import Worker

logger = logging.getLogger(__name__)

CLIENT_MAX_SIZE = 4 * 1024 * 1024
"""Largest request body: room for /api/predict's record lists."""


@web.middleware
async def request_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[state_key].metrics.api_requests.labels(method=request.method, route=route,
                                                           status=str(status)).inc()


def create_app(settings: Settings, *, state: ScorerState, service: ScoringService | None = None,
               registry: RegistryOps | None = None) -> web.Application:
    """The admin API for one scorer.

    :param settings: the process settings (admin.*, mlflow.*, model.*, topics.*).
    :param state: the scorer's shared state (model holder, metrics, health facts).
    :param service: the running ScorerService (its reloader serves /api/model/reload); None runs the API
        alone, with a reloader and monitoring hooks of its own.
    :param registry: registry operations (default: an MlflowClient on ``settings.mlflow.tracking_uri``).
    """
    app = web.Application(middlewares=[request_metrics, error_middleware, auth_middleware],
                          client_max_size=CLIENT_MAX_SIZE)
    app[settings_key] = settings
    app[state_key] = state
    app[service_key] = service
    app[registry_key] = registry or RegistryOps(settings)
    app[health_key] = HealthMonitor(settings, state, service=service)
    app[publisher_key] = ModelUpdatePublisher(settings)  # its producer is made by the first announcement
    setup_routes(app)
    app.cleanup_ctx.append(_health_monitor)
    app.cleanup_ctx.append(_close_publisher)
    app.cleanup_ctx.append(_own_helpers)
    return app


async def _health_monitor(app: web.Application) -> AsyncIterator[None]:
    monitor = app[health_key]
    await monitor.refresh()  # /health is accurate from the first request
    task = asyncio.create_task(monitor.run(), name="admin-health-monitor")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_publisher(app: web.Application) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(app[publisher_key].close)


async def _own_helpers(app: web.Application) -> AsyncIterator[None]:
    """Without a service that owns them: a reloader and monitoring hooks for this app alone."""
    settings, state, service = app[settings_key], app[state_key], app[service_key]
    owned: list[Worker] = []
    if (service is None or service.reloader is None) and settings.mlflow.enabled:
        reloader = Reloader(settings, state).start()
        app[app_reloader_key] = reloader
        owned.append(reloader)
    if service is None and state.prediction_logger is None and state.drift_monitor is None:
        owned.extend(build_monitoring_hooks(settings, state))
    yield
    for helper in reversed(owned):
        try:
            await asyncio.to_thread(helper.stop)
        except Exception:
            logger.exception("stopping %r", helper)
    if any(state.prediction_logger is helper for helper in owned):
        state.prediction_logger = None
    if any(state.drift_monitor is helper for helper in owned):
        state.drift_monitor = None


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for the admin API when ``ADMIN_TLS_CERT`` and ``ADMIN_TLS_KEY`` are set; None means plain HTTP."""
    cert, key = settings.admin.tls_cert, settings.admin.tls_key
    if not cert or not key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"ADMIN_TLS_CERT={cert} / ADMIN_TLS_KEY={key}: cannot load the certificate and key "
                            f"({exc})") from exc
    return context

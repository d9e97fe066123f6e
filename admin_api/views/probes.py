"""Probes and self-description: /health, /live, /ready, /metrics and /api/openapi.json."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from admin_api.errors import json_response
from admin_api.health import liveness_report, readiness_report
from admin_api.keys import health_key
from admin_api.openapi import openapi_document
from admin_api.views.common import settings_of, state_of


async def health(request: web.Request) -> web.Response:
    status, body = request.app[health_key].report()
    return json_response(body, status=status)


async def live(request: web.Request) -> web.Response:
    status, body = liveness_report(state_of(request))
    return json_response(body, status=status)


async def ready(request: web.Request) -> web.Response:
    status, body = readiness_report(state_of(request))
    return json_response(body, status=status)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(state_of(request).metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(settings_of(request)))

"""API-key authentication of the admin API.

Every mutating endpoint (POST, PUT, DELETE, PATCH) needs ``ADMIN_API_KEY``, sent as ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>`` and compared in constant time. With no key configured the mutating endpoints
are off: they answer 403 saying how to turn them on. Read-only endpoints are open unless
``ADMIN_PROTECT_READS`` is set; the probes (/health, /ready) and the OpenAPI document stay open always, and
the MLflow webhook authenticates with its own HMAC signature instead.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from admin_api.errors import ApiError, Handler
from admin_api.keys import settings_key

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
ALWAYS_OPEN = frozenset({"/health", "/ready", "/api/openapi.json"})
OWN_AUTH = frozenset({"/api/webhooks/mlflow"})
"""Paths that authenticate themselves (signed webhooks)."""


def presented_key(request: web.Request) -> str | None:
    """The key the client sent, from ``Authorization: Bearer`` or ``X-API-Key``; None if neither."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("X-API-Key", "").strip()
    return key or None


def key_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison (bytes, so non-ASCII input cannot raise)."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "surrogateescape"))


def _route_path(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def needs_key(method: str, path: str, *, protect_reads: bool) -> bool:
    """Whether a request to ``path`` with ``method`` must carry the API key."""
    if path in OWN_AUTH or path in ALWAYS_OPEN:
        return False
    return method in MUTATING_METHODS or protect_reads


def check_key(expected: str | None, presented: str | None, *, mutating: bool) -> None:
    """Raise the right ApiError when a request needing the key may not pass.

    :raises ApiError: 403 when no key is configured (the endpoint is off), 401 when the key is missing or wrong.
    """
    if not expected:
        what = "mutating endpoints are" if mutating else "this endpoint is"
        raise ApiError(403, "forbidden",
                       f"{what} disabled because no admin API key is configured: set ADMIN_API_KEY (or "
                       "admin.api_key in the config file) and send it as 'Authorization: Bearer <key>' or "
                       "'X-API-Key: <key>'")
    if presented is None:
        error = ApiError(401, "unauthorized",
                         "this endpoint needs the admin API key: send 'Authorization: Bearer <key>' or "
                         "'X-API-Key: <key>'")
        error.headers["WWW-Authenticate"] = 'Bearer realm="housing-admin"'
        raise error
    if not key_matches(expected, presented):
        error = ApiError(401, "unauthorized", "the admin API key is wrong")
        error.headers["WWW-Authenticate"] = 'Bearer realm="housing-admin", error="invalid_token"'
        raise error


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[settings_key]
    path = _route_path(request)
    if request.match_info.http_exception is None and needs_key(request.method, path,
                                                               protect_reads=settings.admin.protect_reads):
        try:
            check_key(settings.admin.api_key, presented_key(request), mutating=request.method in MUTATING_METHODS)
        except ApiError as exc:
            logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.error)
            raise
    return await handler(request)

"""API-key authentication of the admin API.

Every mutating endpoint (POST, PUT, DELETE, PATCH; not POST /api/predict, which changes nothing) needs an
admin key: ``ADMIN_API_KEY`` (named ``admin``) or one of the named ``ADMIN_API_KEYS``, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and compared in constant time; the middleware leaves
the key's name on the request for the audit log (``admin_api.caller``). With no key configured the mutating
endpoints are off: they answer 403 saying how to turn them on. Read-only endpoints (and /api/predict) are open unless
``ADMIN_PROTECT_READS`` is set; the probes (/health, /ready) and the OpenAPI document stay open always, and
the MLflow webhook authenticates with its own HMAC signature instead. A refused mutating call costs no I/O on
the event loop: it is counted per client per minute and written to the audit trail off the loop
(``admin_api.audit.record_refusal``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from aiohttp import web

from admin_api.audit import record_refusal
from admin_api.caller import CALLER_KEY
from admin_api.errors import ApiError, Handler
from admin_api.keys import settings_key

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
ALWAYS_OPEN = frozenset({"/health", "/ready", "/api/openapi.json"})
READ_LIKE_POSTS = frozenset({"/api/predict"})
"""POSTs that change nothing (a prediction): open like the original API's, unless ADMIN_PROTECT_READS is set."""
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
    if path in READ_LIKE_POSTS:
        return protect_reads
    return method in MUTATING_METHODS or protect_reads


def resolve_key_name(keys: Mapping[str, str], presented: str | None) -> str | None:
    """The name of the configured key that ``presented`` is, or None; every key is compared (constant time)."""
    found: str | None = None
    for name, expected in keys.items():
        if key_matches(expected, presented) and found is None:
            found = name
    return found


def check_key(expected: str | Mapping[str, str] | None, presented: str | None, *, mutating: bool) -> str:
    """Raise the right ApiError when a request needing the key may not pass; else return the key's name.

    :param expected: the configured keys by name (``AdminSettings.named_keys()``), or one key (named ``admin``).
    :raises ApiError: 403 when no key is configured (the endpoint is off), 401 when the key is missing or wrong.
    """
    keys = {"admin": expected} if isinstance(expected, str) else dict(expected or {})
    if not keys:
        what = "mutating endpoints are" if mutating else "this endpoint is"
        raise ApiError(403, "forbidden",
                       f"{what} disabled because no admin API key is configured: set ADMIN_API_KEY or "
                       "ADMIN_API_KEYS (or admin.api_key in the config file) and send it as "
                       "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if presented is None:
        error = ApiError(401, "unauthorized",
                         "this endpoint needs the admin API key: send 'Authorization: Bearer <key>' or "
                         "'X-API-Key: <key>'")
        error.headers["WWW-Authenticate"] = 'Bearer realm="housing-admin"'
        raise error
    name = resolve_key_name(keys, presented)
    if name is None:
        error = ApiError(401, "unauthorized", "the admin API key is wrong")
        error.headers["WWW-Authenticate"] = 'Bearer realm="housing-admin", error="invalid_token"'
        raise error
    return name


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[settings_key]
    path = _route_path(request)
    if request.match_info.http_exception is None and needs_key(request.method, path,
                                                               protect_reads=settings.admin.protect_reads):
        try:
            request[CALLER_KEY] = check_key(settings.admin.named_keys(), presented_key(request),
                                            mutating=request.method in MUTATING_METHODS)
        except ApiError as exc:
            if request.method not in MUTATING_METHODS:
                logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.error)
            elif record_refusal(request, exc):  # counted; logged once per client per minute, not per call
                logger.info("refused %s %s from %s: %s (further refusals from %s this minute are counted in one "
                            "audit record)", request.method, request.path, request.remote, exc.error, request.remote)
            raise
    return await handler(request)

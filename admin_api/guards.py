"""Request guards that keep state per app: the rate limit of anonymous predictions and the webhook delivery log.

``setup_guards`` makes both before the app starts (its state cannot change once it runs); the handlers use
``check_predict_rate`` and ``deliveries_of``.
"""

from __future__ import annotations

import math

from aiohttp import web

from admin_api.auth import presented_key, resolve_key_name
from admin_api.caller import CALLER_KEY
from admin_api.errors import ApiError
from admin_api.keys import settings_key
from admin_api.ratelimit import RateLimiter
from admin_api.webhooks import DeliveryLog

predict_limiter_key: web.AppKey[RateLimiter] = web.AppKey("predict_rate_limiter")
deliveries_key: web.AppKey[DeliveryLog] = web.AppKey("webhook_deliveries")


def setup_guards(app: web.Application) -> None:
    """The app's rate limiter (``ADMIN_PREDICT_RATE_LIMIT``) and webhook delivery log."""
    settings = app[settings_key]
    app[predict_limiter_key] = RateLimiter(settings.admin.predict_rate_limit)
    app[deliveries_key] = DeliveryLog()


def deliveries_of(app: web.Application) -> DeliveryLog:
    return app[deliveries_key]


def client_of(request: web.Request) -> str:
    """Who the rate limit counts: the connection's peer address (never a forwarded-for header: anyone can send
    one)."""
    return request.remote or "unknown"


def check_predict_rate(request: web.Request) -> None:
    """Let a prediction through, or raise 429 ``rate_limited`` (with Retry-After) when an anonymous client is
    over ``ADMIN_PREDICT_RATE_LIMIT`` calls per minute. A request with a valid admin key is never limited."""
    limiter = request.app[predict_limiter_key]
    if limiter.per_minute <= 0 or request.get(CALLER_KEY):  # no limit, or the auth middleware found a key
        return
    settings = request.app[settings_key]
    if resolve_key_name(settings.admin.named_keys(), presented_key(request)) is not None:
        return
    client = client_of(request)
    wait = limiter.acquire(client)
    if wait is None:
        return
    retry = max(1, math.ceil(wait))
    error = ApiError(429, "rate_limited",
                     f"more than {limiter.per_minute} predictions per minute from {client} without the admin key "
                     f"(ADMIN_PREDICT_RATE_LIMIT): retry in {retry}s, or send the admin key",
                     retry_after_seconds=retry)
    error.headers["Retry-After"] = str(retry)
    raise error

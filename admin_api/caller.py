"""Who made a request: the name of the admin key the auth middleware found on it.

Its own module because two sides share it: ``admin_api.auth`` leaves the name on the request (and records
refused calls in the audit trail), ``admin_api.audit`` reads it for every audited call.
"""

from __future__ import annotations

from aiohttp import web

CALLER_KEY = "housing.caller"
"""Request key under which the middleware leaves the name of the admin key the request carried."""


def caller_of(request: web.Request) -> str:
    """Who made this request, for the audit log: the name of the admin key it carried, else ``anonymous``."""
    return str(request.get(CALLER_KEY) or "anonymous")

"""JSON errors of the admin API: the ``ApiError`` type handlers raise, and the middleware that renders errors.

Every error the API answers is JSON ``{"error": <code>, "message": <text>, ...}``: errors raised on purpose
(``ApiError``), aiohttp's own (unknown route 404, wrong method 405, body too large 413) and, as a last resort,
unexpected exceptions (500, logged with their traceback). Bad input is validated before it can reach code
that might fail in an unexpected way, so a 500 means a bug.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer: HTTP status, a short machine-readable code and a message for people."""

    status_code: int = 400

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status_code = status
        self.error = error
        """Short code, e.g. ``invalid_stage``, ``model_not_found``, ``mlflow_unavailable``."""
        self.message = message
        self.extra = extra
        """More JSON fields for the body (e.g. ``field``, ``reason``, ``allowed``)."""
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, **self.extra}


def bad_request(error: str, message: str, **extra: Any) -> ApiError:
    return ApiError(400, error, message, **extra)


def not_found(error: str, message: str, **extra: Any) -> ApiError:
    return ApiError(404, error, message, **extra)


def unavailable(error: str, message: str, **extra: Any) -> ApiError:
    return ApiError(503, error, message, **extra)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Compact JSON; NaN/Infinity never leak out (they would not be JSON)."""
    return web.Response(text=json.dumps(body, separators=(",", ":"), allow_nan=False, default=str),
                        status=status, content_type="application/json", headers=headers)


def error_response(status: int, error: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> web.Response:
    return json_response({"error": error, "message": message, **extra}, status=status, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


_PASS_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a JSON answer with an ``error`` code and a ``message``."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status_code, exc.error, exc.message, headers=exc.headers or None, **exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors pass through untouched
        if exc.content_type == "application/json" and exc.text:
            return web.Response(text=exc.text, status=exc.status, content_type="application/json",
                                headers={k: v for k, v in exc.headers.items() if k in _PASS_HEADERS})
        message = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in _PASS_HEADERS}
        return error_response(exc.status, _code_for(exc.status), message, headers=headers or None)
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(500, "internal_error", "unexpected server error; see the scorer's log")

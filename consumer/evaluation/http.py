"""The evaluator's own small HTTP server, on a thread: ``/metrics`` (Prometheus), ``/performance`` (the latest
snapshot, JSON; ``?model_version=`` and ``?role=`` filter) and ``/health``. Errors are JSON
``{"error": code, "message": ...}``. The scorers' admin API serves the same snapshot from Kafka
(``GET /api/model/performance``), so this one is for Prometheus and for looking at one evaluator.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.evaluation.snapshot import select

logger = logging.getLogger(__name__)


class EvaluatorHttp:
    """Serves the evaluator's endpoints until ``close``.

    :param snapshot: returns the latest snapshot (None before the first checkpoint).
    :param health: returns the /health body; its ``status`` ``unhealthy`` answers 503.
    """

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 snapshot: Callable[[], Mapping[str, Any] | None], health: Callable[[], dict[str, Any]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif url.path == "/performance":
                    current = snapshot()
                    if current is None:
                        self._json(503, {"error": "no_snapshot_yet",
                                         "message": "the evaluator has not committed its first checkpoint yet"})
                        return
                    query = parse_qs(url.query)
                    self._json(200, select(current, model_version=query.get("model_version", [None])[0],
                                           role=query.get("role", [None])[0]))
                elif url.path == "/health":
                    body = health()
                    self._json(503 if body.get("status") == "unhealthy" else 200, body)
                else:
                    self._json(404, {"error": "not_found", "message": f"no such path {url.path!r}: /metrics, "
                                                                      "/performance, /health"})

            def _json(self, status: int, body: Mapping[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
                logger.debug("http: %s", format % args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="evaluator-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

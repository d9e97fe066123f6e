"""The parent's one admin API with ``--workers N`` (aiohttp, no model in this process).

Served by the parent itself, over all workers:
- ``/live``: the parent runs (it restarts a worker that dies itself; a worker restarting is no reason to restart
  the pod).
- ``/ready``: 200 when every worker's /ready answers 200; the body has each worker's answer.
- ``/health``: the worst of the workers' verdicts (healthy < degraded < unhealthy; a worker that does not answer,
  restarting or starting, is unhealthy), 503 when that is unhealthy; the body has each worker's report.
- ``/metrics``: the parent's own metrics (workers, restarts) and every worker's, labelled ``worker="n"``.
- ``/api/workers``: the worker slots (instance id, pid, state, restarts, last exit).

Every other route is forwarded to the first worker that has reported its loopback admin API (worker 0 unless it
is restarting), with the client's headers (so the worker checks the API key, as without workers). Routes that
act through the registry and the control topic (registry ops, aliases, canary, rollback, webhooks, fleet) reach
every worker that way. ``POST /api/model/reload`` is sent as a broadcast (``"broadcast": true`` added): a reload in
one worker alone would leave the others on the old model; asking for ``"broadcast": false`` answers 409.
Answers about one process's own state (``/api/model/info``, ``/api/model/drift``, ``/api/predict``) come from the
worker that served them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from config.settings import Settings
from consumer.supervisor.metrics import render
from consumer.supervisor.parent import Supervisor, WorkerProcess

logger = logging.getLogger(__name__)

WORKER_TIMEOUT = aiohttp.ClientTimeout(total=5)
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=180)
"""Longer than the admin API's own longest wait (a reload: 120 s)."""
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
DROPPED_ANSWER_HEADERS = HOP_BY_HOP | {"content-encoding", "server", "date"}
VERDICTS = ("healthy", "degraded", "unhealthy")

supervisor_key = web.AppKey("supervisor", Supervisor)
settings_key = web.AppKey("settings", Settings)
session_key = web.AppKey("session", aiohttp.ClientSession)


def broadcast_reload(body: bytes) -> bytes | None:
    """The body of a ``POST /api/model/reload`` as the parent forwards it: a broadcast to every worker.

    Returns the body to send, or None when the caller asked for a reload of one process only
    (``"broadcast": false``), which the parent refuses. A body that is not a JSON object goes on unchanged: the
    worker answers its 400 as without workers.
    """
    if not body.strip():
        return b'{"broadcast": true}'
    try:
        fields = json.loads(body)
    except ValueError:
        return body
    if not isinstance(fields, dict):
        return body
    if fields.get("broadcast", True) is False:
        return None
    if "broadcast" not in fields:
        fields["broadcast"] = True
    return json.dumps(fields).encode()


def _error(status: int, error: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=status)


def _presented_key(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def _refused(request: web.Request) -> web.Response | None:
    """The answer to a read the parent serves itself when ``ADMIN_PROTECT_READS`` wants a key it lacks."""
    admin = request.app[settings_key].admin
    if not admin.protect_reads:
        return None
    presented = _presented_key(request)
    keys = admin.named_keys()
    if not keys:
        return _error(403, "forbidden", "reads are protected and no admin key is configured (set ADMIN_API_KEY)")
    if presented is None or not any(hmac.compare_digest(k.encode(), presented.encode("utf-8", "surrogateescape"))
                                    for k in keys.values()):
        return _error(401, "unauthorized", "this endpoint needs the admin API key "
                      "(Authorization: Bearer <key> or X-API-Key)")
    return None


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    if request.remote:
        previous = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {request.remote}" if previous else request.remote
    return headers


async def _ask(request: web.Request, worker: WorkerProcess, path: str) -> tuple[int, Any] | None:
    """(status, JSON body) of a worker's GET ``path``; None when it has no admin API yet or does not answer."""
    url = worker.admin_url
    if url is None:
        return None
    try:
        async with request.app[session_key].get(url + path, timeout=WORKER_TIMEOUT, ssl=False,
                                                headers=_forwarded_headers(request)) as answer:
            return answer.status, await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        logger.debug("worker %d %s: %s", worker.index, path, exc)
        return None


def _absent(worker: WorkerProcess) -> dict[str, Any]:
    why = "starting" if worker.state == "running" else worker.state
    return {"worker": worker.index, "instance_id": worker.instance_id, "answered": False, "state": why}


async def live(request: web.Request) -> web.Response:
    supervisor = request.app[supervisor_key]
    return web.json_response({"alive": True, "reasons": [], "workers": [w.view() for w in supervisor.workers]})


async def ready(request: web.Request) -> web.Response:
    workers = request.app[supervisor_key].workers
    answers = await asyncio.gather(*(_ask(request, w, "/ready") for w in workers))
    bodies = []
    for worker, answer in zip(workers, answers, strict=True):
        bodies.append(_absent(worker) if answer is None
                      else {"worker": worker.index, "instance_id": worker.instance_id, **answer[1]})
    all_ready = all(answer is not None and answer[0] == 200 for answer in answers)
    return web.json_response({"ready": all_ready, "workers": bodies}, status=200 if all_ready else 503)


async def health(request: web.Request) -> web.Response:
    workers = request.app[supervisor_key].workers
    answers = await asyncio.gather(*(_ask(request, w, "/health") for w in workers))
    worst, bodies = 0, []
    for worker, answer in zip(workers, answers, strict=True):
        if answer is None or not isinstance(answer[1], dict):
            worst = 2
            bodies.append({**_absent(worker), "status": "unhealthy"})
            continue
        status, body = answer
        verdict = body.get("status")
        worst = max(worst, VERDICTS.index(verdict) if verdict in VERDICTS else 2, 2 if status >= 500 else 0)
        bodies.append({"worker": worker.index, "instance_id": worker.instance_id, **body})
    return web.json_response({"status": VERDICTS[worst], "workers": bodies}, status=503 if worst == 2 else 200)


async def metrics(request: web.Request) -> web.Response:
    if (refusal := _refused(request)) is not None:
        return refusal
    supervisor = request.app[supervisor_key]

    async def text_of(worker: WorkerProcess) -> str | None:
        url = worker.admin_url
        if url is None:
            return None
        try:
            async with request.app[session_key].get(url + "/metrics", timeout=WORKER_TIMEOUT, ssl=False,
                                                    headers=_forwarded_headers(request)) as answer:
                if answer.status == 200:
                    return await answer.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("worker %d /metrics: %s", worker.index, exc)
        supervisor.metrics.scrape_failures.labels(str(worker.index)).inc()
        return None

    texts = await asyncio.gather(*(text_of(w) for w in supervisor.workers))
    found = {w.index: t for w, t in zip(supervisor.workers, texts, strict=True) if t is not None}
    body = await asyncio.to_thread(render, supervisor.metrics.registry, found)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def workers_view(request: web.Request) -> web.Response:
    if (refusal := _refused(request)) is not None:
        return refusal
    supervisor = request.app[supervisor_key]
    policy = supervisor.policy
    return web.json_response({"workers": [w.view() for w in supervisor.workers],
                              "restart_backoff": {"initial_seconds": policy.initial_delay,
                                                  "max_seconds": policy.max_delay,
                                                  "stable_after_seconds": policy.stable_after}})


async def forward(request: web.Request) -> web.StreamResponse:
    """Any other route: to the first worker with an admin API, as the client sent it (reload: as a broadcast)."""
    target = next((w for w in request.app[supervisor_key].workers if w.admin_url is not None), None)
    if target is None or target.admin_url is None:
        return _error(503, "unavailable", "no worker serves its admin API yet (starting or restarting)")
    body = await request.read()
    if request.method == "POST" and request.path == "/api/model/reload":
        rewritten = broadcast_reload(body)
        if rewritten is None:
            return _error(409, "broadcast_required", "with --workers N a reload reaches every worker only through "
                          "the control topic: leave out \"broadcast\" or send true")
        body = rewritten
    try:
        async with request.app[session_key].request(
                request.method, target.admin_url + request.rel_url.raw_path_qs, data=body or None,
                headers=_forwarded_headers(request), timeout=FORWARD_TIMEOUT, ssl=False,
                allow_redirects=False) as answer:
            payload = await answer.read()
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in DROPPED_ANSWER_HEADERS}
            return web.Response(status=answer.status, body=payload, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _error(502, "worker_unavailable", f"worker {target.index} did not answer: {exc}")


async def _session(app: web.Application) -> AsyncIterator[None]:
    app[session_key] = aiohttp.ClientSession(auto_decompress=True)
    yield
    await app[session_key].close()


def create_parent_app(supervisor: Supervisor, settings: Settings) -> web.Application:
    """The parent's admin API over ``supervisor``'s workers."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[supervisor_key] = supervisor
    app[settings_key] = settings
    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/workers", workers_view)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.cleanup_ctx.append(_session)
    return app


def admin_server(settings: Settings, ssl_context: ssl.SSLContext | None
                 ) -> Callable[[Supervisor], Awaitable[Callable[[], Awaitable[None]]]]:
    """The parent's ``ServeFactory``: listens on the admin API's configured host and port (``HOST``/``PORT``)."""
    async def serve(supervisor: Supervisor) -> Callable[[], Awaitable[None]]:
        runner = web.AppRunner(create_parent_app(supervisor, settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.admin.host, settings.admin.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            with contextlib.suppress(Exception):
                await runner.cleanup()
            raise RuntimeError(f"cannot listen on {settings.admin.host}:{settings.admin.port}: {exc.strerror} "
                               "(set PORT or --port)") from exc
        bound = [address[1] for address in runner.addresses if isinstance(address, tuple)]
        logger.info("admin API of all %d workers on %s://%s:%d", len(supervisor.workers),
                    "https" if ssl_context else "http", settings.admin.host,
                    bound[0] if bound else settings.admin.port)
        return runner.cleanup
    return serve

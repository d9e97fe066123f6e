"""The parent's admin API over stand-in worker APIs (aiohttp test servers): /ready and /health aggregated, /metrics
merged, every other route forwarded to the first worker that serves, a reload forwarded as a broadcast."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, generate_latest

from config.settings import load_settings
from consumer.supervisor.http import broadcast_reload, create_parent_app
from consumer.supervisor.parent import Supervisor, WorkerProcess

ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def test_a_reload_is_forwarded_as_a_broadcast_and_a_local_one_refused() -> None:
    assert json.loads(broadcast_reload(b"") or b"") == {"broadcast": True}
    assert json.loads(broadcast_reload(b'{"version": "3"}') or b"") == {"version": "3", "broadcast": True}
    assert json.loads(broadcast_reload(b'{"broadcast": true}') or b"") == {"broadcast": True}
    assert broadcast_reload(b'{"broadcast": false}') is None
    # Not an object: unchanged, the worker answers its 400 as without workers.
    assert broadcast_reload(b"[1]") == b"[1]"
    assert broadcast_reload(b"{nope") == b"{nope"


def worker_api(index: int, *, ready: bool = True, verdict: str = "healthy") -> web.Application:
    registry = CollectorRegistry()
    Counter("housing_scorer_records_scored", "Predictions produced", registry=registry).inc(10 * (index + 1))
    seen: list[dict[str, Any]] = []

    async def ready_view(_: web.Request) -> web.Response:
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def health_view(_: web.Request) -> web.Response:
        return web.json_response({"status": verdict}, status=503 if verdict == "unhealthy" else 200)

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"path": request.path_qs, "body": body, "key": request.headers.get("X-API-Key")})
        return web.json_response({"worker": index, "path": request.path_qs}, status=202,
                                 headers={"X-Worker": str(index)})

    app = web.Application()
    app["seen"] = seen
    app.router.add_get("/ready", ready_view)
    app.router.add_get("/health", health_view)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def running(index: int, url: str | None) -> WorkerProcess:
    worker = WorkerProcess(index=index, instance_id=f"pod-{index}", command=[], report_path=None)
    worker.process = cast(Any, SimpleNamespace(returncode=None, pid=1000 + index))
    worker.state = "running"
    worker.reported_url = url
    return worker


@pytest.fixture
def settings() -> Any:
    return load_settings({}, env={})


async def parent(aiohttp_client: ClientFactory, settings: Any, workers: list[WorkerProcess]) -> TestClient[Any, Any]:
    return await aiohttp_client(create_parent_app(Supervisor(workers), settings))


async def test_ready_only_when_every_worker_is_ready(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory,
                                                     settings: Any) -> None:
    ok = await aiohttp_server(worker_api(0))
    late = await aiohttp_server(worker_api(1, ready=False))
    client = await parent(aiohttp_client, settings, [running(0, str(ok.make_url(""))),
                                                     running(1, str(late.make_url("")))])
    answer = await client.get("/ready")
    assert answer.status == 503
    body = await answer.json()
    assert [w["ready"] for w in body["workers"]] == [True, False]
    both = await parent(aiohttp_client, settings, [running(0, str(ok.make_url(""))),
                                                   running(1, str(ok.make_url("")))])
    assert (await both.get("/ready")).status == 200
    # A worker that has not reported its admin API (starting, restarting) is not ready.
    starting = await parent(aiohttp_client, settings, [running(0, str(ok.make_url(""))), running(1, None)])
    answer = await starting.get("/ready")
    assert answer.status == 503
    assert (await answer.json())["workers"][1] == {"worker": 1, "instance_id": "pod-1", "answered": False,
                                                   "state": "starting"}


async def test_health_is_the_worst_workers_verdict(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory,
                                                   settings: Any) -> None:
    healthy = await aiohttp_server(worker_api(0))
    degraded = await aiohttp_server(worker_api(1, verdict="degraded"))
    unhealthy = await aiohttp_server(worker_api(2, verdict="unhealthy"))
    url = [str(s.make_url("")) for s in (healthy, degraded, unhealthy)]
    client = await parent(aiohttp_client, settings, [running(0, url[0]), running(1, url[1])])
    answer = await client.get("/health")
    assert answer.status == 200 and (await answer.json())["status"] == "degraded"
    client = await parent(aiohttp_client, settings, [running(0, url[0]), running(2, url[2])])
    answer = await client.get("/health")
    assert answer.status == 503 and (await answer.json())["status"] == "unhealthy"
    client = await parent(aiohttp_client, settings, [running(0, url[0]), running(1, None)])
    assert (await client.get("/health")).status == 503


async def test_metrics_of_all_workers_each_labelled(aiohttp_server: ServerFactory, aiohttp_client: ClientFactory,
                                                    settings: Any) -> None:
    first, second = await aiohttp_server(worker_api(0)), await aiohttp_server(worker_api(1))
    client = await parent(aiohttp_client, settings, [running(0, str(first.make_url(""))),
                                                     running(1, str(second.make_url("")))])
    text = await (await client.get("/metrics")).text()
    assert 'housing_scorer_records_scored_total{worker="0"} 10.0' in text
    assert 'housing_scorer_records_scored_total{worker="1"} 20.0' in text
    assert "housing_supervisor_workers 2.0" in text


async def test_other_routes_go_to_the_first_serving_worker_with_the_clients_key(
        aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, settings: Any) -> None:
    apps = [worker_api(0), worker_api(1)]
    servers = [await aiohttp_server(app) for app in apps]
    client = await parent(aiohttp_client, settings, [running(0, None), running(1, str(servers[1].make_url("")))])
    answer = await client.put("/api/mlflow/models/m/aliases/champion?x=1", json={"version": "2"},
                              headers={"X-API-Key": "k"})
    assert answer.status == 202 and answer.headers["X-Worker"] == "1"
    assert await answer.json() == {"worker": 1, "path": "/api/mlflow/models/m/aliases/champion?x=1"}
    assert apps[1]["seen"][-1]["key"] == "k" and json.loads(apps[1]["seen"][-1]["body"]) == {"version": "2"}
    reload = await client.post("/api/model/reload", json={"version": "3"})
    assert reload.status == 202
    assert json.loads(apps[1]["seen"][-1]["body"]) == {"version": "3", "broadcast": True}
    refused = await client.post("/api/model/reload", json={"broadcast": False})
    assert refused.status == 409 and (await refused.json())["error"] == "broadcast_required"
    nobody = await parent(aiohttp_client, settings, [running(0, None)])
    assert (await nobody.get("/api/model/info")).status == 503


async def test_protected_reads_need_the_key_on_the_parents_own_routes(aiohttp_client: ClientFactory) -> None:
    settings = load_settings({"admin.protect_reads": "true", "admin.api_key": "secret"}, env={})
    client = await parent(aiohttp_client, settings, [running(0, None)])
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/api/workers", headers={"X-API-Key": "wrong"})).status == 401
    answer = await client.get("/api/workers", headers={"Authorization": "Bearer secret"})
    assert answer.status == 200
    assert (await answer.json())["workers"][0]["instance_id"] == "pod-0"
    assert (await client.get("/live")).status == 200  # probes stay open

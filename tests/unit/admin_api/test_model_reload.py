"""POST /api/model/reload when the reload outlasts the caller: a timeout answers 504 and a client that goes away
leaves the reload running (the reloader's future is never cancelled), with a fake reloader and registry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.keys import state_key
from admin_api.views import model as model_views
from config.settings import Settings, load_settings
from consumer.state import ReloadResult, ScorerState
from tests.helpers import wait_for

KEY = {"Authorization": "Bearer unit-key"}

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


class NeverDone:
    """A reloader whose futures complete only when the test says so."""

    def __init__(self) -> None:
        self.futures: list[Future[ReloadResult]] = []

    def request(self, **asked: Any) -> Future[ReloadResult]:
        future: Future[ReloadResult] = Future()
        self.futures.append(future)
        return future


class Service:
    def __init__(self, reloader: NeverDone) -> None:
        self.reloader = reloader


class Registry:
    """The registry calls the reload handler makes: every version exists; no tags."""

    client = None

    def get_version(self, name: str, version: str) -> object:
        return object()


def settings_for(tmp_path: Path) -> Settings:
    # A local-store tracking URI: the health monitor has no server to probe.
    return load_settings({"scorer.instance_id": "unit", "monitoring.track_drift": False, "admin.api_key": "unit-key",
                          "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}, env={}, config_path=None)


async def app_client(aiohttp_client: ClientFactory, tmp_path: Path, reloader: NeverDone,
                     **server: Any) -> TestClient[Any, Any]:
    settings = settings_for(tmp_path)
    app = create_app(settings, state=ScorerState(settings), service=Service(reloader),  # type: ignore[arg-type]
                     registry=Registry())  # type: ignore[arg-type]
    return await aiohttp_client(app, server_kwargs=server)


async def test_a_reload_that_outlasts_the_timeout_answers_504_and_keeps_running(
        aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_views, "RELOAD_TIMEOUT_SECONDS", 0.05)
    reloader = NeverDone()
    client = await app_client(aiohttp_client, tmp_path, reloader)
    response = await client.post("/api/model/reload", json={"version": "2"}, headers=KEY)
    assert response.status == 504 and response.content_type == "application/json"
    body = await response.json()
    assert body["error"] == "reload_timeout" and "goes on in the background" in body["message"]
    [future] = reloader.futures
    # The timeout gave up waiting; it did not cancel the reload (a cancelled future killed the reloader thread).
    assert not future.cancelled()
    future.set_result(ReloadResult("loaded", "2"))  # the worker's answer, later: accepted


async def test_a_client_that_disconnects_does_not_cancel_the_reload(
        aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    reloader = NeverDone()
    # handler_cancellation: aiohttp cancels the handler when its client goes away.
    client = await app_client(aiohttp_client, tmp_path, reloader, handler_cancellation=True)
    state = client.app[state_key]
    waiting = asyncio.create_task(client.post("/api/model/reload", json={"version": "2"}, headers=KEY))
    assert await async_wait(lambda: len(reloader.futures) == 1, 10)
    waiting.cancel()  # the client hangs up while the reload runs
    with pytest.raises(asyncio.CancelledError):
        await waiting

    def answered() -> bool:  # the request-metrics middleware counts the cancelled handler
        return any(sample.labels.get("route") == "/api/model/reload" and sample.value > 0
                   for metric in state.metrics.api_requests.collect() for sample in metric.samples
                   if sample.name.endswith("_total"))

    assert await async_wait(answered, 10)
    assert not reloader.futures[0].cancelled()
    reloader.futures[0].set_result(ReloadResult("loaded", "2"))


async def async_wait(condition: Callable[[], bool], timeout: float) -> bool:
    """``wait_for`` off the event loop, so the server keeps serving while the test waits."""
    return await asyncio.to_thread(wait_for, condition, timeout)

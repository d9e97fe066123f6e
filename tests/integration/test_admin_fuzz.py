"""Fuzz the running admin API from its own OpenAPI description with schemathesis.

The app runs on a real port (its own event loop on a background thread) against the real MLflow server and
broker, serving a throwaway registered model, with an API key so the mutating endpoints are exercised too.
The schemathesis CLI then generates valid and invalid requests for every operation and checks: no 5xx,
status codes / content types / bodies as documented, and schema-invalid requests rejected with a 4xx.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from aiohttp import web
from confluent_kafka import Producer

from admin_api.app import create_app
from admin_api.errors import ApiError
from admin_api.registry import RegistryOps
from config.settings import Settings
from consumer.evaluation.join import Joiner
from consumer.evaluation.snapshot import build_snapshot
from consumer.evaluation.stats import LiveStats
from consumer.service import ScorerService
from tests.conftest import train_quick_model
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

API_KEY = "fuzz-key-" + uuid.uuid4().hex
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "negative_data_rejection")


class RunningApp:
    """An aiohttp app served on host:port from a background thread with its own event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="admin-api-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._runner = web.AppRunner(self.app, access_log=None)
            self.loop.run_until_complete(self._runner.setup())
            self.loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
            self.port = int(self._runner.addresses[0][1])  # port 0: the one the site bound
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        assert self._runner is not None
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def start(self) -> RunningApp:
        self._thread.start()
        assert self._started.wait(60), "the admin API did not start within 60s"
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


@pytest.fixture(scope="module")
def throwaway_model(mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    name = f"admin_fuzz_{uuid.uuid4().hex[:6]}"
    return train_quick_model(mlflow_tracking_uri, name, tmp_path_factory.mktemp("fuzz-model"),
                             kinds=("linear_regression",), sample=1000)


class OnlyThisModel(RegistryOps):
    """Refuses registry changes to any model but the throwaway one, whatever the fuzzer comes up with."""

    def __init__(self, settings: Settings, allowed: str) -> None:
        super().__init__(settings)
        self.allowed = allowed

    def _guard(self, name: str) -> None:
        if name != self.allowed:
            raise ApiError(403, "forbidden", f"fuzz guard: only {self.allowed!r} may be changed")

    def transition(self, name: str, version: str, stage: str, archive_existing: bool) -> dict[str, Any]:
        self._guard(name)
        return super().transition(name, version, stage, archive_existing)

    def set_alias(self, name: str, alias: str, version: str) -> dict[str, Any]:
        self._guard(name)
        return super().set_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> dict[str, Any]:
        self._guard(name)
        return super().delete_alias(name, alias)


def publish_empty_evaluation(settings: Settings) -> None:
    """One evaluator snapshot (no pairs yet) on the evaluation topic, as housing-evaluate publishes it at start.

    Without any, /api/model/performance and /api/canary/decide rightly answer 503 (no evaluator has published),
    which the fuzzer counts as a server error; with it, their 200 paths are fuzzed.
    """
    stats = LiveStats(window_ms=600_000, bucket_ms=10_000)
    snapshot = build_snapshot(Joiner(stats, window_ms=600_000, max_pending=1000), evaluator_id="fuzz-evaluator",
                              at_ms=int(time.time() * 1000), dead_lettered={}, bad_predictions=0)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    producer.produce(settings.topics.evaluation, json.dumps(snapshot).encode(), b"fuzz-evaluator")
    assert producer.flush(30) == 0, "the evaluation snapshot was not delivered"


@pytest.fixture
def fuzz_settings(settings_factory, stream_topics, topic_factory, throwaway_model,  # type: ignore[no-untyped-def]
                  group_id) -> Settings:
    topics = {**stream_topics, "evaluation": topic_factory(1, "evaluation", {"cleanup.policy": "compact"})}
    return settings_factory(topics, **{
        **throwaway_model.settings_overrides(),
        "scorer.group_id": group_id,
        "admin.api_key": API_KEY,
        "admin.webhook_secret": "fuzz-webhook-secret",
        "experiment.name": f"admin_fuzz_{uuid.uuid4().hex[:6]}",
        "experiment.batch_size": 50,
    })


@pytest.fixture
def running_app(fuzz_settings: Settings) -> Iterator[RunningApp]:
    """A real scorer (scoring loop on the test topics) with its admin API on a real port."""
    publish_empty_evaluation(fuzz_settings)
    service = ScorerService(fuzz_settings)
    service.start()
    try:
        assert wait_for(lambda: service.state.ready, 60), "the scorer did not get its assignment"
        app = create_app(fuzz_settings, state=service.state, service=service,
                         registry=OnlyThisModel(fuzz_settings, fuzz_settings.model.name))
        running = RunningApp(app, "127.0.0.1", 0).start()
        try:
            yield running
        finally:
            running.stop()
    finally:
        service.stop()


def test_schemathesis_finds_no_server_errors_and_no_spec_violations(running_app: RunningApp, fuzz_settings: Settings,
                                                                   tmp_path: Path) -> None:
    # A real scorer behind it: ready, and healthy with Kafka connected.
    with urllib.request.urlopen(f"{running_app.url}/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{running_app.url}/health", timeout=10) as response:
        health = json.loads(response.read())
    assert (health["status"], health["kafka_connection"]) == ("healthy", "connected"), health
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    # Every {name} the fuzzer sends is the throwaway model: it must never touch anyone else's registry entries.
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.name" = "{fuzz_settings.model.name}"\n')
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
        f"{running_app.url}/api/openapi.json",
        "--checks", CHECKS,
        "--header", f"Authorization: Bearer {API_KEY}",
        "--max-examples", "12",
        "--phases", "examples,coverage,fuzzing",
        "--seed", "20240611",
        "--workers", "1",
        "--request-timeout", "60",
        "--max-failures", "20",
        "--warnings", "off",
        "--report", "junit,json", "--report-junit-path", str(junit), "--report-json-path", str(report),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout[-20000:] + result.stderr[-5000:]
    assert result.returncode == 0, f"schemathesis found problems:\n{output}"
    # It really exercised the API: every operation of the app's own OpenAPI document ran through every phase,
    # with valid requests to each mutating endpoint, and nothing failed, errored or was skipped.
    with urllib.request.urlopen(f"{running_app.url}/api/openapi.json", timeout=10) as response:
        spec = json.loads(response.read())
    operations = {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item
                  if method in {"get", "put", "post", "delete", "patch"}}
    assert len(operations) >= 16 and "POST /api/mlflow/models/{name}/transition" in operations, operations
    # Schemathesis leaves out the operation that serves the document it loaded (GET /api/openapi.json): every
    # other operation must have run.
    operations.discard("GET /api/openapi.json")
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    assert sorted(case.get("name", "") for case in cases) == sorted(operations)
    document = json.loads(report.read_text())
    assert (document["complete"], document["stop_reason"], document["exit_code"]) == (True, "completed", 0)
    assert document["operations"] == {"total": len(operations), "selected": len(operations),
                                      "tested": len(operations), "errored": 0, "skipped": 0, "skip_reasons": []}
    assert {phase: document["phases"][phase]["status"] for phase in ("examples", "coverage", "fuzzing")} == \
        {"examples": "success", "coverage": "success", "fuzzing": "success"}
    counts = document["test_cases"]
    assert (counts["with_failures"], counts["errored"], document["failures"], document["errors"]) == (0, 0, [], [])
    assert counts["generated"] >= 10 * len(operations), counts
    accepted = {op: sum(phase["accepted"] for phase in phases.values())
                for op, phases in document["valid_rates"].items()}
    mutating = ("POST /api/predict", "POST /api/model/reload", "POST /api/model/rollback",
                "POST /api/mlflow/models/{name}/transition", "PUT /api/mlflow/models/{name}/aliases/{alias}",
                "DELETE /api/mlflow/models/{name}/aliases/{alias}")
    assert all(accepted.get(op, 0) > 0 for op in mutating), accepted

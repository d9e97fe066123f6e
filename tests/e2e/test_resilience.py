"""Resilience of a real ``housing-scorer`` process: MLflow outages and a burst of records.

- MLflow stopped while scoring: the loaded model keeps scoring (one output per input), /health says degraded
  and why, reload attempts (admin API, control event) fail cleanly with JSON; MLflow back on the same storage
  and port: a version promoted after the restart is loaded from the event announcing it.
- Scorer started while MLflow is down: it serves the fallback file (MODEL_PATH) and says so in its log and
  /health; MLflow back: the next registry poll moves it to the registry's model (a reload that failed only
  because MLflow was away does not hold the poll off).
- A burst ten times the usual rate, then a 40,000-record backlog at once: memory stays bounded (and does not
  grow with the backlog), lag drains to 0 and every input has exactly one output.

The MLflow tests stop and restart a tracking server of their own (this module's), so the session's server is
never disturbed; the settings are built here rather than with ``settings_factory`` so running this file alone
starts no session MLflow server at all. The broker restart under exactly-once is in test_scorer_process.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest

from config.settings import Settings, load_settings
from consumer.kafka.control import publish_model_update
from stack.mlflow_server import LocalMlflow
from stack.processes import free_port
from tests.conftest import PROJECT_ROOT, RegisteredModel, train_quick_model
from tests.e2e.conftest import BackgroundProducer, ScorerFactory, ScorerProcess, read_outputs, wait_committed
from tests.helpers import Received, keys_of, start_retrying_busy_ports, wait_for
from tests.integration.reload_support import clone_version

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

API_KEY = "resilience-test-key"
WITH_ADMIN_API = {"ADMIN_API_ENABLED": "true"}
"""The scorer_process fixture turns the admin API off by default; these tests read /health over HTTP."""
RSS_LIMIT_MB = 600.0
BACKLOG_GROWTH_LIMIT_MB = 100.0
"""A 4x larger backlog may cost librdkafka's prefetch a little more, never the backlog itself."""


# --- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMlflow]:
    """A tracking server only this module uses: the tests stop it and start it again on the same port and home."""
    def start_server() -> LocalMlflow:  # on another free port if the one chosen was taken before the bind
        server = LocalMlflow(tmp_path_factory.mktemp("own-mlflow"), port=free_port(), workers=1)
        server.start()
        return server

    server = start_retrying_busy_ports(start_server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_up(own_mlflow: LocalMlflow) -> LocalMlflow:
    """The module's server, running (a test that failed mid-outage may have left it stopped)."""
    if own_mlflow.running_pid() is None:
        own_mlflow.start()
    return own_mlflow


@pytest.fixture(scope="module")
def module_model(own_mlflow: LocalMlflow, tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    """HistGradientBoosting (the product's usual best) as champion in the module's server, plus its fallback file.

    Shared by the tests that do not move its aliases.
    """
    import mlflow

    if own_mlflow.running_pid() is None:
        own_mlflow.start()
    # Training calls mlflow.set_tracking_uri, which also exports MLFLOW_TRACKING_URI: left in place, the session's
    # mlflow_tracking_uri fixture (if not yet started) would take this module's server, stopped at its end.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        return train_quick_model(own_mlflow.tracking_uri, f"resilience_{uuid.uuid4().hex[:6]}",
                                 tmp_path_factory.mktemp("resilience-model"), kinds=("hist_gradient_boosting",))
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None unsets the global and the variable


def kill_mlflow(server: LocalMlflow) -> None:
    """kill -9 the whole server (no goodbye to open connections), and wait until it is gone."""
    pid = server.running_pid()
    assert pid is not None, "the module's MLflow server is not running"
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    assert wait_for(lambda: server.running_pid() is None, 15), "MLflow did not die"


def register_copy(tracking_uri: str, model: RegisteredModel, name: str) -> RegisteredModel:
    """``model``'s logged model registered under a new name as v1 @champion (no training: seconds, not tens)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    existing = client.get_model_version(model.model_name, model.version)
    source = str(existing.source)
    # MLflow 3 sources are logged models (models:/m-<id>); the registry wants that id named as well.
    model_id = getattr(existing, "model_id", None) or (source.split("/", 1)[1] if source.startswith("models:/")
                                                        else None)
    client.create_registered_model(name)
    created = client.create_model_version(name, source, existing.run_id, model_id=model_id)
    client.set_registered_model_alias(name, "champion", str(created.version))
    return RegisteredModel(tracking_uri, name, str(created.version), model.fallback_path, str(existing.run_id))


SettingsMaker = Callable[..., Settings]


@pytest.fixture
def make_settings(kafka_bootstrap: str, stream_topics: dict[str, str], group_id: str) -> SettingsMaker:
    """``make_settings(tracking_uri, model, **{"flat__key": value})``: a scorer on fresh topics with its API on."""

    def make(tracking_uri: str, model: RegisteredModel, **overrides: Any) -> Settings:
        flat: dict[str, Any] = {
            "kafka.bootstrap_servers": kafka_bootstrap, "mlflow.tracking_uri": tracking_uri,
            "model.name": model.model_name, "model.fallback_path": str(model.fallback_path),
            "scorer.group_id": group_id, "scorer.batch_max_wait_ms": 20,
            "admin.port": 0, "admin.api_key": API_KEY,  # the scorer binds a free port and logs it
            **{f"topics.{key}": name for key, name in stream_topics.items()},
        }
        flat.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_settings(flat, env={}, config_path=PROJECT_ROOT / "config" / "mlflow_config.yaml")

    return make


# --- talking to the scorer -----------------------------------------------------------------------------------
class AdminClient:
    """The scorer subprocess's admin API over HTTP."""

    def __init__(self, settings: Settings, proc: ScorerProcess) -> None:
        self.url = proc.admin_url()
        self.proc = proc

    def call(self, method: str, path: str, body: Any = None, *, key: bool = True,
             timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {API_KEY}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"{}")
            except ValueError:
                raise AssertionError(f"{method} {path}: {exc.code} without a JSON body: {raw[:200]!r}") from None

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health", key=False, timeout=10)[1]

    def wait_health(self, condition: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """Until /health satisfies ``condition``; fails with the last answer and the scorer's log otherwise."""
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            assert self.proc.alive(), f"scorer exited ({self.proc.process.returncode}):\n{self.proc.tail()}"
            try:
                last = self.health()
            except (urllib.error.URLError, OSError):
                return False  # the API is not listening yet
            return condition(last)

        assert wait_for(check, timeout, 0.2), f"/health never showed {what} within {timeout:.0f}s: {last}\n" \
                                              f"{self.proc.tail()}"
        return last


def start_scorer(scorer_process: ScorerFactory, settings: Settings, name: str) -> tuple[ScorerProcess, AdminClient]:
    proc = scorer_process(settings, instance_id=name, args=(), env=WITH_ADMIN_API)
    api = AdminClient(settings, proc)
    api.wait_health(lambda h: h.get("model_loaded") is True, 30, "a loaded model (the admin API answering)")
    return proc, api


def mlflow_reasons(health: dict[str, Any]) -> list[str]:
    return [r for r in health["reasons"] if "MLflow" in r]


def exact_outputs(settings: Settings, keys: Sequence[str]) -> list[Received]:
    """Each key has exactly one prediction (read_committed) and nothing else came out; returns the predictions."""
    predictions, dead = read_outputs(settings, len(keys), 0)
    counted = Counter(keys_of(predictions))
    duplicates = {k: n for k, n in counted.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} keys predicted more than once, e.g. {list(duplicates.items())[:5]}"
    assert set(counted) == set(keys), (f"predictions: {len(set(keys) - set(counted))} missing, "
                                       f"{len(set(counted) - set(keys))} unexpected")
    assert not dead, f"{len(dead)} unexpected dead letters, e.g. {dead[0].headers}"
    return predictions


def versions_of(predictions: Sequence[Received], prefix: str) -> set[str]:
    """The model_version headers of the predictions whose key starts with ``prefix``."""
    return {m.header_map["model_version"].decode() for m in predictions
            if m.key is not None and m.key.decode().startswith(prefix)}


# --- MLflow outages ------------------------------------------------------------------------------------------
def test_mlflow_outage_scoring_goes_on_reloads_fail_cleanly_and_resume(
        mlflow_up: LocalMlflow, module_model: RegisteredModel, make_settings: SettingsMaker,
        scorer_process: ScorerFactory) -> None:
    server = mlflow_up
    # A registered name of its own: this test moves the champion alias.
    model = register_copy(server.tracking_uri, module_model, f"outage_{uuid.uuid4().hex[:6]}")
    # No registry poll during the test: the event path is what must work again after the restart.
    settings = make_settings(server.tracking_uri, model, model__reload_interval=300)
    scorer, api = start_scorer(scorer_process, settings, "mlflow-outage")
    health = api.health()
    assert (health["model_source"], health["model_version"]) == ("registry", model.version), health
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records

    kill_mlflow(server)
    health = api.wait_health(lambda h: h["mlflow_connection"] == "unhealthy", 30, "MLflow unhealthy")
    assert health["status"] == "degraded", health
    assert any("unreachable" in r for r in mlflow_reasons(health)), health["reasons"]
    assert health["model_version"] == model.version and health["model_source"] == "registry", health

    # Reload attempts fail with a JSON error saying MLflow is unavailable; the process and its model stay.
    for body in ({}, {"alias": "champion"}, {"version": model.version}):
        status, answer = api.call("POST", "/api/model/reload", body)
        assert (status, answer.get("error")) == (503, "mlflow_unavailable"), (body, status, answer)
        assert scorer.alive(), scorer.tail()
    event = publish_model_update(settings, type="promoted", model_name=model.model_name, version="2",
                                 alias="champion", source="resilience-test")
    health = api.wait_health(lambda h: (h["last_reload"] or {}).get("event_id") == event.event_id, 60,
                             "the event's reload attempt")
    assert health["last_reload"]["result"] == "failed", health["last_reload"]
    assert health["model_version"] == model.version and health["status"] == "degraded", health

    # Scoring goes on with the loaded model while MLflow is away.
    during = BackgroundProducer(settings, 2000, rate=1000, prefix="outage")
    during.run()
    wait_committed(bootstrap, group, topic, 3, 2000, 60, [scorer])
    assert server.running_pid() is None

    server.start()  # same home (database and artifacts kept) and same port
    api.wait_health(lambda h: h["mlflow_connection"] == "healthy", 30, "MLflow healthy again")
    new_version = clone_version(server.tracking_uri, model.model_name, model.version)
    status, answer = api.call("PUT", f"/api/mlflow/models/{model.model_name}/aliases/champion",
                              {"version": new_version})
    assert status == 200 and answer["announced"] is True, answer
    health = api.wait_health(lambda h: h["model_version"] == new_version, 60, f"v{new_version} serving")
    assert health["last_reload"]["result"] == "loaded", health["last_reload"]
    assert health["last_reload"]["event_id"] == answer["event"]["event_id"], health["last_reload"]
    assert not mlflow_reasons(health) and not any("reload failed" in r for r in health["reasons"]), health
    # The API's reload works again too (nothing to do: that version already serves).
    status, reloaded = api.call("POST", "/api/model/reload", {})
    assert status == 200 and reloaded["status"] == "ignored", reloaded

    after = BackgroundProducer(settings, 500, rate=1000, prefix="after")
    after.run()
    wait_committed(bootstrap, group, topic, 3, 2500, 60, [scorer])
    predictions = exact_outputs(settings, during.keys + after.keys)
    assert versions_of(predictions, "outage-") == {model.version}
    assert versions_of(predictions, "after-") == {new_version}
    assert scorer.alive(), scorer.tail()
    scorer.terminate()
    assert scorer.wait(60) == 0, scorer.tail()


def test_started_while_mlflow_down_serves_fallback_then_moves_to_registry(
        mlflow_up: LocalMlflow, module_model: RegisteredModel, make_settings: SettingsMaker,
        scorer_process: ScorerFactory) -> None:
    server = mlflow_up
    settings = make_settings(server.tracking_uri, module_model, model__reload_interval=1)
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records
    kill_mlflow(server)

    scorer, api = start_scorer(scorer_process, settings, "fallback-start")
    assert "SERVING THE FALLBACK MODEL" in scorer.log(), scorer.tail()
    health = api.wait_health(lambda h: h["mlflow_connection"] == "unhealthy", 30, "MLflow unhealthy")
    assert health["status"] == "degraded" and health["model_source"] == "fallback", health
    assert any("fallback" in r for r in health["reasons"]) and mlflow_reasons(health), health["reasons"]

    before = BackgroundProducer(settings, 1000, rate=1000, prefix="fallback")
    before.run()
    wait_committed(bootstrap, group, topic, 3, 1000, 60, [scorer])
    # An event naming the champion's version fails while MLflow is away; it must not hold the poll off later.
    event = publish_model_update(settings, type="promoted", model_name=module_model.model_name,
                                 version=module_model.version, alias="champion", source="resilience-test")
    health = api.wait_health(lambda h: (h["last_reload"] or {}).get("event_id") == event.event_id, 60,
                             "the event's reload attempt")
    assert health["last_reload"]["result"] == "failed" and health["model_source"] == "fallback", health

    server.start()
    # A poll a second, a load of seconds: 30 s is generous (a failed-version back-off would take 60).
    health = api.wait_health(lambda h: h["model_source"] == "registry", 30, "the registry's model serving")
    assert health["model_version"] == module_model.version, health
    assert health["last_reload"]["result"] == "loaded", health["last_reload"]
    health = api.wait_health(lambda h: h["mlflow_connection"] == "healthy", 30, "MLflow healthy")
    assert not any("fallback" in r or "MLflow" in r for r in health["reasons"]), health["reasons"]
    assert "registry poll" in scorer.log(), scorer.tail()

    after = BackgroundProducer(settings, 1000, rate=1000, prefix="registry")
    after.run()
    wait_committed(bootstrap, group, topic, 3, 2000, 60, [scorer])
    exact_outputs(settings, before.keys + after.keys)
    scorer.terminate()
    assert scorer.wait(60) == 0, scorer.tail()


# --- a burst --------------------------------------------------------------------------------------------------
@dataclass
class Sampler:
    """Samples the scorer's RSS (and its reported lag) on a thread; ``phase(name)`` starts a new peak."""

    pid: int
    api: AdminClient
    interval: float = 0.1
    peaks_mb: dict[str, float] = field(default_factory=dict)
    max_lag: dict[str, int] = field(default_factory=dict)
    current: str = "start"
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def phase(self, name: str) -> None:
        self.current = name

    def _run(self) -> None:
        process = psutil.Process(self.pid)
        next_health = 0.0
        while not self._stop.is_set():
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.Error:
                return  # the scorer ended
            phase = self.current
            self.peaks_mb[phase] = max(self.peaks_mb.get(phase, 0.0), rss)
            if time.monotonic() >= next_health:  # /health less often: it is not free for the scorer
                next_health = time.monotonic() + 0.5
                try:
                    lag = int(self.api.health()["consumer_lag"])
                    self.max_lag[phase] = max(self.max_lag.get(phase, 0), lag)
                except (urllib.error.URLError, OSError, KeyError, ValueError):
                    pass
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def test_burst_and_backlog_memory_bounded_lag_drains_nothing_lost(
        mlflow_up: LocalMlflow, module_model: RegisteredModel, make_settings: SettingsMaker,
        scorer_process: ScorerFactory) -> None:
    settings = make_settings(mlflow_up.tracking_uri, module_model)
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records
    # Records built before the clock starts: the burst is then as fast as librdkafka takes them.
    usual = BackgroundProducer(settings, 2000, rate=500, prefix="usual")
    burst = BackgroundProducer(settings, 10_000, rate=5000, prefix="burst")
    small_backlog = BackgroundProducer(settings, 10_000, prefix="small")
    backlog = BackgroundProducer(settings, 40_000, prefix="backlog")
    scorer, api = start_scorer(scorer_process, settings, "burst")
    sampler = Sampler(scorer.pid, api).start()
    try:
        # The burst, then backlogs produced at once (far faster than the scorer takes them): 10k, then 4x that.
        for phase, records, committed, timeout in (("usual", usual, 2000, 60), ("burst x10", burst, 12_000, 90),
                                                   ("backlog 10k", small_backlog, 22_000, 90),
                                                   ("backlog 40k", backlog, 62_000, 120)):
            sampler.phase(phase)
            records.run()
            wait_committed(bootstrap, group, topic, 3, committed, timeout, [scorer])
        health = api.wait_health(lambda h: h["consumer_lag"] == 0, 30, "consumer lag 0")
        sampler.phase("drained")
    finally:
        sampler.stop()
    peaks, lags = sampler.peaks_mb, sampler.max_lag
    logger.info("scorer RSS peaks (MiB): %s; max lag seen: %s", peaks, lags)
    summary = f"RSS peaks {({k: round(v) for k, v in peaks.items()})} MiB, max lag {lags}"
    assert health["assigned_partitions"] == 3 and health["status"] != "unhealthy", health
    assert max(peaks.values()) < RSS_LIMIT_MB, summary
    assert peaks["backlog 40k"] - peaks["backlog 10k"] < BACKLOG_GROWTH_LIMIT_MB, summary
    # Two backlogs, a lag refresh every 0.5 s: /health must have shown one of them.
    assert lags.get("backlog 10k", 0) + lags.get("backlog 40k", 0) > 0, f"no lag seen in /health: {summary}"
    exact_outputs(settings, usual.keys + burst.keys + small_backlog.keys + backlog.keys)
    assert scorer.alive(), scorer.tail()
    scorer.terminate()
    assert scorer.wait(60) == 0, scorer.tail()

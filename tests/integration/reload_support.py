"""Shared pieces of the hot-reload integration tests: model versions (good and corrupt), a paced producer,
scorer settings on fresh topics, and reading predictions back with their versions."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from config.settings import Settings
from schemas.codecs import decode_prediction
from tests.conftest import RegisteredModel, train_quick_model
from tests.helpers import FEATURES, Received, housing_rows


def client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def two_versions(tracking_uri: str, out_dir: Path, *, distinct: bool = False) -> tuple[str, str, str]:
    """A fresh model name with v1 (linear, champion) and v2 (challenger only): (name, v1, v2).

    :param distinct: train v2 as a decision tree (different predictions, ~6 s more); otherwise v2 is a new
        registry version of v1's logged model, which is all a version switch needs.
    """
    name = f"hot_reload_{uuid.uuid4().hex[:8]}"
    first = train_quick_model(tracking_uri, name, out_dir / "v1", kinds=("linear_regression",), sample=600)
    if distinct:
        second = train_quick_model(tracking_uri, name, out_dir / "v2", kinds=("decision_tree",), sample=600,
                                   promote=False)
        return name, first.version, second.version
    return name, first.version, clone_version(tracking_uri, name, first.version, alias="challenger")


def clone_version(tracking_uri: str, name: str, version: str, *, alias: str | None = None) -> str:
    """Register the same logged model again as a new version (no training); optionally give it an alias."""
    mlflow_client = client(tracking_uri)
    existing = mlflow_client.get_model_version(name, version)
    source = str(existing.source)
    # MLflow 3 sources are logged models (models:/m-<id>); the registry wants that id named as well.
    model_id = getattr(existing, "model_id", None) or (source.split("/", 1)[1] if source.startswith("models:/")
                                                        else None)
    created = mlflow_client.create_model_version(name, source, existing.run_id, model_id=model_id)
    if alias:
        mlflow_client.set_registered_model_alias(name, alias, str(created.version))
    return str(created.version)


def registry_estimator(tracking_uri: str, name: str, version: str) -> Any:
    """The scikit-learn model of ``name`` v``version``, downloaded from the registry and unpickled by MLflow
    itself (not by the scorer's loader): the oracle its predictions are checked against."""
    import mlflow
    import mlflow.sklearn

    saved_env, saved_uri = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # The version's own artifact location: a models:/ URI would be resolved by the global registry URI.
            location = client(tracking_uri).get_model_version_download_uri(name, version)
            local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp,
                                                        tracking_uri=tracking_uri)
            return mlflow.sklearn.load_model(local)
    finally:  # the process-wide MLflow settings as they were
        mlflow.set_tracking_uri(saved_uri)
        if saved_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def offline_predict(estimator: Any, rows: list[dict[str, Any]]) -> list[float]:
    """``estimator.predict`` on the feature columns of ``rows``, built here by hand (None -> NaN)."""
    import pandas as pd

    frame = pd.DataFrame([{f: (float("nan") if row[f] is None else row[f]) for f in FEATURES} for row in rows],
                         columns=list(FEATURES))
    return [float(v) for v in estimator.predict(frame)]


def fallback_of(tracking_uri: str, name: str, out_dir: Path) -> RegisteredModel:
    return RegisteredModel(tracking_uri, name, "1", out_dir / "v1" / "model.pkl", "")


def move_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    client(tracking_uri).set_registered_model_alias(name, alias, version)


def corrupt_version(tracking_uri: str, name: str) -> str:
    """Register a version whose artifact is garbage: a sklearn MLmodel whose pickle is not a pickle."""
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name("hot-reload-tests")
    experiment_id = experiment.experiment_id if experiment else mlflow_client.create_experiment("hot-reload-tests")
    run = mlflow_client.create_run(experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        os.makedirs(model_dir)
        Path(model_dir, "MLmodel").write_text(
            "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    serialization_format: cloudpickle\n"
            "    sklearn_version: 1.5.0\n  python_function:\n    loader_module: mlflow.sklearn\n"
            "    model_path: model.pkl\n")
        Path(model_dir, "model.pkl").write_bytes(b"this is not a pickle")
        mlflow_client.log_artifacts(run.info.run_id, model_dir, "model")
    mlflow_client.set_terminated(run.info.run_id)
    version = mlflow_client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    return str(version.version)


def scorer_overrides(name: str, fallback: Path, group_id: str, **extra: Any) -> dict[str, Any]:
    return {"model__name": name, "model__fallback_path": str(fallback), "scorer__group_id": group_id,
            "scorer__batch_max_wait_ms": 20, "scorer__batch_max_records": 200,
            "model__reload_interval": 300, **extra}


class PacedProducer:
    """Produces JSON records at a fixed rate on its own thread until stopped; remembers every key sent."""

    def __init__(self, settings: Settings, rate: float, *, prefix: str | None = None) -> None:
        self.settings = settings
        self.rate = rate
        self.prefix = prefix or uuid.uuid4().hex[:6]
        self.keys: list[str] = []
        self.rows = housing_rows(2000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)
        self.error: str | None = None

    def start(self) -> PacedProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        producer = Producer({**self.settings.kafka.client_config(), "linger.ms": 5, "enable.idempotence": True})
        rows = self.rows
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate) + 1
            while sent < due:
                key = f"{self.prefix}-{sent}"
                row = rows[sent % len(rows)]
                producer.produce(self.settings.topics.records, key=key.encode(),
                                 value=json.dumps({**row, "record_id": key, "event_time": int(time.time() * 1000)}))
                self.keys.append(key)
                sent += 1
            producer.poll(0)
            self._stop.wait(0.01)
        if producer.flush(30):
            self.error = "records not delivered"

    def row_of(self, key: str) -> dict[str, Any]:
        """The features sent with ``key``."""
        return self.rows[int(key.rsplit("-", 1)[1]) % len(self.rows)]

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(40)
        assert self.error is None, self.error
        return self.keys


def versions_by_partition(predictions: list[Received]) -> dict[int, list[str]]:
    """Model version of each prediction, in offset order per output partition."""
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for message in predictions:
        out[message.partition].append((message.offset, message.header_map["model_version"].decode()))
    return {p: [v for _, v in sorted(items)] for p, items in out.items()}


def switches_once(sequence: list[str], old: str, new: str) -> bool:
    """old...old new...new (either part may be empty): nothing old after the first new."""
    if new not in sequence:
        return set(sequence) <= {old}
    first_new = sequence.index(new)
    return set(sequence[:first_new]) <= {old} and set(sequence[first_new:]) == {new}


def decoded(predictions: list[Received]) -> list[dict[str, Any]]:
    return [decode_prediction(m.value) for m in predictions]


def scored_by(service: Any, version: str) -> Callable[[], bool]:
    """Condition: the service has produced predictions with ``version``."""
    def check() -> bool:
        return service.state.metrics.records_scored.labels(model_version=version)._value.get() > 0
    return check


class AdminServer:
    """The real admin API of an in-process scorer, served from a thread of its own on a port its site binds
    itself (port 0, read back: no port chosen first and taken by someone else before the bind)."""

    def __init__(self, settings: Settings, service: Any) -> None:
        self.settings = settings
        self.service = service
        self.url = ""
        self._ready = threading.Event()
        self._loop: Any = None
        self._stop: Any = None
        self._thread = threading.Thread(target=self._run, name="admin-api", daemon=True)

    def __enter__(self) -> AdminServer:
        self._thread.start()
        assert self._ready.wait(30), "admin API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._serve())

    async def _serve(self) -> None:
        import asyncio

        from aiohttp import web

        from admin_api.app import create_app

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = create_app(self.settings, state=self.service.state, service=self.service)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.admin.host, 0).start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def mlflow_delivery(secret: str, payload: dict[str, Any], *, timestamp: float | None = None
                    ) -> tuple[bytes, dict[str, str]]:
    """Body and headers exactly as MLflow's webhook delivery builds and signs them."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body_text = json.dumps(payload)
    delivery_id = str(uuid.uuid4())
    stamp = str(int(time.time() if timestamp is None else timestamp))
    return body_text.encode(), {
        "Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, stamp, body_text)}

"""Session fixtures: one real Kafka broker and one real MLflow server for the whole test session.

The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; testcontainers' Kafka container where a
Docker engine answers; otherwise the project's own local KRaft broker (the same code as ``housing-stack up``),
on free ports in a temporary folder. MLflow: ``MLFLOW_TRACKING_URI`` if set, else a local ``mlflow server``.
Both start lazily, so ``pytest tests/unit`` needs nothing running.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings, load_settings
from stack.kafka import LocalKafka, broker_answers, ensure_topics
from stack.local import DLQ_MAX_MESSAGE_BYTES
from stack.mlflow_server import LocalMlflow
from stack.processes import free_port
from stack.schema_registry import LocalSchemaRegistry
from tests.helpers import start_retrying_busy_ports

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Read once, before any test runs: MLflow's set_tracking_uri (called by training) writes MLFLOW_TRACKING_URI
# into this process's environment, which must not turn into "an external server was given".
EXTERNAL_KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
EXTERNAL_MLFLOW = os.environ.get("MLFLOW_TRACKING_URI")
EXTERNAL_SCHEMA_REGISTRY = os.environ.get("SCHEMA_REGISTRY_URL")


def _docker_engine_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # no SDK, no socket, no engine: all mean "no Docker here"
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker for this session."""
    external = EXTERNAL_KAFKA
    if external:
        assert broker_answers(external), f"KAFKA_BOOTSTRAP_SERVERS={external} does not answer"
        yield external
        return
    if os.environ.get("HOUSING_TESTS_USE_DOCKER", "1") == "1" and _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]

        container = KafkaContainer().with_kraft()
        container.with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "10")
        with container:
            yield container.get_bootstrap_server()
        return
    def start_broker() -> LocalKafka:
        broker = LocalKafka(tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port())
        broker.start()
        return broker

    broker = start_retrying_busy_ports(start_broker)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mlflow_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HTTP URI of a real MLflow tracking server (SQLite backend, local artifacts) for this session."""
    external = EXTERNAL_MLFLOW
    if external:
        yield external
        return
    def start_server() -> LocalMlflow:
        # No webhook cache: a webhook a test registers gets the very next alias move (with the stack's 2 s
        # cache, an alias moved right after registering reached no receiver: test_webhooks_live).
        server = LocalMlflow(tmp_path_factory.mktemp("mlflow"), port=free_port(), webhook_cache_ttl=0)
        server.start()
        return server

    server = start_retrying_busy_ports(start_server)
    try:
        yield server.tracking_uri
    finally:
        server.stop()


def _mlflow_registry_uri() -> str | None:
    """The registry URI set with ``mlflow.set_registry_uri`` (None when unset: it follows the tracking URI)."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._model_registry import utils  # MLflow keeps it in this module's global

    return utils._registry_uri  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def process_wide_state_restored() -> Iterator[None]:
    """Every test leaves the process as it found it: the environment (training's ``mlflow.set_tracking_uri``
    exports MLFLOW_TRACKING_URI) and MLflow's global tracking and registry URIs, put back even when the test
    fails. A registry URI left behind sends a later test's ``register_model`` to another server than the one
    its model was logged to (seen: test_flavours' ``set_registry_uri``, then test_resilience's own server)."""
    before = dict(os.environ)
    registry_before = _mlflow_registry_uri()
    try:
        yield
    finally:
        if "mlflow" in sys.modules:
            import mlflow

            if mlflow.get_tracking_uri() != before.get("MLFLOW_TRACKING_URI"):
                mlflow.set_tracking_uri(before.get("MLFLOW_TRACKING_URI"))  # type: ignore[arg-type]  # None: unset
            if _mlflow_registry_uri() != registry_before:
                mlflow.set_registry_uri(registry_before)  # type: ignore[arg-type]  # None: follow the tracking URI
        if dict(os.environ) != before:
            os.environ.clear()
            os.environ.update(before)


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Confluent-compatible URL of a real schema registry for this session: ``SCHEMA_REGISTRY_URL`` if set, else
    the local stack's Apicurio Registry (in-memory storage; built from Maven Central once, cached)."""
    if EXTERNAL_SCHEMA_REGISTRY:
        yield EXTERNAL_SCHEMA_REGISTRY
        return
    def start_registry() -> LocalSchemaRegistry:
        registry = LocalSchemaRegistry(tmp_path_factory.mktemp("schema-registry"), port=free_port())
        registry.start()
        return registry

    registry = start_retrying_busy_ports(start_registry)
    try:
        yield registry.url
    finally:
        registry.stop()


def _topic_safe(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]", "_", name)[:150]


@pytest.fixture
def topic_factory(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create a fresh topic named after the test: ``topic_factory(partitions=3, suffix="records") -> name``."""

    def create(partitions: int = 1, suffix: str = "", config: dict[str, str] | None = None) -> str:
        name = _topic_safe(f"{request.node.name}-{suffix}-{uuid.uuid4().hex[:8]}")
        ensure_topics({"bootstrap.servers": kafka_bootstrap}, {name: (partitions, config or {})})
        return name

    return create


@pytest.fixture
def group_id(request: pytest.FixtureRequest) -> str:
    """A consumer group id nobody else uses."""
    return _topic_safe(f"group-{request.node.name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def stream_topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    """A fresh set of the five topics for one test (names as in Settings.topics)."""
    return {
        # Large enough for the corpus' 1 MiB record, which must reach the scorer to be dead-lettered whole.
        "records": topic_factory(3, "records", {"max.message.bytes": str(2 * 1024 * 1024)}),
        "predictions": topic_factory(3, "predictions"),
        "dead_letter": topic_factory(3, "dlq", {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
        "model_updates": topic_factory(1, "updates"),
        "scorer_status": topic_factory(1, "status", {"cleanup.policy": "compact"}),
    }


@pytest.fixture
def settings_factory(kafka_bootstrap: str, mlflow_tracking_uri: str,
                     tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing at the session's broker and MLflow server; flat-key overrides on top."""

    def make(topics: dict[str, str] | None = None, **overrides: Any) -> Settings:
        flat: dict[str, Any] = {
            "kafka.bootstrap_servers": kafka_bootstrap,
            "mlflow.tracking_uri": mlflow_tracking_uri,
            "admin.port": 0,  # the service binds any free port (no free_port() race)
        }
        for key, value in (topics or {}).items():
            flat[f"topics.{key}"] = value
        flat.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_settings(flat, env={}, config_path=PROJECT_ROOT / "config" / "mlflow_config.yaml")

    return make


class RegisteredModel:
    """A model trained in this session, registered and promoted in the session's MLflow server."""

    def __init__(self, tracking_uri: str, model_name: str, version: str, fallback_path: Path, run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.version = version
        self.fallback_path = fallback_path
        self.run_id = run_id

    def settings_overrides(self) -> dict[str, Any]:
        return {"model.name": self.model_name, "model.fallback_path": str(self.fallback_path),
                "mlflow.tracking_uri": self.tracking_uri}


def train_quick_model(tracking_uri: str, model_name: str, out_dir: Path, *, kinds: tuple[str, ...],
                      promote: bool = True, sample: int = 2000, seed: int = 42) -> RegisteredModel:
    """Train a small model with the real training code (seconds, not minutes) and register it."""
    from training.register import TrainingConfig, train_and_register

    config = TrainingConfig(tracking_uri=tracking_uri, model_name=model_name, models=kinds, promote=promote,
                            fallback_path=str(out_dir / "model.pkl"), sample=sample, seed=seed, progress=False)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        result = train_and_register(config)
    finally:  # training's mlflow.set_tracking_uri also sets the variable for the whole process
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return RegisteredModel(tracking_uri, model_name, str(result.version), out_dir / "model.pkl",
                           result.run_id)


@pytest.fixture(scope="session")
def registered_model(mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    """HistGradientBoosting (the product's usual best) registered as champion, for scorer tests.

    Tests that change aliases or register versions must use their own model name (``train_quick_model``).
    """
    name = f"housing_test_model_{uuid.uuid4().hex[:6]}"
    return train_quick_model(mlflow_tracking_uri, name, tmp_path_factory.mktemp("model"),
                             kinds=("hist_gradient_boosting",))


@pytest.fixture
def scorer_settings(settings_factory: Callable[..., Settings], stream_topics: dict[str, str],
                    registered_model: RegisteredModel, group_id: str) -> Settings:
    """Settings of one scorer on fresh topics, serving the session's registered model."""
    return settings_factory(stream_topics, **{**registered_model.settings_overrides(),
                                              "scorer.group_id": group_id,
                                              "scorer.batch_max_wait_ms": 20})

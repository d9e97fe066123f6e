"""The benchmark environment: a broker and an MLflow server (fresh, or reused), topics, the model, machine info.

By default a fresh local stack (``stack.kafka.LocalKafka`` + ``stack.mlflow_server.LocalMlflow``) is started
on free ports in a temporary folder and stopped at the end, so nothing else on the machine is disturbed;
``--bootstrap-servers`` / ``--tracking-uri`` reuse running ones. Every benchmark run gets its own topics,
consumer groups and registered-model name.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from config.mlflow import mlflow_answers
from config.settings import Settings, load_settings
from stack.kafka import KAFKA_VERSION, LocalKafka, broker_answers, ensure_topics
from stack.mlflow_server import LocalMlflow
from stack.processes import free_port

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
CACHE_DIR = RESULTS_DIR / ".cache"
PARTITIONS = 6
"""Partitions of records / predictions / DLQ, as ``housing-stack up`` creates them (TOPIC_PARTITIONS)."""
MODEL_KIND = "hist_gradient_boosting"
TRAIN_SAMPLE = 20_000


def step(message: str) -> None:
    """One progress line (benchmarks run for minutes: say what is happening)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Topics:
    records: str
    predictions: str
    dead_letter: str
    model_updates: str
    scorer_status: str

    def as_settings(self) -> dict[str, str]:
        return {f"topics.{name}": value for name, value in self.__dict__.items()}


@dataclass(frozen=True)
class BenchModel:
    """A registered model the benchmarks serve: its name, versions and fallback files."""

    name: str
    versions: tuple[str, ...]
    fallback_paths: tuple[Path, ...]
    train_seconds: tuple[float, ...]


@dataclass
class BenchEnv:
    """Broker + MLflow for one ``python -m bench`` run; ``close()`` stops what it started."""

    bootstrap_servers: str
    tracking_uri: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    home: Path | None = None
    _kafka: LocalKafka | None = None
    _mlflow: LocalMlflow | None = None
    model: BenchModel | None = None
    _watchers: dict[tuple[str, str], CommittedWatcher] = field(default_factory=dict)

    @classmethod
    def open(cls, bootstrap_servers: str | None, tracking_uri: str | None) -> BenchEnv:
        home = Path(tempfile.mkdtemp(prefix="housing-bench-"))
        kafka = mlflow = None
        try:
            if bootstrap_servers:
                if not broker_answers(bootstrap_servers):
                    raise SystemExit(f"bench: Kafka at {bootstrap_servers} does not answer")
            else:
                kafka = LocalKafka(home / "kafka", port=free_port(), controller_port=free_port())
                step(f"starting a local Kafka {KAFKA_VERSION} broker on port {kafka.port}")
                kafka.start()
                bootstrap_servers = kafka.bootstrap_servers
            if tracking_uri:
                if not mlflow_answers(tracking_uri):
                    raise SystemExit(f"bench: MLflow at {tracking_uri} does not answer")
            else:
                mlflow = LocalMlflow(home / "mlflow", port=free_port())
                step(f"starting a local MLflow server on port {mlflow.port}")
                mlflow.start()
                tracking_uri = mlflow.tracking_uri
        except BaseException:
            for started in (mlflow, kafka):
                if started is not None:
                    started.stop()
            shutil.rmtree(home, ignore_errors=True)
            raise
        return cls(bootstrap_servers, tracking_uri, home=home, _kafka=kafka, _mlflow=mlflow)

    def close(self) -> None:
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()
        for started in (self._mlflow, self._kafka):
            if started is not None:
                step(f"stopping {type(started).__name__}")
                started.stop()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)

    @property
    def client_config(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap_servers}

    @property
    def scratch(self) -> Path:
        assert self.home is not None
        return self.home

    def fresh_topics(self, tag: str) -> Topics:
        prefix = f"bench-{self.run_id}-{tag}-{uuid.uuid4().hex[:4]}"
        topics = Topics(f"{prefix}.records", f"{prefix}.predictions", f"{prefix}.dlq", f"{prefix}.updates",
                        f"{prefix}.status")
        ensure_topics(self.client_config, {
            topics.records: (PARTITIONS, {}),
            topics.predictions: (PARTITIONS, {}),
            topics.dead_letter: (PARTITIONS, {}),
            topics.model_updates: (1, {}),
            topics.scorer_status: (1, {"cleanup.policy": "compact"}),
        })
        return topics

    def create_topic(self, name: str, partitions: int = PARTITIONS) -> str:
        ensure_topics(self.client_config, {name: (partitions, {})})
        return name

    def group_id(self, tag: str) -> str:
        return f"bench-{self.run_id}-{tag}-{uuid.uuid4().hex[:4]}"

    def settings(self, topics: Topics | None = None, **flat: Any) -> Settings:
        """Product settings pointing at this environment (flat keys, e.g. ``{"scorer.group_id": ...}``)."""
        overrides: dict[str, Any] = {
            "kafka.bootstrap_servers": self.bootstrap_servers,
            "mlflow.tracking_uri": self.tracking_uri,
        }
        if self.model is not None:
            overrides["model.name"] = self.model.name
            overrides["model.fallback_path"] = str(self.model.fallback_paths[0])
        if topics is not None:
            overrides.update(topics.as_settings())
        overrides.update(flat)
        return load_settings(overrides, env={}, config_path=str(PROJECT_ROOT / "config" / "mlflow_config.yaml"))

    # --- the model ------------------------------------------------------------------------------------
    def prepare_model(self, versions: int = 1) -> BenchModel:
        """Register ``versions`` HistGradientBoosting versions (20,000-row sample); the last is champion."""
        from training.register import TrainingConfig, train_and_register

        have = self.model
        name = have.name if have else f"bench_housing_{self.run_id}"
        got_versions = list(have.versions) if have else []
        paths = list(have.fallback_paths) if have else []
        seconds = list(have.train_seconds) if have else []
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        while len(got_versions) < versions:
            n = len(got_versions) + 1
            step(f"training {MODEL_KIND} version {n} of {name} (sample {TRAIN_SAMPLE:,} rows) and registering it")
            started = time.perf_counter()
            config = TrainingConfig(tracking_uri=self.tracking_uri, model_name=name, models=(MODEL_KIND,),
                                    promote=True, fallback_path=str(CACHE_DIR / f"model-v{n}.pkl"),
                                    sample=TRAIN_SAMPLE, seed=41 + n, progress=False)
            result = train_and_register(config)
            got_versions.append(str(result.version))
            paths.append(Path(result.fallback_path))
            seconds.append(time.perf_counter() - started)
            step(f"registered {name} v{result.version} in {seconds[-1]:.1f}s (rmse {result.metrics['rmse']:,.0f})")
        self.model = BenchModel(name, tuple(got_versions), tuple(paths), tuple(seconds))
        return self.model

    # --- Kafka helpers --------------------------------------------------------------------------------
    def committed_total(self, group_id: str, topic: str, partitions: int = PARTITIONS) -> int:
        """Sum of the group's committed offsets on ``topic`` (how many records it has finished)."""
        watcher = self._watchers.get((group_id, topic))
        if watcher is None:
            watcher = self._watchers[(group_id, topic)] = CommittedWatcher(self.client_config, group_id, topic,
                                                                           partitions)
        return watcher.total()

    def forget_group(self, group_id: str, topic: str) -> None:
        watcher = self._watchers.pop((group_id, topic), None)
        if watcher is not None:
            watcher.close()


class CommittedWatcher:
    """Reads a group's committed offsets without joining the group; a transient error returns the last total."""

    def __init__(self, client_config: dict[str, Any], group_id: str, topic: str, partitions: int) -> None:
        # read_uncommitted: the last completed commit at once, not a wait for the scorer's open transaction.
        self._consumer = Consumer({**client_config, "group.id": group_id, "enable.auto.commit": False,
                                   "isolation.level": "read_uncommitted"})
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._last = 0

    def total(self) -> int:
        try:
            committed = self._consumer.committed(self._partitions, timeout=10)
        except KafkaException as exc:  # coordinator moving / loading: ask again next time
            logger.debug("committed offsets: %s", exc)
            return self._last
        self._last = sum(tp.offset for tp in committed if tp.offset >= 0)
        return self._last

    def close(self) -> None:
        self._consumer.close()


def machine_info(env: BenchEnv | None = None) -> dict[str, Any]:
    """What the numbers were measured on: cores, load, versions, date."""
    import confluent_kafka
    import mlflow
    import numpy
    import pandas
    import sklearn

    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "kafka_version": KAFKA_VERSION,
        "confluent_kafka": _first(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        "sklearn": sklearn.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "mlflow": mlflow.__version__,
        "git_sha": _git_sha(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    try:
        import psutil

        info["memory_total_mb"] = round(psutil.virtual_memory().total / 2**20)
    except ImportError:
        pass
    if env is not None:
        info["broker"] = "local (fresh)" if env._kafka is not None else env.bootstrap_servers
        info["mlflow_server"] = "local (fresh)" if env._mlflow is not None else env.tracking_uri
    return info


def _first(value: Any) -> str:
    return str(value[0] if isinstance(value, tuple) else value)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

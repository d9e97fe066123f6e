"""The local stack as one unit: broker + tracking server + topics, reused when already running.

``housing-stack`` and the test fixtures both use this, so the tests run on exactly what operators run.
``KAFKA_BOOTSTRAP_SERVERS`` / ``MLFLOW_TRACKING_URI`` set in the environment mean "use that one, start
nothing" for that half of the stack.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.mlflow import mlflow_answers
from config.settings import PROJECT_ROOT, Settings
from stack.kafka import LocalKafka, broker_answers, ensure_topics
from stack.mlflow_server import LocalMlflow
from stack.processes import StackError, stop_process

logger = logging.getLogger(__name__)


def stack_home() -> Path:
    """Where the stack keeps data, pid files and logs: $HOUSING_STACK_DIR or <project>/.stack."""
    return Path(os.environ.get("HOUSING_STACK_DIR") or PROJECT_ROOT / ".stack")


DLQ_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
CHECKPOINT_MAX_BYTES = 16 * 1024 * 1024
"""The evaluator's checkpoint topic (consumer.kafka.evaluation_io.CHECKPOINT_MAX_BYTES: its producer's limit)."""


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """The topics of ARCHITECTURE.md (the scorer's five, the evaluator's four): name -> (partitions, config)."""
    topics = settings.topics
    return {
        topics.records: (topics.partitions, {}),
        topics.predictions: (topics.partitions, {}),
        # A dead letter carries the original bytes plus headers: leave room above the input topic's limit.
        topics.dead_letter: (topics.partitions, {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
        # One partition keeps model updates in one total order for every scorer.
        topics.model_updates: (1, {}),
        # Latest status per instance is what matters: compacted.
        topics.scorer_status: (1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                                   "segment.ms": "600000"}),
        # housing-evaluate: outcomes keyed like the records (same partition count), their dead letters, and two
        # compacted topics of which only the latest value per evaluator matters (short segments keep them small).
        topics.outcomes: (topics.partitions, {}),
        topics.outcomes_dead_letter: (topics.partitions, {}),
        topics.evaluation: (1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                                "segment.ms": "600000"}),
        topics.evaluator_checkpoints: (1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                                           "segment.ms": "60000", "max.message.bytes": str(CHECKPOINT_MAX_BYTES)}),
    }


@dataclass
class StackStatus:
    bootstrap_servers: str
    kafka_managed: bool
    kafka_pid: int | None
    kafka_ok: bool
    tracking_uri: str
    mlflow_managed: bool
    mlflow_pid: int | None
    mlflow_ok: bool

    def lines(self) -> list[str]:
        def who(managed: bool, pid: int | None) -> str:
            if not managed:
                return "external (from the environment)"
            return f"local, pid {pid}" if pid else "local, not running"

        return [
            f"kafka   {self.bootstrap_servers:<28} {'healthy' if self.kafka_ok else 'DOWN':<8} "
            f"{who(self.kafka_managed, self.kafka_pid)}",
            f"mlflow  {self.tracking_uri:<28} {'healthy' if self.mlflow_ok else 'DOWN':<8} "
            f"{who(self.mlflow_managed, self.mlflow_pid)}",
        ]


class LocalStack:
    """Broker and tracking server under one home folder."""

    def __init__(self, settings: Settings, *, home: Path | None = None, kafka_port: int | None = None,
                 controller_port: int | None = None, mlflow_port: int | None = None,
                 env: Mapping[str, str] | None = None,
                 kafka_extra_properties: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.settings = settings
        self.home = home or stack_home()
        self.external_kafka = env.get("KAFKA_BOOTSTRAP_SERVERS") or None
        self.external_mlflow = env.get("MLFLOW_TRACKING_URI") or None
        self.kafka = LocalKafka(
            self.home / "kafka",
            port=kafka_port or int(env.get("KAFKA_PORT", 9092)),
            controller_port=controller_port or int(env.get("KAFKA_CONTROLLER_PORT", 9093)),
            extra_properties=dict(kafka_extra_properties or {}),
        )
        self.mlflow = LocalMlflow(self.home / "mlflow", port=mlflow_port or int(env.get("MLFLOW_PORT", 5000)))

    @property
    def bootstrap_servers(self) -> str:
        return self.external_kafka or self.kafka.bootstrap_servers

    @property
    def tracking_uri(self) -> str:
        return self.external_mlflow or self.mlflow.tracking_uri

    def client_config(self) -> dict[str, Any]:
        config = self.settings.kafka.client_config()
        config["bootstrap.servers"] = self.bootstrap_servers
        return config

    def up(self, *, create_topics: bool = True) -> list[str]:
        """Start what is not running (idempotent); on failure stop what this call started. Returns step lines."""
        steps: list[str] = []
        started_kafka = False
        try:
            if self.external_kafka:
                if not broker_answers(self.external_kafka, self.settings.kafka.client_config()):
                    raise StackError(f"KAFKA_BOOTSTRAP_SERVERS={self.external_kafka} does not answer a metadata "
                                     "request: start that broker or unset the variable to use the local one")
                steps.append(f"kafka: using external broker {self.external_kafka}")
            elif self.kafka.is_healthy():
                steps.append(f"kafka: already running at {self.kafka.bootstrap_servers} (reused)")
            else:
                self.kafka.stop()  # a recorded pid that does not answer is stale
                self.kafka.start()
                started_kafka = True
                steps.append(f"kafka: started at {self.kafka.bootstrap_servers}")

            if self.external_mlflow:
                if not mlflow_answers(self.external_mlflow):
                    raise StackError(f"MLFLOW_TRACKING_URI={self.external_mlflow} does not answer /health: start "
                                     "that server or unset the variable to use the local one")
                steps.append(f"mlflow: using external server {self.external_mlflow}")
            elif self.mlflow.is_healthy():
                steps.append(f"mlflow: already running at {self.mlflow.tracking_uri} (reused)")
            else:
                self.mlflow.stop()
                self.mlflow.start()
                steps.append(f"mlflow: started at {self.mlflow.tracking_uri}")

            if create_topics:
                created = ensure_topics(self.client_config(), topic_specs(self.settings))
                steps.append("topics: " + (f"created {', '.join(created)}" if created else "all present"))
        except BaseException:
            if started_kafka:
                self.kafka.stop()
            raise
        return steps

    def down(self) -> list[str]:
        """Stop exactly the processes this stack started (by pid file)."""
        steps = []
        # Scorers the demo started (pid files under <home>/scorers) go first: they need the broker to leave cleanly.
        for pid_file in sorted((self.home / "scorers").glob("*.pid")):
            if stop_process(pid_file, timeout=30):
                steps.append(f"{pid_file.stem}: stopped")
        for name, part in (("mlflow", self.mlflow), ("kafka", self.kafka)):
            steps.append(f"{name}: {'stopped' if part.stop() else 'was not running'}")
        return steps

    def status(self) -> StackStatus:
        return StackStatus(
            bootstrap_servers=self.bootstrap_servers,
            kafka_managed=not self.external_kafka,
            kafka_pid=self.kafka.running_pid(),
            kafka_ok=broker_answers(self.bootstrap_servers, self.settings.kafka.client_config(), timeout=2.0),
            tracking_uri=self.tracking_uri,
            mlflow_managed=not self.external_mlflow,
            mlflow_pid=self.mlflow.running_pid(),
            mlflow_ok=mlflow_answers(self.tracking_uri),
        )

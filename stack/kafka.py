"""A real Apache Kafka broker (KRaft, combined broker + controller) run from Maven Central jars.

No Docker here: Maven resolves ``org.apache.kafka:kafka_2.13`` and its runtime dependencies (named in
``stack/pom.xml``) into a cache outside git, once; the broker then runs as ``java kafka.Kafka`` on loopback.
Start = write server.properties, format the storage with a fresh cluster id, start; ready = a metadata
request through confluent-kafka's AdminClient answers.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stack.managed import ManagedProcess
from stack.processes import StackError, port_answers, wait_until

logger = logging.getLogger(__name__)

POM_PATH = Path(__file__).resolve().parent / "pom.xml"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_VERSION = "4.4.0"
"""Newest Apache Kafka whose broker runs on JDK 17 (class files are Java 17); keep in step with pom.xml."""


def cache_dir() -> Path:
    """Where resolved broker jars live (outside git): $HOUSING_CACHE_DIR or ~/.cache/housing-stream-scorer."""
    base = os.environ.get("HOUSING_CACHE_DIR") or Path.home() / ".cache" / "housing-stream-scorer"
    return Path(base) / f"kafka-{KAFKA_VERSION}"


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise StackError(f"`{name}` not found on PATH: {hint}")
    return path


def resolve_broker_jars(*, quiet: bool = False) -> Path:
    """Resolve the broker's jars with Maven into the cache (once) and return the folder holding them."""
    libs = cache_dir() / "libs"
    marker = cache_dir() / ".complete"
    if marker.exists() and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    require_tool("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`)")
    mvn = require_tool("mvn", "install Maven (e.g. `apt-get install maven`) to fetch the Kafka broker jars")
    if not quiet:
        print(f"Resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs} (once)...", flush=True)
    libs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM_PATH), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
        capture_output=True, text=True, timeout=900,
    )
    if result.returncode != 0:
        raise StackError(
            "Maven could not resolve the Kafka broker jars (is Maven Central reachable?):\n"
            + (result.stdout + result.stderr)[-2000:]
        )
    marker.write_text(KAFKA_VERSION)
    return libs


LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


JVM_PERFORMANCE_OPTIONS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                           "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                           "-Djava.awt.headless=true")
"""What Kafka's kafka-run-class.sh passes (KAFKA_JVM_PERFORMANCE_OPTS). G1's own pause target is 200 ms; a
broker's pauses are every client's latency."""


@dataclass
class LocalKafka(ManagedProcess):
    """One single-node KRaft broker whose files live under ``home`` (pid file ``kafka.pid``, ``logs/kafka.log``)."""

    name: ClassVar[str] = "kafka"
    title: ClassVar[str] = "the Kafka broker"
    description: ClassVar[str] = "a broker"
    port_hint: ClassVar[str] = "other ports (KAFKA_PORT / KAFKA_CONTROLLER_PORT, or --kafka-port)"
    stop_grace: ClassVar[float] = 30.0

    port: int = 9092
    controller_port: int = 9093
    heap: str = "-Xmx768m -Xms768m"
    """A fixed heap, as Kafka's own start scripts use (1G there): no heap resizing under load."""
    extra_properties: Mapping[str, str] = field(default_factory=dict)
    """More server.properties lines (for example a SASL listener for the security tests)."""
    extra_jvm_args: tuple[str, ...] = ()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    def answers(self) -> bool:
        return broker_answers(self.bootstrap_servers)

    def server_properties(self) -> dict[str, str]:
        listeners = self.extra_properties.get("listeners.extra", "")
        # Extra listeners named after a security protocol (SASL_PLAINTEXT://..., SSL://...) map to it, and are
        # advertised as they are: clients connecting there get that listener's address back in metadata.
        extra_names = [item.split("://", 1)[0].strip() for item in listeners.split(",") if "://" in item]
        protocol_map = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" + "".join(
            f",{name}:{name}" for name in extra_names if name in SECURITY_PROTOCOLS and name != "PLAINTEXT")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            + (f",{listeners}" if listeners else ""),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}" + (f",{listeners}" if listeners else ""),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocol_map,
            "log.dirs": str(self.home / "data"),
            "num.partitions": "1",
            # Single node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Topics are created on purpose (housing-stack up, the tests); a typo must not make a new one.
            "auto.create.topics.enable": "false",
            # No point waiting for more members on a dev box; rebalances finish faster.
            "group.initial.rebalance.delay.ms": "0",
            # The consumer protocol (KIP-848): members learn of a changed assignment on their next heartbeat, so
            # the interval bounds how soon a moved partition resumes (the 5 s default: ~10 s per move); a member
            # that died is noticed after 10 s, as with the classic scorer's session.timeout.ms.
            "group.consumer.min.heartbeat.interval.ms": "500",
            "group.consumer.heartbeat.interval.ms": "500",
            "group.consumer.min.session.timeout.ms": "10000",
            "group.consumer.session.timeout.ms": "10000",
            "log.retention.hours": "24",
        }
        props.update({k: v for k, v in self.extra_properties.items() if k != "listeners.extra"})
        return props

    def start(self, *, timeout: float = 90.0, format_storage: bool = True) -> None:
        """Format a fresh storage and start the broker; returns once a metadata request answers.

        :param format_storage: False restarts on the existing storage (same cluster, topics and data kept).
        """
        self.ensure_can_start()
        java = require_tool("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`)")
        libs = resolve_broker_jars()
        classpath = f"{libs}/*"
        data = self.home / "data"
        if format_storage:
            shutil.rmtree(data, ignore_errors=True)
        elif not (data / "meta.properties").exists():
            raise StackError(f"no formatted storage under {data} to restart from: start it with format_storage=True")
        self.home.mkdir(parents=True, exist_ok=True)
        properties_file = self.home / "server.properties"
        properties_file.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        log4j = self.home / "log4j2.yaml"
        log4j.write_text(LOG4J2_YAML)

        if format_storage:
            cluster_id = _random_cluster_id()
            formatted = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(properties_file)],
                capture_output=True, text=True, timeout=120,
            )
            if formatted.returncode != 0:
                raise StackError("formatting the KRaft storage failed:\n"
                                 + (formatted.stdout + formatted.stderr)[-2000:])

        process = self.launch(
            [java, *self.heap.split(), *JVM_PERFORMANCE_OPTIONS, f"-Dlog4j2.configurationFile={log4j}",
             *self.extra_jvm_args, "-cp", classpath, "kafka.Kafka", str(properties_file)],
            ready=self.answers, timeout=timeout,
        )
        logger.info("Kafka %s ready at %s (pid %d)", KAFKA_VERSION, self.bootstrap_servers, process.pid)


def _random_cluster_id() -> str:
    # Kafka's cluster id is a base64url-encoded UUID without padding (what `kafka-storage random-uuid` prints).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def broker_answers(bootstrap_servers: str, client_config: Mapping[str, Any] | None = None,
                   timeout: float = 3.0) -> bool:
    """True when a metadata request to the broker succeeds."""
    # A TCP check first: librdkafka would otherwise log a connection error every 50 ms while we wait.
    hosts = [h.rsplit(":", 1) for h in bootstrap_servers.split(",") if ":" in h]
    if hosts and not any(port_answers(int(port), host.split("//")[-1].strip("[]")) for host, port in hosts):
        return False
    config = {**(client_config or {}), "bootstrap.servers": bootstrap_servers}
    try:
        AdminClient(config).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def ensure_topics(client_config: Mapping[str, Any], specs: Mapping[str, tuple[int, Mapping[str, str]]],
                  *, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Existing topics are left as they are.

    :param specs: topic name -> (partitions, topic config).
    """
    admin = AdminClient(dict(client_config))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config))
              for name, (partitions, config) in specs.items() if name not in existing]
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items() if wanted else ():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another process won the race
                raise StackError(f"could not create topic {name}: {exc}") from exc
    # Metadata for new topics reaches every listener a moment later; wait so callers can use them at once.
    wait_until(lambda: set(specs) <= set(admin.list_topics(timeout=timeout).topics), timeout)
    return created

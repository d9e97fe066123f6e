"""A real schema registry for the local stack: Apicurio Registry, Confluent-compatible API, in-memory storage.

No Docker here either: Maven builds a runnable Quarkus application from Apicurio's Maven Central artifacts
(``stack/apicurio/pom.xml`` says which version and why) into a cache outside git, once; it then runs as
``java -jar`` on loopback. Its storage is an in-memory H2 database: a restart forgets every schema, as a test
registry should. Clients use ``url`` (``.../apis/ccompat/v7``), the Confluent Schema Registry API, which is what
``confluent_kafka.schema_registry`` speaks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from stack.kafka import require_tool
from stack.managed import ManagedProcess
from stack.processes import StackError

logger = logging.getLogger(__name__)

POM_PATH = Path(__file__).resolve().parent / "apicurio" / "pom.xml"
APICURIO_VERSION = "2.4.2.Final"
"""Keep in step with stack/apicurio/pom.xml."""
RUNNER_JAR = "apicurio-registry-runner-1.0-runner.jar"
CCOMPAT_PATH = "/apis/ccompat/v7"
DEFAULT_PORT = 8081


def cache_dir() -> Path:
    """Where the built registry lives (outside git): $HOUSING_CACHE_DIR or ~/.cache/housing-stream-scorer."""
    base = os.environ.get("HOUSING_CACHE_DIR") or Path.home() / ".cache" / "housing-stream-scorer"
    return Path(base) / f"apicurio-registry-{APICURIO_VERSION}"


def build_registry(*, quiet: bool = False) -> Path:
    """Build the runnable registry with Maven into the cache (once) and return its runner jar.

    :raises StackError: no java / mvn, or the build failed (the error carries Maven's last lines).
    """
    build = cache_dir() / "build"
    runner = build / RUNNER_JAR
    marker = cache_dir() / ".complete"
    if marker.exists() and runner.exists():
        return runner
    require_tool("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`)")
    mvn = require_tool("mvn", "install Maven (e.g. `apt-get install maven`) to build the schema registry")
    if not quiet:
        print(f"Building Apicurio Registry {APICURIO_VERSION} from Maven Central into {build} (once)...", flush=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM_PATH), "package", "-DskipTests", f"-Dregistry.build.dir={build}"],
        capture_output=True, text=True, timeout=1200,
    )
    if result.returncode != 0 or not runner.exists():
        raise StackError("Maven could not build the schema registry (is Maven Central reachable?):\n"
                         + (result.stdout + result.stderr)[-2000:])
    marker.write_text(APICURIO_VERSION)
    return runner


@dataclass
class LocalSchemaRegistry(ManagedProcess):
    """One Apicurio Registry whose pid and log files live under ``home`` (``schema-registry.pid``, ``logs/``)."""

    name: ClassVar[str] = "schema-registry"
    title: ClassVar[str] = "the schema registry"
    description: ClassVar[str] = "a schema registry"
    port_hint: ClassVar[str] = "another port (SCHEMA_REGISTRY_PORT or --registry-port)"
    stop_grace: ClassVar[float] = 15.0
    ready_interval: ClassVar[float] = 0.5

    port: int = DEFAULT_PORT
    heap: str = "-Xmx384m"

    @property
    def url(self) -> str:
        """The Confluent-compatible API: what SCHEMA_REGISTRY_URL must be."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def answers(self) -> bool:
        return registry_answers(self.url)

    def start(self, *, timeout: float = 120.0) -> None:
        self.ensure_can_start()
        java = require_tool("java", "install a JDK 17+ (e.g. `apt-get install openjdk-17-jdk-headless`)")
        runner = build_registry()
        self.home.mkdir(parents=True, exist_ok=True)
        process = self.launch(
            [java, *self.heap.split(), "-Djava.awt.headless=true",
             "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
             # Every request is an INFO audit line otherwise; the start-up and errors are what the log is for.
             "-Dquarkus.log.category.\"io.apicurio.common.apps.logging.audit\".level=WARN",
             "-jar", str(runner)],
            ready=self.answers, timeout=timeout,
        )
        logger.info("schema registry ready at %s (pid %d)", self.url, process.pid)


def registry_answers(url: str, timeout: float = 3.0) -> bool:
    """True when ``GET <url>/subjects`` answers 200 (the Confluent API is up, storage included)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False

"""One detached process of the local stack, recorded under its own home folder: ``ManagedProcess``.

It owns the home folder, the pid file (``<home>/<name>.pid``, which outlives the CLI call that started the
process, so ``housing-stack down`` in another shell stops it), the log file (``<home>/logs/<name>.log``) and
the Popen. Starting refuses when the recorded process still runs or one of its ports is taken (a pid file
whose process is gone is stale and removed), then waits until a readiness check passes, the process exits or
a deadline passes; on failure it stops what it started and the error carries the log's last lines. Stopping
is SIGTERM to the process group, then SIGKILL after a grace period.

``stack.kafka.LocalKafka`` and ``stack.mlflow_server.LocalMlflow`` are the two kinds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from stack.processes import StackError, port_is_free, read_pid, start_process, stop_process, tail, wait_until


@dataclass
class ManagedProcess:
    """A process started from, and recorded under, ``home``; subclasses say what it is and when it is ready."""

    home: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)
    """The process this object started (None before ``launch`` and after ``stop``)."""

    name: ClassVar[str]
    """File stem of the pid and log files: ``kafka`` -> ``kafka.pid``, ``logs/kafka.log``."""
    title: ClassVar[str]
    """How errors name the process: ``the Kafka broker``."""
    description: ClassVar[str]
    """How the already-running error names it: ``a broker``."""
    port_hint: ClassVar[str]
    """How to choose other ports, after "choose": ``another port (MLFLOW_PORT or --mlflow-port)``."""
    stop_grace: ClassVar[float] = 20.0
    """Seconds between SIGTERM and SIGKILL."""
    ready_interval: ClassVar[float] = 0.2
    """Seconds between readiness checks while starting."""

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def ports(self) -> tuple[int, ...]:
        """The ports the process listens on (each must be free to start it)."""
        raise NotImplementedError

    def answers(self) -> bool:
        """The readiness check: True when the process serves requests."""
        raise NotImplementedError

    def running_pid(self) -> int | None:
        """The recorded pid when that process is still alive (a stale pid file is removed)."""
        return read_pid(self.pid_file)

    def is_running(self) -> bool:
        return self.running_pid() is not None

    def is_healthy(self) -> bool:
        """Recorded, alive and answering: safe to reuse as it is."""
        return self.is_running() and self.answers()

    def ensure_can_start(self) -> None:
        """Refuse to start a second copy, or one whose ports something else holds.

        :raises StackError: the recorded process is still running, or a port is in use.
        """
        pid = self.running_pid()
        if pid:
            raise StackError(f"{self.description} started from {self.home} is already running (pid {pid})")
        for port in self.ports():
            if not port_is_free(port):
                raise StackError(
                    f"port {port} is already in use: stop what listens there, or choose {self.port_hint}"
                )

    def launch(self, argv: Sequence[str], *, ready: Callable[[], bool], timeout: float,
               env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` detached (pid file, log file) and return once ``ready()`` is true.

        :raises StackError: the process exited, or was not ready within ``timeout`` seconds (it is stopped).
        """
        process = start_process(argv, log_file=self.log_file, pid_file=self.pid_file,
                                env=dict(env) if env is not None else None)
        self.process = process
        ready_in_time = wait_until(lambda: process.poll() is not None or ready(), timeout, self.ready_interval)
        if process.poll() is not None or not ready_in_time:
            self.stop()
            why = "exited" if process.poll() is not None else f"did not answer within {timeout:.0f}s"
            raise StackError(f"{self.title} {why}; last lines of {self.log_file}:\n{tail(self.log_file)}")
        return process

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM the recorded process group, SIGKILL after ``timeout`` (default ``stop_grace``). True if one ran."""
        stopped = stop_process(self.pid_file, timeout=self.stop_grace if timeout is None else timeout)
        self.process = None
        return stopped

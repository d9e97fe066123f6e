"""stack.managed.ManagedProcess on a tiny real process: start until ready, refuse a second copy or a busy port,
notice a stale pid file, stop (SIGTERM, then SIGKILL for a process that ignores it), report an early exit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from stack.managed import ManagedProcess
from stack.processes import StackError, free_port, pid_alive, port_answers
from tests.helpers import start_retrying_busy_ports

LISTENER = """
import signal, socket, sys, time
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[2] == "exit":
    print("giving up", flush=True)
    sys.exit(3)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
print("listening", flush=True)
while True:
    signal.pause()
"""


@dataclass
class Listener(ManagedProcess):
    name: ClassVar[str] = "listener"
    title: ClassVar[str] = "the listener"
    description: ClassVar[str] = "a listener"
    port_hint: ClassVar[str] = "another port (LISTENER_PORT)"
    stop_grace: ClassVar[float] = 1.0
    ready_interval: ClassVar[float] = 0.05

    port: int = 0

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def answers(self) -> bool:
        return port_answers(self.port)

    def start(self, mode: str = "normal", timeout: float = 20.0) -> None:
        self.ensure_can_start()
        self.launch([sys.executable, "-c", LISTENER, str(self.port), mode], ready=self.answers, timeout=timeout)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    process = Listener(tmp_path / "home", port=free_port())
    yield process
    process.stop(timeout=1.0)


def start_on_a_free_port(listener: Listener, mode: str = "normal") -> None:
    """``listener.start(mode)`` on a port picked for each attempt, again if another process took the port
    between the pick and the listener's bind (the ``free_port()`` race)."""
    def start() -> None:
        listener.port = free_port()
        listener.start(mode)

    start_retrying_busy_ports(start)


def test_start_waits_until_ready_and_stop_ends_it(listener: Listener) -> None:
    assert not listener.is_running() and not listener.is_healthy()
    start_on_a_free_port(listener)
    pid = listener.running_pid()
    assert pid is not None and listener.process is not None and listener.process.pid == pid
    assert listener.pid_file == listener.home / "listener.pid" and listener.pid_file.read_text() == str(pid)
    assert listener.is_healthy()
    assert "listening" in (listener.home / "logs" / "listener.log").read_text()

    assert listener.stop() is True
    assert not pid_alive(pid) and not listener.pid_file.exists() and listener.process is None
    assert listener.stop() is False  # nothing left to stop


def test_a_second_copy_and_a_busy_port_are_refused(listener: Listener, tmp_path: Path) -> None:
    start_on_a_free_port(listener)
    with pytest.raises(StackError, match=r"a listener started from .* is already running \(pid \d+\)"):
        listener.start()
    other = Listener(tmp_path / "other", port=listener.port)
    with pytest.raises(StackError) as caught:
        other.start()
    assert str(caught.value) == (f"port {listener.port} is already in use: stop what listens there, or choose "
                                 "another port (LISTENER_PORT)")
    assert not other.pid_file.exists()


def test_a_stale_pid_file_is_removed_and_does_not_block_a_start(listener: Listener) -> None:
    listener.pid_file.parent.mkdir(parents=True)
    listener.pid_file.write_text("999999999")
    assert listener.running_pid() is None and not listener.pid_file.exists()
    start_on_a_free_port(listener)
    assert listener.is_running()


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(listener: Listener) -> None:
    start_on_a_free_port(listener, "ignore-term")
    pid = listener.running_pid()
    assert pid is not None
    assert listener.stop(timeout=0.5) is True
    assert not pid_alive(pid)


def test_a_process_that_exits_while_starting_is_a_clear_error_with_its_log(listener: Listener) -> None:
    with pytest.raises(StackError) as caught:
        start_on_a_free_port(listener, "exit")
    assert str(caught.value).startswith(f"the listener exited; last lines of {listener.log_file}:")
    assert "giving up" in str(caught.value)
    assert not listener.pid_file.exists() and listener.process is None

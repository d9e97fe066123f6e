"""E2E fixtures: ``housing-scorer`` as a real subprocess, configured only through environment variables.

``scorer_process(settings, instance_id=...)`` starts ``python -m consumer --no-admin-api`` with the settings turned
into the environment variables an operator would set (config.settings.SETTINGS names them), waits until the
log says it holds partitions, and kills whatever is still running at teardown. Each process logs to its own file
under the test's tmp_path, so a failing assertion can show the scorer's own words.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from config.settings import SETTINGS, Settings
from producer.bad_records import BAD_RECORDS, LARGE_KINDS
from tests.helpers import Received, committed_total, housing_rows, keys_of, read_to_end, wait_for

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_PATTERN = re.compile(r"assigned (?!nothing)")
ADMIN_LISTENING = re.compile(r"admin API on (https?://\S+)")
"""The scoring loop logs ``assigned <topic>[<p>], ...`` once it holds partitions: it is consuming."""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in a fresh process (None values left unset)."""
    flat = settings.as_dict(redact=False)
    env: dict[str, str] = {}
    for spec in SETTINGS:
        value = flat.get(spec.key)
        if spec.env is None or value is None or isinstance(value, Mapping):
            continue
        env[spec.env] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


def _clean_environment() -> dict[str, str]:
    """os.environ without any setting the scorer reads, so the test's settings are the only ones in force."""
    names = {spec.env for spec in SETTINGS if spec.env} | {"HOUSING_CONFIG"}
    return {k: v for k, v in os.environ.items() if k not in names}


class ScorerProcess:
    """One scorer subprocess and its log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.process = subprocess.Popen(list(argv), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT, env=env,
                                        start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the scorer holds partitions; fails with its log if it exits or takes too long."""
        ok = wait_for(lambda: not self.alive() or bool(READY_PATTERN.search(self.log())), timeout, 0.1)
        assert self.alive(), f"scorer {self.name} exited with {self.process.returncode}:\n{self.tail()}"
        assert ok, f"scorer {self.name} not consuming after {timeout:.0f}s:\n{self.tail()}"

    def admin_url(self, timeout: float = 90.0) -> str:
        """``http://host:port`` of its admin API, from its log (the scorer runs with PORT=0: the port it bound)."""
        found: list[str] = []

        def listening() -> bool:
            assert self.alive(), f"scorer {self.name} exited with {self.process.returncode}:\n{self.tail()}"
            found[:] = ADMIN_LISTENING.findall(self.log())
            return bool(found)

        assert wait_for(listening, timeout, 0.1), f"scorer {self.name}: no admin API in {timeout:.0f}s\n{self.tail()}"
        return found[-1]

    def dump_threads(self) -> str:
        """SIGABRT with PYTHONFAULTHANDLER=1: every thread's stack goes to the log (and the process ends)."""
        if self.alive():
            self.process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        return self.tail(60)

    def terminate(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """kill -9: no shutdown code runs at all."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process ends within ``timeout`` (else the test fails with its log)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"scorer {self.name} still running after {timeout:.0f}s:\n{self.tail()}") from None
        self._log.close()
        return code


ScorerFactory = Callable[..., ScorerProcess]


@pytest.fixture
def scorer_process(tmp_path: Path) -> Iterator[ScorerFactory]:
    """Start scorer subprocesses: ``scorer_process(settings, instance_id="a", env={...}, wait=True)``.

    :param settings: the scorer's settings (from ``settings_factory``/``scorer_settings``), passed as env vars.
    :param instance_id: SCORER_INSTANCE_ID; keep it across a restart so the new process fences its zombie.
    :param env: extra or overriding environment variables (raw strings, as an operator would write them).
    :param wait: wait until it holds partitions (default True).
    """
    started: list[ScorerProcess] = []

    def start(settings: Settings, *, instance_id: str | None = None, env: Mapping[str, str] | None = None,
              wait: bool = True, args: Sequence[str] = ("--no-admin-api",),
              ready_timeout: float = 90.0) -> ScorerProcess:
        name = instance_id or f"scorer{len(started)}"
        full_env = {**_clean_environment(), **settings_env(settings), "SCORER_INSTANCE_ID": name,
                    "ADMIN_API_ENABLED": "false", "PYTHONUNBUFFERED": "1",
                    "PYTHONFAULTHANDLER": "1", **(env or {})}
        log_path = tmp_path / f"{name}-{len(started)}.log"
        proc = ScorerProcess(name, [sys.executable, "-m", "consumer", *args], full_env, log_path)
        started.append(proc)
        if wait:
            proc.wait_ready(ready_timeout)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.kill()
        else:
            proc.wait(5)


def wait_committed(bootstrap: str, group: str, topic: str, partitions: int, at_least: int,
                   timeout: float, procs: Sequence[ScorerProcess] = ()) -> int:
    """Until the group has committed ``at_least`` offsets; fails with the scorers' logs otherwise."""
    seen = [0]
    deadline = time.monotonic() + timeout

    def reached() -> bool:
        seen[0] = committed_total(bootstrap, group, topic, partitions)
        return seen[0] >= at_least

    ok = wait_for(reached, max(0.0, deadline - time.monotonic()), 0.05)
    logs = ""
    if not ok:  # show where each live scorer is stuck
        logs = "\n".join(f"--- {p.name} (alive={p.alive()}):\n{p.dump_threads()}" for p in procs)
    assert ok, f"group {group} committed {seen[0]} < {at_least} within {timeout:.0f}s\n{logs}"
    return seen[0]



class BackgroundProducer:
    """Produces ``count`` records keyed ``<prefix>-<i>`` on its own thread, at about ``rate`` per second (0: unpaced).

    Every ``bad_every``-th record is a small bad record from the corpus (key ``bad-<kind>-<prefix>-<i>``), so the
    dead-letter path is part of every run. Delivery is checked: ``join()`` fails if any record was not delivered.
    """

    def __init__(self, settings: Settings, count: int, *, rate: float = 0.0, prefix: str = "rec",
                 bad_every: int = 0) -> None:
        self.settings = settings
        self.count = count
        self.rate = rate
        kinds = [k for k in sorted(BAD_RECORDS) if k not in LARGE_KINDS]
        self.messages: list[tuple[str, bytes]] = []
        for i, row in enumerate(housing_rows(count)):
            if bad_every and i % bad_every == bad_every - 1:
                kind = kinds[(i // bad_every) % len(kinds)]
                self.messages.append((f"bad-{kind}-{prefix}-{i}", BAD_RECORDS[kind].value))
            else:
                key = f"{prefix}-{i}"
                self.messages.append((key, json.dumps({**row, "record_id": key}).encode()))
        self.keys = [key for key, _ in self.messages]
        self.bad_keys = {key for key in self.keys if key.startswith("bad-")}
        self.sent = 0
        self.errors: list[str] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="background-producer", daemon=True)

    def start(self) -> BackgroundProducer:
        self._thread.start()
        return self

    def run(self) -> list[str]:
        """Produce everything now, on the caller's thread; returns the keys."""
        self._run()
        return self.join(0)

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(f"{message.key()!r}: {error}")

    def _run(self) -> None:
        try:
            producer = Producer({**self.settings.kafka.client_config(), "linger.ms": 5, "enable.idempotence": True,
                                 "compression.type": "lz4"})
            started = time.monotonic()
            topic = self.settings.topics.records
            for i, (key, value) in enumerate(self.messages):
                # Pace in bursts of 50: the sleep only ever waits for the schedule, never for the scorer.
                if i % 50 == 0:
                    ahead = started + i / self.rate - time.monotonic() if self.rate else 0.0
                    if ahead > 0:
                        time.sleep(ahead)
                    producer.poll(0)
                while True:
                    try:
                        producer.produce(topic, key=key.encode(), value=value, on_delivery=self._on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.05)
                self.sent = i + 1
            remaining = producer.flush(120)
            if remaining:
                raise RuntimeError(f"{remaining} records not delivered")
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout: float = 120.0) -> list[str]:
        """Wait until every record is delivered; returns the keys."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), f"producer still running after {timeout:.0f}s ({self.sent} sent)"
        if self.error is not None:
            raise AssertionError(f"producer failed: {self.error!r}")
        assert not self.errors, f"{len(self.errors)} records not delivered: {self.errors[:3]}"
        return self.keys


def read_outputs(settings: Settings, predictions: int, dead: int,
                 timeout: float = 60.0) -> tuple[list[Received], list[Received]]:
    """Predictions and dead letters as a downstream read_committed reader sees them: everything up to the high
    watermarks, once at least the counts given are there. Call it after the group committed every input
    (``wait_committed``): under exactly-once the outputs are in the same transactions, so this is all of them."""
    bootstrap = settings.kafka.bootstrap_servers
    return (read_to_end(bootstrap, settings.topics.predictions, until=lambda out: len(out) >= predictions,
                        timeout=timeout),
            read_to_end(bootstrap, settings.topics.dead_letter, until=lambda out: len(out) >= dead, timeout=timeout))


def assert_exactly_once(settings: Settings, producer: BackgroundProducer) -> tuple[list[Received], list[Received]]:
    """Each input key has exactly one output: a prediction if it was good, a dead letter if it was bad."""
    good = set(producer.keys) - producer.bad_keys
    predictions, dead = read_outputs(settings, len(good), len(producer.bad_keys))
    predicted, dead_lettered = Counter(keys_of(predictions)), Counter(keys_of(dead))
    duplicates = {k: n for k, n in (predicted + dead_lettered).items() if n > 1}
    assert not duplicates, f"{len(duplicates)} keys output more than once, e.g. {list(duplicates.items())[:5]}"
    assert set(predicted) == good, (f"predictions: {len(good - set(predicted))} missing, "
                                    f"{len(set(predicted) - good)} unexpected")
    assert set(dead_lettered) == producer.bad_keys, "dead letters do not match the bad records sent"
    return predictions, dead

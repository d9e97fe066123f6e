"""The worker's side: its admin API's address reported from the service's log line (whatever LOG_LEVEL), and a
worker whose parent died (kill -9, no signal forwarded) stopping itself with a SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from consumer.supervisor.worker import SERVICE_LOGGER, read_report, report_admin_address
from tests.helpers import wait_for


@pytest.fixture
def service_logger() -> Iterator[logging.Logger]:
    found = logging.getLogger(SERVICE_LOGGER)
    level, filters = found.level, list(found.filters)
    yield found
    found.setLevel(level)
    found.filters[:] = filters


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_the_bound_address_line_writes_the_report_and_the_log_level_stays(
        tmp_path: Path, service_logger: logging.Logger, level: int, caplog: pytest.LogCaptureFixture) -> None:
    service_logger.setLevel(level)
    report = tmp_path / "worker-1.json"
    report_admin_address(report, 1)
    service_logger.info("model %s loaded", "m")
    assert read_report(report) is None
    # The service's own line (consumer/service.py, _start_admin_api), with the port the system picked.
    service_logger.info("admin API on %s://%s:%d", "http", "127.0.0.1", 40123)
    assert read_report(report) == {"index": 1, "pid": os.getpid(), "url": "http://127.0.0.1:40123"}
    shown = [r.getMessage() for r in caplog.records if r.name == SERVICE_LOGGER]
    # Below the operator's level nothing more is shown than without workers.
    assert shown == (["model m loaded", "admin API on http://127.0.0.1:40123"] if level == logging.INFO else [])


GRANDCHILD = '''
import pathlib, signal, sys, time
from consumer.supervisor.worker import stop_with_parent
out = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (out.write_text("stopped"), sys.exit(0)))
stop_with_parent(interval=0.1)
out.with_suffix(".ready").write_text("ready")
while True:
    time.sleep(0.05)
'''

CHILD = '''
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while True:
    time.sleep(1)
'''


def test_a_worker_whose_parent_was_killed_stops_itself(tmp_path: Path) -> None:
    out = tmp_path / "grandchild.txt"
    parent = subprocess.Popen([sys.executable, "-c", CHILD, GRANDCHILD, str(out)], cwd=PROJECT_ROOT,
                              env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert wait_for(out.with_suffix(".ready").exists, 20)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert wait_for(out.exists, 10)
        assert out.read_text() == "stopped"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)

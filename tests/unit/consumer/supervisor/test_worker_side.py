"""The worker's side: the report of its admin API's address for the parent, and a worker whose parent died
(kill -9, no signal forwarded) stopping itself with a SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from config.settings import PROJECT_ROOT
from consumer.supervisor.worker import read_report, write_report
from tests.helpers import wait_for


def test_the_report_names_the_worker_its_pid_and_url_and_a_missing_one_is_none(tmp_path: Path) -> None:
    report = tmp_path / "worker-1.json"
    assert read_report(report) is None
    write_report(report, index=1, url="http://127.0.0.1:40123")
    assert read_report(report) == {"index": 1, "pid": os.getpid(), "url": "http://127.0.0.1:40123"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker-1.json"]  # written aside, then renamed


GRANDCHILD = '''
import pathlib, signal, sys, time
from consumer.supervisor.worker import stop_with_parent
out = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (out.write_text("stopped"), sys.exit(0)))
stop_with_parent(interval=0.1)
out.with_suffix(".ready").write_text("ready")
while True:
    signal.pause()
'''

CHILD = '''
import signal, subprocess, sys
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while True:
    signal.pause()
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

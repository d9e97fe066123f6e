"""The parent with stand-in workers (tiny Python processes, no broker): restart with a counter, stop forwarding,
the fatal exit code stopping all, and a worker that will not stop being killed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from consumer.supervisor.parent import Supervisor, WorkerProcess, worker_slots
from consumer.supervisor.policy import RestartPolicy
from tests.helpers import eventually

FAKE_WORKER = '''
import os, signal, sys, time
mode, marker = sys.argv[1], sys.argv[2]
if mode == "crash-once" and not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(1)
if mode == "fatal":
    print("housing-scorer: cannot start: topic t does not exist", file=sys.stderr, flush=True)
    sys.exit(2)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else (lambda *_: sys.exit(0)))
with open(marker + ".pids", "a") as pids:
    pids.write(f"{os.getpid()}\\n")
while True:
    signal.pause()
'''

FAST = RestartPolicy(initial_delay=0.05, max_delay=0.2, stable_after=60.0)


def slots(tmp_path: Path, *modes: str) -> list[WorkerProcess]:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    return [WorkerProcess(index=i, instance_id=f"test-{i}", report_path=None,
                          command=[sys.executable, str(script), mode, str(tmp_path / f"marker-{i}")])
            for i, mode in enumerate(modes)]


def started_pids(tmp_path: Path, index: int) -> list[int]:
    path = tmp_path / f"marker-{index}.pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def restarts(supervisor: Supervisor, worker: str, reason: str) -> float | None:
    return supervisor.metrics.registry.get_sample_value("housing_supervisor_worker_restarts_total",
                                                        {"worker": worker, "reason": reason})


async def test_a_crashed_worker_is_started_again_counted_and_a_stop_ends_all_with_exit_0(tmp_path: Path) -> None:
    workers = slots(tmp_path, "crash-once", "serve")
    supervisor = Supervisor(workers, policy=FAST, stop_timeout=10)
    run = asyncio.create_task(supervisor.supervise(catch_signals=False))
    assert await eventually(lambda: len(started_pids(tmp_path, 0)) == 1 and len(started_pids(tmp_path, 1)) == 1, 20)
    assert workers[0].restarts == 1 and workers[0].last_exit == 1
    assert workers[1].restarts == 0
    assert restarts(supervisor, "0", "exit 1") == 1
    supervisor.request_stop()
    assert await asyncio.wait_for(run, 20) == 0
    assert [w.state for w in workers] == ["stopped", "stopped"]
    assert [w.last_exit for w in workers] == [0, 0]  # the SIGTERM reached each, which exited cleanly


async def test_a_killed_worker_is_restarted_with_back_off_and_its_slot_keeps_its_id(tmp_path: Path) -> None:
    workers = slots(tmp_path, "serve", "serve")
    supervisor = Supervisor(workers, policy=FAST, stop_timeout=10)
    run = asyncio.create_task(supervisor.supervise(catch_signals=False))
    try:
        assert await eventually(lambda: len(started_pids(tmp_path, 1)) == 1, 20)
        first = started_pids(tmp_path, 1)[0]
        os.kill(first, signal.SIGKILL)
        assert await eventually(lambda: len(started_pids(tmp_path, 1)) == 2, 20)
        assert workers[1].restarts == 1 and workers[1].last_exit == -signal.SIGKILL
        assert workers[1].instance_id == "test-1"
        assert restarts(supervisor, "1", "killed by SIGKILL") == 1
        assert started_pids(tmp_path, 0) and workers[0].restarts == 0
    finally:
        supervisor.request_stop()
        assert await asyncio.wait_for(run, 20) == 0


async def test_the_fatal_exit_code_stops_the_others_and_exits_2_with_the_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workers = slots(tmp_path, "serve", "fatal")
    supervisor = Supervisor(workers, policy=FAST, stop_timeout=10)
    code = await asyncio.wait_for(supervisor.supervise(catch_signals=False), 30)
    assert code == 2
    assert workers[1].state == "failed" and workers[1].restarts == 0  # not restarted in a loop
    assert workers[0].state == "stopped"
    err = capsys.readouterr().err
    assert "worker 1 exited 2" in err
    assert "[worker 1] housing-scorer: cannot start: topic t does not exist" in err  # its own line, passed on
    assert "topic t does not exist" in (supervisor.fatal_reason or "")


async def test_a_worker_that_does_not_stop_is_killed_and_the_exit_is_not_clean(tmp_path: Path) -> None:
    workers = slots(tmp_path, "stubborn")
    supervisor = Supervisor(workers, policy=FAST, stop_timeout=1.0)
    run = asyncio.create_task(supervisor.supervise(catch_signals=False))
    assert await eventually(lambda: len(started_pids(tmp_path, 0)) == 1, 20)
    supervisor.request_stop()
    assert await asyncio.wait_for(run, 20) == 1
    assert workers[0].last_exit == -signal.SIGKILL


def test_worker_slots_give_each_its_own_stable_instance_id_and_loopback_admin_api(tmp_path: Path) -> None:
    made = worker_slots(2, base_argv=["--group-id", "g", "--workers", "1"], instance_id="pod-7",
                        report_dir=tmp_path, python="py")
    assert [w.instance_id for w in made] == ["pod-7-0", "pod-7-1"]
    command = made[1].command
    assert command[:5] == ["py", "-m", "consumer", "--group-id", "g"]
    # The worker's own flags come last: they win over the parent's (argparse keeps the last occurrence).
    assert command[command.index("--instance-id") + 1] == "pod-7-1"
    assert command[command.index("--port") + 1] == "0" and command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--worker-report") + 1] == str(tmp_path / "worker-1.json")
    without_api = worker_slots(1, base_argv=[], instance_id="x", report_dir=None)
    assert "--port" not in without_api[0].command and without_api[0].report_path is None

"""``housing-scorer --workers 2`` as a process against the real broker and MLflow server: both workers share the
input partitions, every record is scored exactly once, a worker killed with -9 is restarted by the parent (same
instance id, so its transactional id fences the dead one's open transaction) and the records still come out
exactly once, and a SIGTERM to the parent stops everything with exit 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from consumer.kafka.topic_reader import read_fleet
from tests.conftest import PROJECT_ROOT, RegisteredModel
from tests.helpers import committed_total, keys_of, produce_records, read_to_end, scorer_env, wait_for

pytestmark = pytest.mark.integration

SECOND = 5000
"""Records of the second round, during which a worker is killed."""
PARENT_API = re.compile(r"consumer\.supervisor\.http.*admin API of all 2 workers on (http://[\d.]+:\d+)")


def parent_env(settings: Settings, instance_id: str) -> dict[str, str]:
    """A scorer's environment, with small batches and the parent's admin API on a port the system picks."""
    return scorer_env(settings, instance_id, BATCH_MAX_RECORDS="100", PORT="0")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


@pytest.fixture
def parent_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the parent and, in their own groups, maybe workers
                process.wait(5)


def assert_exactly_once(settings: Settings, keys: list[str]) -> None:
    predictions = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    counted = Counter(keys_of(predictions))
    duplicates = {k: n for k, n in counted.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} keys scored more than once, e.g. {list(duplicates.items())[:5]}"
    assert set(counted) == set(keys), (f"{len(set(keys) - set(counted))} missing, "
                                       f"{len(set(counted) - set(keys))} unexpected")


def test_two_workers_share_the_group_survive_a_kill_9_and_stop_cleanly(
        scorer_settings: Settings, tmp_path: Path, parent_process: list[subprocess.Popen[bytes]]) -> None:
    settings = scorer_settings
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records
    base_id = f"workers-{group[-8:]}"
    worker_ids = [f"{base_id}-0", f"{base_id}-1"]
    log = tmp_path / "parent.log"
    parent = subprocess.Popen([sys.executable, "-m", "consumer", "--workers", "2"], cwd=PROJECT_ROOT,
                              env=parent_env(settings, base_id), stdout=subprocess.DEVNULL,
                              stderr=open(log, "wb"), start_new_session=True)  # noqa: SIM115
    parent_process.append(parent)

    def tail() -> str:
        return log.read_text(errors="replace")[-4000:]

    def parent_api() -> str | None:
        found = PARENT_API.findall(log.read_text(errors="replace"))
        return found[0] if found else None

    assert wait_for(parent_api, 60), tail()
    api = parent_api() or ""

    def metrics_text() -> str:
        status, text = get(api + "/metrics")
        return text if status == 200 else ""

    def both_assigned() -> bool:
        text = metrics_text()
        counts = [metric(text, "housing_scorer_assigned_partitions", worker=str(n)) for n in (0, 1)]
        return all(count is not None and count >= 1 for count in counts) and sum(counts) == 3  # type: ignore[arg-type]

    assert wait_for(lambda: get(api + "/ready")[0] == 200, 120), (get(api + "/ready"), tail())
    # Each worker holds input partitions of the one group, under its own instance id (the fleet view shows both).
    assert wait_for(both_assigned, 60), (metrics_text()[-3000:], tail())
    assert wait_for(lambda: set(worker_ids) <= set(read_fleet(settings)), 30), read_fleet(settings)

    first = produce_records(settings, 600, prefix="w1")
    assert wait_for(lambda: committed_total(bootstrap, group, topic, 3) >= 600, 60), tail()
    assert_exactly_once(settings, first.good_keys)
    scored = [metric(metrics_text(), "housing_scorer_records_scored_total", worker=str(n)) for n in (0, 1)]
    assert all(s for s in scored), scored  # both workers scored some of them

    # kill -9 one worker while records stream in: the parent starts it again under the same instance id.
    workers = json.loads(get(api + "/api/workers")[1])["workers"]
    assert [w["instance_id"] for w in workers] == worker_ids
    victim = workers[1]["pid"]
    with ThreadPoolExecutor(1) as pool:
        producing = pool.submit(produce_records, settings, SECOND, prefix="w2", start=600)
        # Mid-stream: records of the second round are being scored and committed when the worker dies.
        assert wait_for(lambda: committed_total(bootstrap, group, topic, 3) >= 700, 60), tail()
        os.kill(victim, signal.SIGKILL)
        killed_at = committed_total(bootstrap, group, topic, 3)
        second = producing.result(60)
    assert killed_at < 600 + SECOND, "the stream was done before the kill: the test proves nothing"

    def restarted() -> bool:
        now = json.loads(get(api + "/api/workers")[1] or "{}").get("workers", [])
        return bool(now) and now[1]["restarts"] == 1 and now[1]["pid"] not in (None, victim)

    assert wait_for(restarted, 30), (get(api + "/api/workers"), tail())
    assert metric(metrics_text(), "housing_supervisor_worker_restarts_total", worker="1",
                  reason="killed by SIGKILL") == 1
    assert "worker 1 (" + worker_ids[1] + ") ended unexpectedly (killed by SIGKILL" in log.read_text()
    assert wait_for(lambda: get(api + "/ready")[0] == 200, 120), (get(api + "/ready"), tail())
    assert wait_for(lambda: committed_total(bootstrap, group, topic, 3) >= 600 + SECOND, 90), \
        (committed_total(bootstrap, group, topic, 3), tail())
    assert_exactly_once(settings, first.good_keys + second.good_keys)
    pids = [w["pid"] for w in json.loads(get(api + "/api/workers")[1])["workers"]]

    # SIGTERM to the parent: forwarded, each worker commits, leaves the fleet and exits 0; then the parent exits 0.
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(90) == 0, tail()
    for pid in pids:
        assert not _alive(pid), f"worker pid {pid} outlived its parent"
    assert not set(worker_ids) & set(read_fleet(settings)), read_fleet(settings)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_exiting_2_is_not_restarted_the_parent_stops_all_and_exits_2(
        settings_factory: Any, stream_topics: dict[str, str], registered_model: RegisteredModel, group_id: str,
        tmp_path: Path, parent_process: list[subprocess.Popen[bytes]]) -> None:
    """A fatal start-up error (here: the input topic does not exist) is not cured by a restart: no restart loop."""
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    settings = settings_factory({**stream_topics, "records": missing},
                                **{**registered_model.settings_overrides(), "scorer.group_id": group_id})
    log = tmp_path / "parent.log"
    parent = subprocess.Popen([sys.executable, "-m", "consumer", "--workers", "2"], cwd=PROJECT_ROOT,
                              env=parent_env(settings, f"fatal-{group_id[-8:]}"), stdout=subprocess.DEVNULL,
                              stderr=open(log, "wb"), start_new_session=True)  # noqa: SIM115
    parent_process.append(parent)
    assert parent.wait(90) == 2, log.read_text()[-3000:]
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    assert re.match(r"housing-scorer: worker [01] exited 2 \(fatal, not restarted\): housing-scorer: cannot start: "
                    r".*" + missing + ".* do(es)? not exist", last), last
    assert "ended unexpectedly" not in text  # neither worker was started again

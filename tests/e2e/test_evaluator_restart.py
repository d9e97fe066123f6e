"""housing-evaluate as a process, killed with SIGKILL three times while predictions and outcomes stream in: the
counts after the restarts equal a direct computation over the same pairs (no matched pair lost, none counted
twice), and every bad or orphan outcome is dead-lettered exactly once (the dead letters commit with the
checkpoint). At the end every prediction is matched, pending or counted, with the exact numbers, once the restarted
evaluator has read back the rows its checkpoint held as pending."""

from __future__ import annotations

import json
import random
import re
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from schemas.outcomes import Outcome
from tests.e2e.conftest import ScorerProcess, _clean_environment, settings_env
from tests.evaluation_support import Pred, Writer, direct_metrics, entry, evaluation_topics
from tests.helpers import read_to_end, wait_for

pytestmark = pytest.mark.e2e

COUNT = 6000
BAD_EVERY = 97
LISTENING = re.compile(r"evaluator metrics on (http://\S+)/metrics")


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], topic_factory: Callable[..., str]) -> Settings:
    return settings_factory(evaluation_topics(topic_factory), **{
        "evaluation.evaluator_id": f"ev-{uuid.uuid4().hex[:6]}", "evaluation.checkpoint_seconds": 0.5,
        "evaluation.mlflow_seconds": 0, "evaluation.port": 0, "mlflow.enabled": False})


@pytest.fixture
def evaluators(settings: Settings, tmp_path: Path) -> Iterator[Callable[[], ScorerProcess]]:
    started: list[ScorerProcess] = []

    def start() -> ScorerProcess:
        env = {**_clean_environment(), **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        proc = ScorerProcess(f"evaluator{len(started)}", [sys.executable, "-m", "consumer.evaluation"], env,
                             tmp_path / f"evaluator{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.kill()


def url_of(proc: ScorerProcess) -> str:
    """The evaluator's HTTP address, from its log (EVALUATOR_PORT=0: the port it bound)."""
    found: list[str] = []

    def listening() -> bool:
        assert proc.alive(), proc.tail()
        found[:] = LISTENING.findall(proc.log())
        return bool(found)

    assert wait_for(listening, 90, 0.05), proc.tail()
    return found[-1]


def performance(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/performance", timeout=2) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]
    except OSError:
        return None


def test_kill_9_three_times_loses_no_pair_and_counts_none_twice(settings: Settings,
                                                                 evaluators: Callable[[], ScorerProcess]) -> None:
    rng = random.Random(11)
    now = int(time.time() * 1000)
    preds = [Pred(f"r{i}", rng.uniform(1e5, 5e5), "1" if i % 4 else "2", now - 60_000 + i * 5,
                  shadow=rng.uniform(1e5, 5e5) if i % 5 == 0 else None, shadow_version="3" if i % 5 == 0 else None)
             for i in range(COUNT)]
    actual = {p.record_id: rng.uniform(1e5, 5e5) for p in preds}
    matched = [p for i, p in enumerate(preds) if i % 10]  # every 10th never gets an outcome
    outcomes = [Outcome(p.record_id, actual[p.record_id], p.scored_at + rng.randint(0, 30_000)) for p in matched]
    rng.shuffle(outcomes)
    bad = {f"bad-{i}": b'{"record_id":"x","actual":-1.0,"observed_at":1}' for i in range(COUNT // BAD_EVERY)}
    orphans = [Outcome(f"orphan-{i}", 1.0, now - 3_600_000) for i in range(25)]  # far older than the window

    writer = Writer(settings)
    failures: list[BaseException] = []

    def stream() -> None:
        try:
            chunk = 300
            for start in range(0, COUNT, chunk):
                writer.predictions(preds[start:start + chunk])
                writer.outcomes(outcomes[start:start + chunk])
                time.sleep(0.05)
            writer.outcomes(outcomes[COUNT:])
            writer.raw_outcomes(bad)
            writer.outcomes(orphans)
        except BaseException as exc:
            failures.append(exc)

    proc = evaluators()
    url = url_of(proc)
    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    for round_ in range(3):
        target = (round_ + 1) * len(matched) // 5
        ok = wait_for(lambda target=target, url=url: (performance(url) or {}).get("matched", 0) >= target, 120, 0.05)
        assert ok and proc.alive(), f"round {round_}: {performance(url)}\n{proc.tail()}"
        proc.kill()  # SIGKILL, usually with a transaction open
        proc = evaluators()
        url = url_of(proc)
    feeder.join(120)
    assert not failures, failures

    # A restarted evaluator publishes its checkpoint's counts before it has read anything back: wait until the
    # rows pending at that checkpoint are back in the join, not only until the counts are reached.
    def done() -> bool:
        current = performance(url)
        return bool(current) and current["matched"] == len(matched) and \
            current["dead_lettered"].get("unknown_record_id", 0) == len(orphans) and \
            current["pending_to_read_back"] == {"predictions": 0, "outcomes": 0}

    assert wait_for(done, 180, 0.2), f"{performance(url)}\n{proc.tail()}"
    snapshot = performance(url)
    assert snapshot is not None
    for version, role, rows in (("1", "champion", [p for p in matched if p.version == "1"]),
                                ("2", "champion", [p for p in matched if p.version == "2"])):
        expected = direct_metrics([(p.value, actual[p.record_id]) for p in rows])
        found = entry(snapshot, version, role)["since_start"]
        assert found["count"] == expected["count"], (version, found)
        for name in ("rmse", "mae", "bias", "mape"):
            assert found[name] == pytest.approx(expected[name], rel=1e-9)
    shadow = direct_metrics([(p.shadow, actual[p.record_id]) for p in matched if p.shadow is not None])
    assert entry(snapshot, "3", "shadow")["since_start"]["count"] == shadow["count"]
    assert entry(snapshot, "3", "shadow")["since_start"]["rmse"] == pytest.approx(shadow["rmse"], rel=1e-9)
    # Every prediction ends matched, pending (within the window, no outcome yet) or counted, exactly once.
    without = COUNT - len(matched)
    assert snapshot["pending"] == {"predictions": without, "outcomes": 0}, snapshot
    assert snapshot["unmatched"] == {
        "prediction_without_outcome": 0, "prediction_dropped_limit": 0, "duplicate_prediction": 0,
        "orphan_outcome": len(orphans), "late_outcome": 0, "outcome_dropped_limit": 0, "duplicate_outcome": 0}
    assert snapshot["bad_predictions"] == 0
    assert all(not any(v["unmatched"].values()) for v in snapshot["versions"]), snapshot["versions"]
    unmatched = snapshot["unmatched"]
    assert snapshot["matched"] + snapshot["pending"]["predictions"] + unmatched["prediction_without_outcome"] + \
        unmatched["prediction_dropped_limit"] + unmatched["duplicate_prediction"] + snapshot["bad_predictions"] == COUNT
    assert snapshot["dead_lettered"] == {"negative_actual": len(bad), "unknown_record_id": len(orphans)}
    assert snapshot["matched"] + snapshot["pending"]["outcomes"] + sum(
        unmatched[k] for k in ("orphan_outcome", "late_outcome", "outcome_dropped_limit", "duplicate_outcome")) + \
        snapshot["dead_lettered"]["negative_actual"] == len(outcomes) + len(bad) + len(orphans)
    dead = read_to_end(settings.kafka.bootstrap_servers, settings.topics.outcomes_dead_letter)
    keys = [(m.key or b"").decode() for m in dead]
    assert sorted(keys) == sorted([*bad, *(o.record_id for o in orphans)])  # each exactly once
    proc.terminate()
    assert proc.wait(60) == 0, proc.tail()

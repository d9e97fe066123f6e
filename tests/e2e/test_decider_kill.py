"""kill -9 of the deciding housing-evaluate in the middle of a canary decision (real broker, real MLflow): after
the restarted decider resumes, no matched pair is lost or counted twice, and the decision is taken exactly once:
one decision event on the control topic (read to its high watermarks, read_committed), one decision record (the
audit record, with the evidence) beside the checkpoint, and in the registry one move of each alias and the
version tag naming that same decision.

How "mid-decision" is made deterministic: the evaluator runs as ``python -m tests.e2e.evaluator_hooks <point>``,
the real ``housing-evaluate`` with a few of its methods wrapped (see that module). At ``<point>`` its main thread
stops and logs ``HOOK paused at <point>``; the test then sends SIGKILL. The points are every window of the actual
code (``consumer/evaluation/decider.py``: decide in the checkpoint's transaction, move the registry after the
commit, announce in the next transaction) where a crash could lose or repeat the decision:

- ``decided``: the decision record is in the open transaction, not committed. The kill aborts it (the restarted
  instance's init_transactions fences the old one): it was never taken; the restart decides again (a new
  decision id) and that one is the only one anywhere.
- ``committed``: the decision is committed but the registry not moved. The restart finds it taken and not
  announced: it moves the registry (the only move) and announces it once.
- ``moving``: the champion alias has moved, the canary alias not yet removed (half of ``promote_canary``). The
  restart applies the decision again: the champion alias is not set a second time, the canary alias comes off.
- ``applied``: the registry moved, the announcement not yet produced. The restart moves nothing and announces.
- ``announcing``: the announcement is in the open transaction, not committed: aborted by the kill; the restart
  announces it again, so exactly one committed event carries the decision id.

Every registry change of both processes is logged by the hook (``HOOK registry ...``), the restarted one's
included (it runs the same wrapper with no pause point), so "one alias move" is counted, not assumed.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from config.settings import Settings
from consumer.evaluation.decider import SOURCE, state_key
from consumer.kafka.evaluation_io import latest_values
from consumer.models.canary import PROMOTED_TAG
from schemas.control import ModelUpdateEvent
from schemas.outcomes import Outcome
from tests.conftest import RegisteredModel, train_quick_model
from tests.e2e.conftest import ScorerProcess, _clean_environment, settings_env
from tests.e2e.test_evaluator_restart import performance, url_of
from tests.evaluation_support import Pred, Writer, direct_metrics, entry, evaluation_topics
from tests.helpers import read_to_end, wait_for

pytestmark = pytest.mark.e2e

POINTS = ("decided", "committed", "moving", "applied", "announcing")
PAUSED = "HOOK paused at {}"
REGISTRY_LINE = re.compile(r"^HOOK registry (\S+) (.*)$", re.MULTILINE)
PER_PHASE = 900  # a third canary (v2), two thirds champion (v1)


@pytest.fixture(scope="module")
def trained(mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    """One small model whose artifacts the tests' versions point at (the decider only moves aliases)."""
    return train_quick_model(mlflow_tracking_uri, f"decider_kill_{uuid.uuid4().hex[:6]}",
                             tmp_path_factory.mktemp("decider-kill"), kinds=("linear_regression",), sample=500)


@pytest.fixture
def registry(trained: RegisteredModel, mlflow_tracking_uri: str) -> dict[str, str]:
    """A registered model of this test: v1 @champion, v2 @challenger."""
    client = MlflowClient(mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)
    source = client.get_model_version(trained.model_name, trained.version)
    assert source.source is not None
    model_id = source.model_id or source.source.removeprefix("models:/")  # the logged model holding the source
    name = f"decider_kill_{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    v1 = client.create_model_version(name, source.source, run_id=source.run_id,
                                   model_id=model_id).version
    v2 = client.create_model_version(name, source.source, run_id=source.run_id,
                                   model_id=model_id).version
    client.set_registered_model_alias(name, "champion", str(v1))
    client.set_registered_model_alias(name, "challenger", str(v2))
    return {"name": name, "v1": str(v1), "v2": str(v2)}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
             registry: dict[str, str]) -> Settings:
    topics = {**evaluation_topics(topic_factory), "dead_letter": topic_factory(3, "dlq"),
              "model_updates": topic_factory(1, "updates")}
    return settings_factory(topics, **{
        "model.name": registry["name"], "evaluation.evaluator_id": f"ev-{uuid.uuid4().hex[:6]}",
        "evaluation.checkpoint_seconds": 0.3, "evaluation.mlflow_seconds": 0, "evaluation.port": 0,
        "canary.fraction": 0.2, "canary.auto_promote": True, "canary.min_matched": 100,
        "canary.min_minutes": 0.0, "canary.decide_seconds": 0.3})


@pytest.fixture
def evaluators(settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], ScorerProcess]]:
    started: list[ScorerProcess] = []

    def start(point: str) -> ScorerProcess:
        env = {**_clean_environment(), **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        proc = ScorerProcess(f"evaluator{len(started)}", [sys.executable, "-m", "tests.e2e.evaluator_hooks", point],
                             env, tmp_path / f"evaluator{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            proc.kill()


def phase(rng: random.Random, start: int, now: int, v1: str, v2: str) -> tuple[list[Pred], list[Outcome]]:
    """Predictions of both roles (the canary's errors smaller: it is better) and every record's outcome."""
    preds, outcomes = [], []
    for i in range(start, start + PER_PHASE):
        actual = rng.lognormvariate(12.2, 0.4)
        canary = i % 3 == 0
        value = actual + rng.gauss(0, 20_000 if canary else 40_000)
        preds.append(Pred(f"r{i}", value, v2 if canary else v1, now - 30_000 + i, role="canary" if canary
                          else "champion"))
        outcomes.append(Outcome(f"r{i}", actual, now - 30_000 + i + rng.randint(0, 5_000)))
    rng.shuffle(outcomes)
    return preds, outcomes


def events(settings: Settings) -> list[ModelUpdateEvent]:
    return [ModelUpdateEvent.from_bytes(m.value)
            for m in read_to_end(settings.kafka.bootstrap_servers, settings.topics.model_updates)]


def alias(client: MlflowClient, name: str, which: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, which).version)
    except MlflowException:
        return None


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_mid_decision_takes_it_exactly_once_and_loses_no_pair(
        point: str, settings: Settings, registry: dict[str, str], mlflow_tracking_uri: str,
        evaluators: Callable[[str], ScorerProcess]) -> None:
    name, v1, v2 = registry["name"], registry["v1"], registry["v2"]
    client = MlflowClient(mlflow_tracking_uri, registry_uri=mlflow_tracking_uri)
    rng, now = random.Random(POINTS.index(point)), int(time.time() * 1000)
    writer = Writer(settings)
    first_preds, first_outcomes = phase(rng, 0, now, v1, v2)
    writer.predictions(first_preds)
    writer.outcomes(first_outcomes)

    deciding = evaluators(point)
    paused = PAUSED.format(point)
    assert wait_for(lambda: paused in deciding.log() or not deciding.alive(), 120, 0.05), deciding.tail()
    assert deciding.alive(), deciding.tail()
    deciding.kill()  # SIGKILL, mid-decision
    assert deciding.process.returncode == -9

    # More pairs arrive while no evaluator runs; the restarted one (same EVALUATOR_ID) must count them all.
    second_preds, second_outcomes = phase(rng, PER_PHASE, now, v1, v2)
    writer.predictions(second_preds)
    writer.outcomes(second_outcomes)
    restarted = evaluators("none")
    url = url_of(restarted)
    preds, outcomes = first_preds + second_preds, first_outcomes + second_outcomes

    def settled() -> bool:
        snapshot = performance(url) or {}
        return snapshot.get("matched") == len(outcomes) and \
            snapshot.get("pending_to_read_back") == {"predictions": 0, "outcomes": 0} and \
            any(e.decision == "promote" for e in events(settings))

    assert wait_for(settled, 120, 0.2), f"{performance(url)}\n{restarted.tail()}"

    # exactly one decision event, committed, on the control topic (read to its high watermarks)
    announced = events(settings)
    assert [(e.type, e.decision, e.version, e.alias, e.source) for e in announced] == \
        [("promoted", "promote", v2, "champion", SOURCE)], announced
    decision_id = announced[0].event_id
    # exactly one decision record (the audit record with its evidence), announced, with the event's id
    raw = latest_values(settings, settings.topics.evaluator_checkpoints)[state_key(settings.evaluation.evaluator_id)]
    records = json.loads(raw)["decisions"]
    assert [(r["decision_id"], r["action"], r["canary_version"], r["announced"]) for r in records] == \
        [(decision_id, "promote", v2, True)]
    evidence = json.loads(announced[0].evidence or "{}")
    assert records[0]["evidence"] == evidence and evidence["canary_rmse"] < evidence["champion_rmse"] * 0.98
    # the registry: champion on v2, the canary alias off, the tag naming the same decision; one move of each
    assert (alias(client, name, "champion"), alias(client, name, "challenger")) == (v2, None)
    assert json.loads(client.get_model_version(name, v2).tags[PROMOTED_TAG])["decision_id"] == decision_id
    calls = [match for proc in (deciding, restarted) for match in REGISTRY_LINE.findall(proc.log())]
    moves = [call for call in calls if call[0] != "set_model_version_tag"]
    assert moves == [("set_registered_model_alias", f"champion {v2}"),
                     ("delete_registered_model_alias", "challenger")], calls

    # no matched pair lost, none counted twice: the counts and metrics of a direct computation
    snapshot = performance(url)
    assert snapshot is not None
    actual = {o.record_id: o.actual for o in outcomes}
    for version, role in ((v1, "champion"), (v2, "canary")):
        rows = [(p.value, actual[p.record_id]) for p in preds if p.version == version]
        expected, found = direct_metrics(rows), entry(snapshot, version, role)["since_start"]
        assert found["count"] == expected["count"], (version, role, found)
        assert found["rmse"] == pytest.approx(expected["rmse"], rel=1e-9)
    assert snapshot["pending"] == {"predictions": 0, "outcomes": 0}
    assert not any(snapshot["unmatched"].values()), snapshot["unmatched"]
    restarted.terminate()
    assert restarted.wait(60) == 0, restarted.tail()

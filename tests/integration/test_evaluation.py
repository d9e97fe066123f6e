"""housing-evaluate against the real broker and MLflow server: outcomes joined to predictions in and out of
order, late and orphan outcomes dead-lettered with their reason, bad outcomes dead-lettered with theirs, the
metrics per version and role equal a direct computation over the same pairs (snapshot, /api/model/performance's
topic, the evaluator's /metrics), and the live metrics logged to the version's serving run with steps."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from config.settings import Settings
from consumer.evaluation.run import Evaluator
from consumer.kafka.evaluation_io import latest_values
from schemas.codecs import WireFormat
from schemas.outcomes import Outcome
from tests.conftest import RegisteredModel
from tests.evaluation_support import Pred, Writer, direct_metrics, entry, evaluation_topics
from tests.helpers import read_to_end, wait_for

pytestmark = pytest.mark.integration

WINDOW_S = 600


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], topic_factory: Callable[..., str],
             registered_model: RegisteredModel) -> Settings:
    return settings_factory(evaluation_topics(topic_factory), **{
        **registered_model.settings_overrides(), "evaluation.evaluator_id": f"ev-{uuid.uuid4().hex[:6]}",
        "evaluation.window_seconds": WINDOW_S, "evaluation.checkpoint_seconds": 0.3,
        "evaluation.mlflow_seconds": 0.3, "evaluation.port": 0})  # it binds a free port: http_port


@pytest.fixture
def evaluator(settings: Settings) -> Iterator[Evaluator]:
    running = Evaluator(settings)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            running.run()
        except BaseException as exc:  # surfaced by the test
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert wait_for(lambda: running.snapshot is not None or failures, 60), "no first checkpoint"
    assert not failures, failures
    yield running
    running.stopping.set()
    thread.join(60)
    assert not thread.is_alive() and not failures, failures


def snapshot_when(evaluator: Evaluator, condition: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict:
    shown = ("matched", "pending", "unmatched", "dead_lettered", "watermark", "published_at")
    assert wait_for(lambda: evaluator.snapshot is not None and condition(evaluator.snapshot), timeout), \
        {k: (evaluator.snapshot or {}).get(k) for k in shown}
    assert evaluator.snapshot is not None
    return evaluator.snapshot


def test_join_metrics_dead_letters_and_mlflow(settings: Settings, evaluator: Evaluator,
                                              registered_model: RegisteredModel) -> None:
    rng = random.Random(5)
    writer = Writer(settings)
    now = int(time.time() * 1000)
    champion, canary, shadow = registered_model.version, "9001", "9002"
    # 120 champion predictions (every 3rd with a shadow), 30 canary ones, scored over the last 30 s
    preds = [Pred(f"r{i}", rng.uniform(1e5, 5e5), champion, now - 30_000 + i * 200,
                  shadow=rng.uniform(1e5, 5e5) if i % 3 == 0 else None, shadow_version=shadow if i % 3 == 0 else None)
             for i in range(120)]
    preds += [Pred(f"c{i}", rng.uniform(1e5, 5e5), canary, now - 30_000 + i * 500, role="canary") for i in range(30)]
    actual = {p.record_id: rng.uniform(1e5, 5e5) for p in preds}
    with_outcome = [p for p in preds if p.record_id not in {f"r{i}" for i in range(100, 120)}]  # 20 never get one
    outcomes = {p.record_id: Outcome(p.record_id, actual[p.record_id], p.scored_at + rng.randint(1_000, 60_000))
                for p in with_outcome}
    early = [outcomes[p.record_id] for p in with_outcome[:40]]  # out of order: before their predictions

    # Phase 1: outcomes before any prediction; a late one (its prediction more than the window earlier); an
    # orphan already older than the window; bad ones.
    late = Pred("late", 1.0, champion, now - 2 * WINDOW_S * 1000)
    writer.outcomes(early[:20])
    writer.outcomes(early[20:], WireFormat.AVRO_SINGLE_OBJECT)
    writer.outcomes([Outcome("late", 2.0, now), Outcome("orphan", 3.0, now - (WINDOW_S + 100) * 1000)])
    bad = {"bad-json": b"{nope", "bad-nan": b'{"record_id":"x","actual":NaN,"observed_at":1}',
           "bad-negative": b'{"record_id":"x","actual":-5.0,"observed_at":1}',
           "bad-field": b'{"record_id":"x","actual":5.0,"observed_at":1,"price":3}',
           "bad-type": b'{"record_id":"x","actual":"5","observed_at":1}', "bad-empty": b""}
    writer.raw_outcomes(bad)
    snapshot_when(evaluator, lambda s: s["pending"]["outcomes"] == 41 and s["dead_lettered"].get("unknown_record_id"))

    # Phase 2: the predictions, shuffled; then the rest of the outcomes, shuffled, and one duplicate outcome.
    shuffled = [*preds, late]
    rng.shuffle(shuffled)
    writer.predictions(shuffled)
    rest = [outcomes[p.record_id] for p in with_outcome[40:]]
    rng.shuffle(rest)
    writer.outcomes(rest)
    expected_pairs = len(with_outcome)
    snapshot = snapshot_when(evaluator, lambda s: s["matched"] == expected_pairs)
    writer.outcomes([Outcome("r0", 1.0, now)])  # r0 matched already: waits as an orphan (not counted twice)
    snapshot = snapshot_when(evaluator, lambda s: s["pending"]["outcomes"] == 1)

    # the metrics equal a direct computation over the same pairs, per version and role, window and since start
    def pairs(role: str, version: str) -> list[tuple[float, float]]:
        if role == "shadow":
            return [(p.shadow, actual[p.record_id]) for p in with_outcome if p.shadow is not None]
        return [(p.value, actual[p.record_id]) for p in with_outcome if p.version == version]

    for version, role in ((champion, "champion"), (canary, "canary"), (shadow, "shadow")):
        expected = direct_metrics(pairs(role, version))
        found = entry(snapshot, version, role)
        for block in ("window", "since_start"):
            assert found[block]["count"] == expected["count"]
            for name in ("rmse", "mae", "bias", "mape"):
                assert found[block][name] == pytest.approx(expected[name], rel=1e-9), (version, role, block, name)
    assert entry(snapshot, champion, "champion")["window"]["mean_delay_seconds"] > 0
    assert snapshot["pending"]["predictions"] == 20  # the ones without an outcome, still within the window
    assert snapshot["unmatched"]["late_outcome"] == 1 and snapshot["unmatched"]["orphan_outcome"] == 1
    assert snapshot["unmatched"]["prediction_without_outcome"] == 1  # "late"'s prediction, expired at once
    assert entry(snapshot, champion, "champion")["unmatched"]["prediction_without_outcome"] == 1

    # dead letters: exactly the bad ones, the late and the orphan, each once, with reason and source headers
    dead = read_to_end(settings.kafka.bootstrap_servers, settings.topics.outcomes_dead_letter)
    reasons = {(m.key or b"").decode(): m.header_map["dlq.reason"].decode() for m in dead}
    assert len(dead) == len(reasons) == 8
    assert reasons == {"bad-json": "malformed_json", "bad-nan": "not_finite_actual", "bad-negative": "negative_actual",
                       "bad-field": "unknown_field", "bad-type": "wrong_type", "bad-empty": "empty_message",
                       "late": "unknown_record_id", "orphan": "unknown_record_id"}
    assert all(m.header_map["dlq.source.topic"].decode() == settings.topics.outcomes for m in dead)
    assert {m.value or b"" for m in dead if (m.key or b"").startswith(b"bad-")} == set(bad.values())  # unchanged
    assert snapshot["dead_lettered"] == dict(Counter(reasons.values()))

    # the same view on the compacted topic the admin API serves, and on the evaluator's /metrics
    published = latest_values(settings, settings.topics.evaluation)
    assert settings.evaluation.evaluator_id in published
    with urllib.request.urlopen(f"http://127.0.0.1:{evaluator.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    rmse = direct_metrics(pairs("champion", champion))["rmse"]
    line = next(ln for ln in text.splitlines() if ln.startswith("housing_scorer_live_rmse{")
                and f'model_version="{champion}"' in ln and 'role="champion"' in ln and 'window="sliding"' in ln)
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(rmse, rel=1e-9)
    assert 'housing_scorer_live_outcomes_dead_lettered_total{reason="unknown_record_id"} 2.0' in text

    # MLflow: the champion's serving run charts the live RMSE, step = its pairs since start
    client = MlflowClient(settings.mlflow.tracking_uri)

    def logged() -> list[Any]:
        return client.get_metric_history(registered_model.run_id, "live_champion_rmse")

    assert wait_for(lambda: any(m.step == len(pairs("champion", champion)) for m in logged()), 30), logged()
    last = max(logged(), key=lambda m: (m.step, m.timestamp))
    assert last.value == pytest.approx(rmse, rel=1e-9)

"""The canary's health for the gate: failures and non-finite predictions from the scorers' dead letters, drift
from the predictions, each threshold rolling the canary back on its own (and only with enough records), over the
window, across a checkpoint; and the deciding evaluator counts every prediction and dead letter once across a
kill -9 (the restored pending rows were counted before it)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import pytest

import consumer.evaluation.run as run_module
from config.settings import Settings, load_settings
from consumer.evaluation.gates import GatePolicy, Health, decide
from consumer.evaluation.health import HealthStats, drift_psi, histogram_of
from consumer.kafka.evaluation_io import InputMessage
from schemas.codecs import PredictionEncoder, WireFormat
from schemas.control import ModelUpdateEvent
from tests.unit.consumer.evaluation.test_gates import FakeRegistry, snapshot
from tests.unit.consumer.evaluation.test_restart import PARTITIONS, InMemoryEvaluator, ListReader, Log, MemoryWriter

POLICY = GatePolicy.from_settings(load_settings(env={}, config_path=None).canary)  # the documented defaults
WINDOW_MS, BUCKET_MS = 600_000, 10_000
NOW = 1_800_000_000_000


def dead_letter(version: str | None, reason: str, stage: str = "predict") -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = [("dlq.reason", reason.encode()), ("dlq.stage", stage.encode()),
                                               ("dlq.source.topic", b"records")]
    if version is not None:
        headers += [("model_name", b"m"), ("model_version", version.encode())]
    return headers


def stats_with(canary: list[float], champion: list[float], failures: int = 0, non_finite: int = 0,
               at: int = NOW) -> HealthStats:
    stats = HealthStats(WINDOW_MS, BUCKET_MS)
    for value in canary:
        stats.add_prediction("2", "canary", value, at)
    for value in champion:
        stats.add_prediction("1", "champion", value, at)
    for _ in range(failures):
        stats.add_dead_letter(dead_letter("2", "predict_failed"), at)
    for _ in range(non_finite):
        stats.add_dead_letter(dead_letter("2", "non_finite_prediction"), at)
    return stats


def gate(health: Health) -> str:
    """The gate on a canary with too few matched pairs to judge its accuracy: only health can roll it back."""
    early = snapshot(40_000, 50_000, canary_n=5, minutes=0.1)
    return decide(early, canary_version="2", champion_version="1", policy=POLICY, health=health).action


rng = random.Random(5)
PRICES = [rng.lognormvariate(12.2, 0.5) for _ in range(3000)]


def test_the_documented_defaults() -> None:
    assert (POLICY.max_error_rate, POLICY.max_non_finite, POLICY.max_drift_psi, POLICY.health_min_records) == \
        (0.01, 0, 1.0, 200)


def test_a_failure_rate_over_the_threshold_rolls_back_below_it_waits() -> None:
    over = stats_with(PRICES[:990], PRICES, failures=11).health("2", "1", NOW)  # 11 of 1001: 1.1 %
    under = stats_with(PRICES[:990], PRICES, failures=9).health("2", "1", NOW)  # 9 of 999: 0.9 %
    assert over.records == 1001 and over.error_rate == pytest.approx(11 / 1001)
    assert (gate(over), gate(under)) == ("rollback", "wait")


def test_the_failure_rate_waits_for_enough_records() -> None:
    few = stats_with(PRICES[:150], PRICES, failures=30).health("2", "1", NOW)  # 17 % of 180 records
    assert few.records == 180 and gate(few) == "wait"
    assert gate(stats_with(PRICES[:170], PRICES, failures=30).health("2", "1", NOW)) == "rollback"  # 200


def test_one_non_finite_prediction_rolls_back_at_once() -> None:
    health = stats_with(PRICES[:10], PRICES, non_finite=1).health("2", "1", NOW)
    assert health.non_finite == 1 and gate(health) == "rollback"
    assert gate(stats_with(PRICES[:10], PRICES).health("2", "1", NOW)) == "wait"


def test_prediction_drift_over_the_threshold_rolls_back_the_same_distribution_waits() -> None:
    shifted = [p * 2 for p in PRICES[:1000]]  # the canary predicts twice as high
    drifted = stats_with(shifted, PRICES).health("2", "1", NOW)
    same = stats_with(PRICES[:1000], PRICES[1000:]).health("2", "1", NOW)
    assert drifted.drift_psi is not None and drifted.drift_psi > 1.0
    assert same.drift_psi is not None and same.drift_psi < 0.05
    different = stats_with([p * 1.3 for p in PRICES[:1000]], PRICES).health("2", "1", NOW)  # another model
    assert different.drift_psi is not None and 0.25 < different.drift_psi < 1.0 and gate(different) == "wait"
    assert (gate(drifted), gate(same)) == ("rollback", "wait")
    few = stats_with(shifted[:150], PRICES).health("2", "1", NOW)  # no verdict on 150 predictions
    assert gate(few) == "wait"


def test_only_the_canary_versions_model_failures_count() -> None:
    stats = stats_with(PRICES[:1000], PRICES)
    assert not stats.add_dead_letter(dead_letter("2", "schema_invalid", stage="validate"), NOW)  # bad input
    assert not stats.add_dead_letter(dead_letter("2", "output_too_large", stage="produce"), NOW)
    assert not stats.add_dead_letter(dead_letter(None, "predict_failed"), NOW)  # no version
    for _ in range(50):
        assert stats.add_dead_letter(dead_letter("1", "predict_failed"), NOW)  # the champion's
    health = stats.health("2", "1", NOW)
    assert (health.error_rate, health.non_finite, health.records) == (0.0, 0, 1000)


def test_the_window_forgets_and_the_state_round_trips() -> None:
    stats = stats_with(PRICES[:1000], PRICES, failures=20, non_finite=2, at=NOW - WINDOW_MS - BUCKET_MS)
    stats.add_dead_letter(dead_letter("2", "predict_failed"), NOW)
    stats.dead_letter_offsets = {0: 7, 3: 2}
    copy = HealthStats(WINDOW_MS, BUCKET_MS)
    copy.restore(json.loads(json.dumps(stats.to_state())))
    assert copy.dead_letter_offsets == {0: 7, 3: 2}
    assert copy.health("2", "1", NOW - WINDOW_MS) == stats.health("2", "1", NOW - WINDOW_MS)
    assert stats.health("2", "1", NOW - WINDOW_MS).non_finite == 2
    later = stats.health("2", "1", NOW)  # the old buckets left the window
    assert (later.records, later.non_finite, later.drift_psi) == (1, 0, None)
    stats.prune(NOW)
    assert list(stats.histograms) == [] and list(stats.failures["2"]) == [NOW // BUCKET_MS]


def test_psi_bins_are_the_champions_deciles() -> None:
    champion = histogram_of(PRICES)
    assert drift_psi(champion, champion) == pytest.approx(0.0)
    assert drift_psi(histogram_of([]), champion) is None
    beyond = histogram_of([p * 100 for p in PRICES[:500]])  # all above the champion's range: its last bin
    assert drift_psi(beyond, champion) > 3  # type: ignore[operator]


# --- the deciding evaluator: health counted once across a kill -9, and fed to the gate ---------------------


BASE = 1_800_000_000_000


class RecordingWriter(MemoryWriter):
    """The in-memory writer that also keeps the control events produced (committed or not: the unit tests
    commit every transaction)."""

    def __init__(self, control_topic: str) -> None:
        super().__init__()
        self.control_topic = control_topic
        self.announced: list[ModelUpdateEvent] = []

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        if topic == self.control_topic:
            self.announced.append(ModelUpdateEvent.from_bytes(value))


class DecidingEvaluator(InMemoryEvaluator):
    """The in-memory evaluator with the decider on (a fake registry) and the dead letters as a list too."""

    def __init__(self, settings: Settings, logs: dict[str, Log], checkpoint: bytes | None,
                 registry: FakeRegistry) -> None:
        super().__init__(settings, logs, checkpoint)
        assert self.decider is not None
        self.decider._client_factory = lambda: registry
        self.recorder = RecordingWriter(settings.topics.model_updates)
        self.memory = self.recorder

    def open_dead_letter_reader(self, start: Mapping[int, int], default_start: Any) -> Any:
        return ListReader(self.logs["d"], start)


def deciding_settings(**overrides: Any) -> Settings:
    return load_settings({"mlflow.enabled": True, "evaluation.window_seconds": 600, "topics.predictions": "p",
                          "topics.outcomes": "o", "topics.dead_letter": "d", "canary.auto_promote": True,
                          "canary.decide_seconds": 0.001, **overrides}, env={}, config_path=None)


def predict(logs: dict[str, Log], i: int, version: str, role: str, value: float) -> None:
    fields = {"record_id": f"r{i}", "prediction": value, "model_name": "m", "model_version": version,
              "model_alias": "champion", "model_stage": None, "scored_at": BASE + i, "source_topic": "records",
              "source_partition": 0, "source_offset": i, "event_time": None, "shadow_prediction": None,
              "shadow_model_version": None}
    encoded = json.dumps({**json.loads(PredictionEncoder().encode(fields, WireFormat.JSON)), "role": role}).encode()
    logs["p"].append(i % PARTITIONS, f"r{i}", encoded)


def fail(logs: dict[str, Log], i: int, version: str) -> None:
    log = logs["d"]
    partition = i % PARTITIONS
    offset = sum(1 for m in log.messages if m.partition == partition)
    log.messages.append(InputMessage(partition, offset, f"f{i}".encode(), b"{}",
                                     tuple(dead_letter(version, "predict_failed")), BASE + i))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    now = [BASE + 20_000]
    monkeypatch.setattr(run_module, "now_ms", lambda: now[0])
    return now


def test_a_restarted_deciding_evaluator_counts_each_prediction_and_dead_letter_once(clock: list[int]) -> None:
    """Predictions without outcomes are pending at the checkpoint: the restart reads them back (``restore``)
    and must not count them in the histograms again; dead letters read after the checkpoint are read again."""
    logs = {"p": Log("p"), "o": Log("o"), "d": Log("d")}
    for i in range(300):
        predict(logs, i, "2", "canary", 100.0 + i)
    for i in range(2):
        fail(logs, i, "2")
    registry = FakeRegistry()
    settings = deciding_settings(**{"canary.max_error_rate": 0.0095, "canary.health_min_records": 300})
    first = DecidingEvaluator(settings, logs, None, registry)
    first.open()
    first.read_all()
    first.checkpoint()
    committed = first.last_checkpoint()
    assert first.health_stats is not None and first.health_stats.health("2", "1", clock[0]).records == 302
    fail(logs, 2, "2")
    first.read_all()  # a third failure read, never committed: killed here

    second = DecidingEvaluator(settings, logs, committed, registry)
    second.open()
    second.read_all()
    assert second.health_stats is not None
    health = second.health_stats.health("2", "1", clock[0])
    assert (health.records, health.error_rate) == (303, pytest.approx(3 / 303))  # not 603 records, not 2 failures
    second.checkpoint()  # 3/303 = 0.99 % > 0.95 %: the gate rolls v2 back on its failures alone
    assert "canary.rejected" in registry.version_tags["2"] and "challenger" not in registry.aliases
    second.checkpoint()
    assert [(e.decision, e.version) for e in second.recorder.announced] == [("rollback", "2")]
    evidence = json.loads(second.recorder.announced[0].evidence or "{}")
    assert (evidence["error_rate"], evidence["health_records"]) == (pytest.approx(3 / 303), 303)

"""consumer.evaluation.run across a kill -9, with the topics as lists in memory: the predictions pending at the
checkpoint stay pending (in the snapshot from the first one after the restart on, before they are read back),
are later counted exactly once (matched or without outcome), and at every checkpoint the predictions read equal
matched + pending + without outcome + dropped by the limit + duplicates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

import consumer.evaluation.run as run_module
from config.settings import Settings, load_settings
from consumer.evaluation.checkpoint import Checkpoint
from consumer.evaluation.run import Evaluator
from consumer.kafka.evaluation_io import InputMessage
from schemas.codecs import PredictionEncoder, WireFormat
from schemas.outcomes import Outcome, OutcomeEncoder

BASE = 1_800_000_000_000
WINDOW_S = 60
PARTITIONS = 2


class Log:
    """One topic's partitions as lists; ``append`` gives each message the next offset of its partition."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.messages: list[InputMessage] = []
        self._next = dict.fromkeys(range(PARTITIONS), 0)

    def append(self, partition: int, key: str, value: bytes) -> None:
        self.messages.append(InputMessage(partition, self._next[partition], key.encode(), value))
        self._next[partition] += 1


class ListReader:
    """What the evaluator needs of an InputReader, over a Log: from given offsets (else the beginning), and
    caught up once nothing is left."""

    def __init__(self, log: Log, start: Mapping[int, int]) -> None:
        self.topic = log.topic
        self._log = log
        self.next_offsets = {p: start.get(p, 0) for p in range(PARTITIONS)}
        self._position = dict(self.next_offsets)

    def _unread(self) -> list[InputMessage]:
        return [m for m in self._log.messages if m.offset >= self._position[m.partition]]

    @property
    def caught_up(self) -> bool:
        return not self._unread()

    def poll(self, max_messages: int, timeout: float) -> list[InputMessage]:
        out = self._unread()[:max_messages]
        for m in out:
            self._position[m.partition] = m.offset + 1
            self.next_offsets[m.partition] = max(self.next_offsets[m.partition], m.offset + 1)
        return out

    def lag(self) -> int:
        return len(self._unread())

    def close(self) -> None:
        pass


class MemoryWriter:
    """Commits kept in a list; what is written after the last commit is lost with the process."""

    def __init__(self) -> None:
        self.committed: list[tuple[bytes, dict[str, Any]]] = []
        self.dead_letters: list[dict[str, Any]] = []

    def dead_letter(self, **fields: Any) -> None:
        self.dead_letters.append(fields)

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        pass

    def commit(self, checkpoint: bytes, snapshot: bytes) -> None:
        self.committed.append((checkpoint, json.loads(snapshot)))

    def close(self) -> None:
        pass


class InMemoryEvaluator(Evaluator):
    def __init__(self, settings: Settings, logs: dict[str, Log], checkpoint: bytes | None) -> None:
        super().__init__(settings, serve_http=False, log_to_mlflow=False)
        self.logs = logs
        self.resumed_from = None if checkpoint is None else Checkpoint.decode(checkpoint)
        self.memory = MemoryWriter()

    def load_checkpoint(self) -> Checkpoint | None:
        return self.resumed_from

    def open_reader(self, topic: str, start: Mapping[int, int], default_start: Any) -> Any:
        return ListReader(self.logs[topic], start)

    def open_writer(self) -> Any:
        return self.memory

    def read_all(self) -> None:
        for _ in range(100):
            if all(reader.caught_up for reader in self.readers.values()):
                break
            self.step()
        self.step()  # caught up: the clock is now

    def last_checkpoint(self) -> bytes:
        return self.memory.committed[-1][0]

    def checkpoint_snapshot(self) -> dict[str, Any]:
        self.checkpoint()
        return self.memory.committed[-1][1]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The evaluator's wall clock (what a caught-up input counts as), set by the test."""
    now = [BASE + 20_000]
    monkeypatch.setattr(run_module, "now_ms", lambda: now[0])
    return now


@pytest.fixture
def settings() -> Settings:
    return load_settings({"mlflow.enabled": False, "evaluation.window_seconds": WINDOW_S,
                          "topics.predictions": "p", "topics.outcomes": "o"}, env={}, config_path=None)


def predict(logs: dict[str, Log], i: int, *, shadow: bool = False) -> None:
    fields = {"record_id": f"r{i}", "prediction": 100.0 + i, "model_name": "m", "model_version": "1",
              "model_alias": "champion", "model_stage": None, "scored_at": BASE + i * 1000, "source_topic": "records",
              "source_partition": 0, "source_offset": i, "event_time": None,
              "shadow_prediction": 90.0 + i if shadow else None, "shadow_model_version": "2" if shadow else None}
    logs["p"].append(i % PARTITIONS, f"r{i}", PredictionEncoder().encode(fields, WireFormat.JSON))


def observe(logs: dict[str, Log], i: int) -> None:
    outcome = Outcome(f"r{i}", 110.0 + i, BASE + i * 1000 + 500)
    logs["o"].append(i % PARTITIONS, f"r{i}", OutcomeEncoder().encode(outcome, WireFormat.JSON))


def accounted(snapshot: Mapping[str, Any]) -> int:
    """matched + pending + every prediction kind: must be the predictions read."""
    unmatched = snapshot["unmatched"]
    return snapshot["matched"] + snapshot["pending"]["predictions"] + sum(
        unmatched[kind] for kind in ("prediction_without_outcome", "prediction_dropped_limit", "duplicate_prediction"))


def test_predictions_pending_at_a_kill_stay_pending_and_are_later_counted_once(settings: Settings,
                                                                                clock: list[int]) -> None:
    logs = {"p": Log("p"), "o": Log("o")}
    for i in range(10):
        predict(logs, i, shadow=i == 0)
    for i in (1, 2, 3, 4, 6, 7, 8, 9, 10):  # r0 and r5 get none; r10's comes before its prediction
        observe(logs, i)

    first = InMemoryEvaluator(settings, logs, None)
    first.open()
    first.read_all()
    snapshot = first.checkpoint_snapshot()
    assert (snapshot["matched"], snapshot["pending"]) == (8, {"predictions": 2, "outcomes": 1})
    committed = first.last_checkpoint()
    predict(logs, 11)
    observe(logs, 11)
    first.read_all()  # r11 matched, never committed: killed here (kill -9), it is read again below

    second = InMemoryEvaluator(settings, logs, committed)
    second.open()
    snapshot = second.checkpoint_snapshot()  # what run() publishes before reading anything
    assert snapshot["matched"] == 8
    assert snapshot["pending"] == {"predictions": 2, "outcomes": 1}  # was {0, 0}: shown as gone
    assert snapshot["pending_to_read_back"] == {"predictions": 2, "outcomes": 1}
    assert accounted(snapshot) == 10
    assert second.health()["pending"] == {"predictions": 2, "outcomes": 1}

    predict(logs, 10)
    second.read_all()
    snapshot = second.checkpoint_snapshot()
    assert snapshot["matched"] == 10  # r10 (its outcome restored) and r11 (read again), each once
    assert snapshot["pending"] == {"predictions": 2, "outcomes": 0}
    assert snapshot["pending_to_read_back"] == {"predictions": 0, "outcomes": 0}
    assert sorted(second.joiner.predictions) == ["r0", "r5"]
    assert accounted(snapshot) == 12

    clock[0] = BASE + 10_000 + WINDOW_S * 1000 + 1  # past the window of every prediction
    second.read_all()
    snapshot = second.checkpoint_snapshot()
    assert snapshot["pending"] == {"predictions": 0, "outcomes": 0}
    assert snapshot["unmatched"]["prediction_without_outcome"] == 2  # messages: r0's shadow is not a third
    shadow = [v for v in snapshot["versions"] if v["role"] == "shadow"]
    assert [v["unmatched"]["prediction_without_outcome"] for v in shadow] == [1]
    assert accounted(snapshot) == 12
    assert snapshot["unmatched"]["duplicate_prediction"] == snapshot["unmatched"]["duplicate_outcome"] == 0

    third = InMemoryEvaluator(settings, logs, second.last_checkpoint())
    third.open()
    third.read_all()
    snapshot = third.checkpoint_snapshot()
    assert (snapshot["matched"], snapshot["pending"]["predictions"]) == (10, 0)
    assert snapshot["unmatched"]["prediction_without_outcome"] == 2  # counted once, not again after a restart
    assert accounted(snapshot) == 12

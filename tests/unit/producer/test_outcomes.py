"""producer.outcomes: the delay syntax, the true values row for row, and outcomes emitted when due, never
before, on a fake clock and producer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producer.outcomes import OutcomeSchedule, csv_actuals, parse_delay_range, parse_duration
from producer.records import DEFAULT_CSV_PATH, csv_records, with_ids
from schemas.outcomes import Outcome


@pytest.mark.parametrize(("text", "expected"), [("5s..60s", (5.0, 60.0)), ("500ms..2s", (0.5, 2.0)),
                                                ("10", (10.0, 10.0)), ("1m..2m", (60.0, 120.0))])
def test_delay_ranges(text: str, expected: tuple[float, float]) -> None:
    assert parse_delay_range(text) == expected


@pytest.mark.parametrize("text", ["", "5x", "60s..5s", "-1s", "5s..", "s"])
def test_bad_delays_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_delay_range(text) if ".." in text else parse_duration(text)


def test_the_true_values_line_up_with_the_records(tmp_path: Path) -> None:
    lines = DEFAULT_CSV_PATH.read_text().splitlines()
    sample = tmp_path / "s.csv"
    sample.write_text("\n".join([lines[0], lines[1], "", lines[2], lines[3]]) + "\n")  # an empty line between
    header = lines[0].split(",")
    expected = [float(line.split(",")[header.index("median_house_value")]) for line in lines[1:4]]
    assert list(csv_actuals(sample)) == expected
    assert len(list(csv_records(sample))) == 3


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any = None) -> None:
        self.sent.append((topic, value, key))
        on_delivery(None, None)

    def poll(self, timeout: float) -> int:
        return 0


def test_outcomes_go_out_when_due_and_only_for_the_chosen_share() -> None:
    now = [0.0]
    schedule = OutcomeSchedule(topic="o", fraction=0.5, delay=(5.0, 10.0),
                               encode=lambda o: json.dumps(o.as_dict()).encode(), seed=1, clock=lambda: now[0])
    records = list(schedule.attach(with_ids([{"x": 1.0} for _ in range(200)]), [float(i) for i in range(200)]))
    assert len(records) == 200 and 70 < schedule.scheduled < 130
    producer = FakeProducer()
    now[0] = 4.99
    assert schedule.emit_due(producer) == 0  # type: ignore[arg-type]
    now[0] = 7.5
    first = schedule.emit_due(producer)  # type: ignore[arg-type]
    assert 0 < first < schedule.scheduled
    now[0] = 10.0
    schedule.drain(producer)  # type: ignore[arg-type]
    assert schedule.delivered == schedule.scheduled == len(producer.sent) and schedule.waiting == 0
    outcomes = [Outcome(**json.loads(value)) for _, value, _ in producer.sent]
    assert all(key.decode() == o.record_id and o.actual == float(o.record_id.split("-")[1])
               for (_, _, key), o in zip(producer.sent, outcomes, strict=True))


def test_a_fraction_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError):
        OutcomeSchedule(topic="o", fraction=1.5, delay=(1, 2), encode=lambda o: b"")

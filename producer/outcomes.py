"""Outcomes of the records sent: each record's true value (the CSV's ``median_house_value``) published later to
``housing.outcomes``, as an observed sale price would arrive.

``OutcomeSchedule.attach`` wraps the record stream: for a share ``fraction`` of the records (chosen by the seed)
it schedules the outcome at send time + a delay drawn uniformly from ``[low, high]`` seconds. The send loop calls
``emit_due`` between bursts (never blocking the records), and ``drain`` at the end waits for the last outcomes to
come due. Outcomes are keyed by record id, stamped ``observed_at`` when emitted, and counted on their own
delivery reports (the records' report stays the records').
"""

from __future__ import annotations

import csv
import heapq
import itertools
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from producer.records import Record, SourceError
from schemas.outcomes import Outcome

logger = logging.getLogger(__name__)

TARGET_COLUMN = "median_house_value"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``"500ms"``, ``"5s"``, ``"2m"``, ``"5"`` (seconds) -> seconds.

    :raises ValueError: not one of those forms.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 5s, 500ms or 2m")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_delay_range(text: str) -> tuple[float, float]:
    """``"5s..60s"`` -> (5.0, 60.0); a single duration is a fixed delay.

    :raises ValueError: malformed, or the low end above the high end.
    """
    low_text, sep, high_text = text.partition("..")
    low = parse_duration(low_text)
    high = parse_duration(high_text) if sep else low
    if low > high:
        raise ValueError(f"outcome delay {text!r}: the low end is above the high end")
    return low, high


def csv_actuals(path: str | Path, *, loop: bool = False) -> Iterator[float]:
    """The target column of the CSV, row for row as ``producer.records.csv_records`` yields the features.

    :raises SourceError: the file cannot be read or has no target column.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if TARGET_COLUMN not in header:
                raise SourceError(f"{path}: no {TARGET_COLUMN} column: outcomes need the true values")
            index = header.index(TARGET_COLUMN)
            values = []
            for line_no, row in enumerate(reader, start=2):
                if not row:  # csv_records skips empty lines too: the rows stay aligned
                    continue
                try:
                    values.append(float(row[index]))
                except (ValueError, IndexError) as exc:
                    raise SourceError(f"{path}:{line_no}: {TARGET_COLUMN}: {exc}") from None
    except OSError as exc:
        raise SourceError(f"cannot read CSV {path}: {exc.strerror or exc}") from None
    return itertools.cycle(values) if loop else iter(values)


class OutcomeSchedule:
    """Outcomes waiting for their time, and what became of them.

    :param fraction: share of records that get an outcome, 0..1.
    :param delay: (low, high) seconds after the record is sent.
    :param encode: Outcome -> bytes (the records' wire format).
    :param clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, *, topic: str, fraction: float, delay: tuple[float, float], encode: Callable[[Outcome], bytes],
                 seed: int | None = 0, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"outcome fraction must be between 0 and 1, got {fraction}")
        self.topic = topic
        self.fraction = fraction
        self.low, self.high = delay
        self.encode = encode
        self._rng = random.Random(seed)
        self._clock = clock
        self._due: list[tuple[float, int, str, float]] = []
        self._seq = itertools.count()
        self.scheduled = 0
        self.emitted = 0
        self.delivered = 0
        self.failed = 0
        self.errors: dict[str, int] = {}

    @property
    def waiting(self) -> int:
        """Outcomes scheduled but not emitted yet."""
        return len(self._due)

    def attach(self, records: Iterable[Record], actuals: Iterable[float]) -> Iterator[Record]:
        """The records unchanged; each one taken schedules its outcome (records must carry a ``record_id``)."""
        rand, uniform, clock = self._rng.random, self._rng.uniform, self._clock
        for record, actual in zip(records, actuals, strict=False):
            if rand() < self.fraction:
                due = clock() + uniform(self.low, self.high)
                heapq.heappush(self._due, (due, next(self._seq), str(record["record_id"]), actual))
                self.scheduled += 1
            yield record

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            text = str(error)[:200]
            self.errors[text] = self.errors.get(text, 0) + 1

    def emit_due(self, producer: Producer) -> int:
        """Produce the outcomes whose time has come; how many."""
        now = self._clock()
        sent = 0
        due = self._due
        wall_ms = time.time_ns() // 1_000_000
        while due and due[0][0] <= now:
            _, _, record_id, actual = heapq.heappop(due)
            value = self.encode(Outcome(record_id, actual, wall_ms))
            while True:
                try:
                    producer.produce(self.topic, value, record_id.encode(), on_delivery=self.on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
        self.emitted += sent
        return sent

    def drain(self, producer: Producer, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Wait for the outcomes still scheduled (serving delivery reports), emitting each when due."""
        if self._due:
            logger.info("waiting up to %.0f s for the last %d outcomes to come due",
                        max(d[0] for d in self._due) - self._clock(), len(self._due))
        while self._due and not should_stop():
            self.emit_due(producer)
            if self._due:
                producer.poll(min(0.2, max(0.001, self._due[0][0] - self._clock())))

    def summary(self) -> str:
        return (f"outcomes to {self.topic}: {self.scheduled} scheduled, {self.delivered} delivered, {self.failed} "
                f"failed, {self.waiting} not sent (interrupted)")

    def as_dict(self) -> dict[str, Any]:
        return {"scheduled": self.scheduled, "emitted": self.emitted, "delivered": self.delivered,
                "failed": self.failed, "waiting": self.waiting, "errors": dict(self.errors)}

"""A broker outage longer than the transaction timeout and any retry deadline, under exactly-once.

The test's own broker (never the session's) is frozen with SIGSTOP for OUTAGE_SECONDS while a paced stream keeps
coming: its connections stay open and nothing answers, as when a broker hangs or a network path drops packets.
It is frozen while the scorer works through a backlog, so transactions are in flight (a commit, or offsets being
sent) and records wait in the consumer's prefetch queue. The scorer must stay up the whole time, say so on /health
(unhealthy, with the reason) and /ready (503), and once the broker is resumed score every input exactly once by
itself: predictions + dead letters = inputs, no record id twice, read read_committed to the high watermarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from stack.kafka import LocalKafka, ensure_topics
from stack.local import DLQ_MAX_MESSAGE_BYTES
from stack.processes import free_port
from tests.conftest import RegisteredModel
from tests.e2e.conftest import BackgroundProducer, ScorerFactory, ScorerProcess, read_outputs, wait_committed
from tests.helpers import committed_total, keys_of, start_retrying_busy_ports, wait_for

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 150.0
"""Longer than transaction.timeout.ms (15 s) and than the 120 s the scorer used to give an abort."""
RATE = 250
"""Records per second, before, during (the producer buffers them) and after the outage."""
COUNT = int(RATE * (OUTAGE_SECONDS + 60))
BACKLOG = 30_000
"""Produced before the scorer starts: it is still working through them when the broker freezes."""
SMALL_BATCHES = {"BATCH_MAX_RECORDS": "50", "BATCH_MAX_WAIT_MS": "10"}


@contextlib.contextmanager
def frozen(broker: LocalKafka) -> Iterator[None]:
    """SIGSTOP the broker's process group for the block (SIGCONT at its end, whatever happens inside)."""
    pid = broker.running_pid()
    assert pid is not None, "the test's broker is not running"
    group = os.getpgid(pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def probe(base: str, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET on the scorer's admin API at ``base``; (0, {}) while it does not answer."""
    url = f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError):
        return 0, {}


def wait_probe(base: str, proc: ScorerProcess, path: str, condition: Callable[[int, dict[str, Any]], bool],
               timeout: float, what: str) -> dict[str, Any]:
    last: tuple[int, dict[str, Any]] = (0, {})

    def check() -> bool:
        nonlocal last
        assert proc.alive(), f"scorer exited ({proc.process.returncode}):\n{proc.tail()}"
        last = probe(base, path)
        return condition(*last)

    assert wait_for(check, timeout, 0.5), f"{path} never showed {what} within {timeout:.0f}s: {last}\n{proc.tail()}"
    return last[1]


def kafka_reasons(health: dict[str, Any]) -> list[str]:
    return [reason for reason in health.get("reasons", []) if "Kafka" in reason]


def assert_each_input_scored_once(settings: Settings, producers: Sequence[BackgroundProducer]) -> None:
    """Predictions + dead letters = inputs, each input key once (read_committed, to the high watermarks)."""
    bad = set().union(*(p.bad_keys for p in producers))
    good = set().union(*(p.keys for p in producers)) - bad
    predictions, dead = read_outputs(settings, len(good), len(bad), timeout=180)
    predicted, dead_lettered = Counter(keys_of(predictions)), Counter(keys_of(dead))
    twice = {key: n for key, n in (predicted + dead_lettered).items() if n > 1}
    assert not twice, f"{len(twice)} inputs came out more than once, e.g. {list(twice.items())[:5]}"
    assert set(predicted) == good, (f"predictions: {len(good - set(predicted))} missing, "
                                    f"{len(set(predicted) - good)} unexpected")
    assert set(dead_lettered) == bad, (f"dead letters: {len(bad - set(dead_lettered))} missing, "
                                       f"{len(set(dead_lettered) - bad)} unexpected")


def test_broker_frozen_longer_than_every_timeout_scorer_rides_it_out_and_scores_each_input_once(
        tmp_path: Path, settings_factory: Callable[..., Settings], registered_model: RegisteredModel,
        scorer_process: ScorerFactory) -> None:
    def start_broker() -> LocalKafka:  # on other free ports if one was taken before the broker bound it
        broker = LocalKafka(tmp_path / f"kafka-{uuid.uuid4().hex[:6]}", port=free_port(), controller_port=free_port())
        broker.start()
        return broker

    broker = start_retrying_busy_ports(start_broker)
    try:
        bootstrap = broker.bootstrap_servers
        suffix = uuid.uuid4().hex[:6]
        topics = {"records": f"rec-{suffix}", "predictions": f"pred-{suffix}", "dead_letter": f"dlq-{suffix}",
                  "model_updates": f"upd-{suffix}", "scorer_status": f"status-{suffix}"}
        ensure_topics({"bootstrap.servers": bootstrap}, {
            topics["records"]: (3, {}), topics["predictions"]: (3, {}),
            topics["dead_letter"]: (3, {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
            topics["model_updates"]: (1, {}), topics["scorer_status"]: (1, {"cleanup.policy": "compact"}),
        })
        settings = settings_factory(topics, **{**registered_model.settings_overrides(),
                                               "kafka.bootstrap_servers": bootstrap,
                                               "scorer.group_id": f"group-{suffix}", "admin.port": 0})
        group, records_topic = settings.scorer.group_id, topics["records"]
        backlog = BackgroundProducer(settings, BACKLOG, prefix="backlog", bad_every=50)
        records = BackgroundProducer(settings, COUNT, rate=RATE, prefix="stream", bad_every=50)
        backlog.run()
        scorer = scorer_process(settings, instance_id="outage", args=(),
                                env={**SMALL_BATCHES, "ADMIN_API_ENABLED": "true"})
        base = scorer.admin_url()
        records.start()
        committed_before = wait_committed(bootstrap, group, records_topic, 3, 3000, 60, [scorer])
        assert committed_before < BACKLOG, "the backlog was gone before the broker froze: no transaction in flight"

        # Through the outage: /health and /ready sampled, and whether the scorer is still there.
        samples: list[tuple[float, int, dict[str, Any], int]] = []

        def sample_or_exited() -> bool:
            if not scorer.alive():
                return True
            health_status, health = probe(base, "/health")
            samples.append((time.monotonic() - frozen_at, health_status, health, probe(base, "/ready")[0]))
            return False

        with frozen(broker):
            frozen_at = time.monotonic()
            exited = wait_for(sample_or_exited, OUTAGE_SECONDS, 0.5)
            away_for = time.monotonic() - frozen_at
        assert not exited, (f"scorer exited with {scorer.process.returncode} after {away_for:.0f}s of outage:\n"
                            f"{scorer.tail(60)}")
        thawed_at = time.monotonic()

        # Back: it resumes by itself and scores everything, staying up.
        records.join(300)
        total = BACKLOG + COUNT
        done = wait_for(lambda: not scorer.alive() or committed_total(bootstrap, group, records_topic, 3) >= total,
                        300, 0.5)
        assert scorer.alive(), (f"scorer exited with {scorer.process.returncode} "
                                f"{time.monotonic() - thawed_at:.0f}s after the broker came back:\n{scorer.tail(60)}")
        assert done, f"not everything committed 300s after the broker came back:\n{scorer.tail(60)}"
        wait_probe(base, scorer, "/health", lambda _, body: not kafka_reasons(body), 60, "no Kafka reason")
        wait_probe(base, scorer, "/ready", lambda status, _: status == 200, 60, "ready again")

        # While the broker was away: /health unhealthy, saying why; /ready 503 (and still so at the end).
        unhealthy = [h for _, status, h, _ in samples if status == 503 and kafka_reasons(h)]
        last = [(round(t), status, h.get("reasons")) for t, status, h, _ in samples[-3:]]
        assert unhealthy and unhealthy[-1]["status"] == "unhealthy", f"/health while the broker was away: {last}"
        assert samples[-1][3] == 503, f"/ready {samples[-1][3]} after {samples[-1][0]:.0f}s without a broker"
        log = scorer.log()
        assert "Traceback" not in log, scorer.tail(80)
        scorer.terminate()
        assert scorer.wait(60) == 0, scorer.tail()
        assert_each_input_scored_once(settings, [backlog, records])
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.killpg(os.getpgid(broker.running_pid()), signal.SIGCONT)  # type: ignore[arg-type]
        broker.stop()

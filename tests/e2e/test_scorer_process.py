"""``housing-scorer`` as an operator runs it: configured by environment, stopped by signals, broken by bad config.

- SIGTERM mid-stream: the batch in flight is finished and committed, the process exits 0, and what it committed
  is exactly what downstream sees (a second scorer then finishes the stream without a duplicate).
- A broker that goes away (kill -9) and comes back on the same storage: nothing is lost, nothing doubled.
- A fatal configuration (missing topic, unreachable broker, unknown model without a fallback): exit code 2 and a
  message that says what to fix.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from stack.kafka import LocalKafka, ensure_topics
from stack.local import DLQ_MAX_MESSAGE_BYTES
from stack.processes import free_port
from tests.conftest import RegisteredModel
from tests.e2e.conftest import BackgroundProducer, ScorerFactory, assert_exactly_once, committed_total, wait_committed
from tests.helpers import start_retrying_busy_ports, unused_port, wait_for

pytestmark = pytest.mark.e2e

SMALL_BATCHES = {"BATCH_MAX_RECORDS": "50", "BATCH_MAX_WAIT_MS": "10"}
"""Many short transactions, so a signal or a fault lands in the middle of the stream."""


def test_sigterm_finishes_the_batch_commits_and_exits_zero(scorer_settings: Settings,
                                                          scorer_process: ScorerFactory) -> None:
    settings = scorer_settings
    records = BackgroundProducer(settings, 4000, rate=2000, prefix="term", bad_every=40)
    first = scorer_process(settings, instance_id="term-a", env=SMALL_BATCHES)
    records.start()
    bootstrap, group, topic = settings.kafka.bootstrap_servers, settings.scorer.group_id, settings.topics.records
    wait_committed(bootstrap, group, topic, 3, 1000, 60, [first])

    first.terminate()
    assert first.wait(60) == 0, first.tail()
    log = first.log()
    assert "stopping: signal" in log, first.tail()
    stopped_at = committed_total(bootstrap, group, topic, 3)
    assert 1000 <= stopped_at < 4000, f"SIGTERM came too late to be mid-stream ({stopped_at} committed)"

    # A second scorer in the same group picks up exactly where the committed offsets say.
    second = scorer_process(settings, instance_id="term-b", env=SMALL_BATCHES)
    records.join()
    wait_committed(bootstrap, group, topic, 3, 4000, 60, [second])
    second.terminate()
    assert second.wait(60) == 0, second.tail()
    assert_exactly_once(settings, records)


def test_broker_killed_and_restarted_loses_nothing(tmp_path: Path, settings_factory: Callable[..., Settings],
                                                    registered_model: RegisteredModel,
                                                    scorer_process: ScorerFactory) -> None:
    def start_broker() -> LocalKafka:  # on other free ports if one was taken before the broker bound it
        broker = LocalKafka(tmp_path / f"kafka-{uuid.uuid4().hex[:6]}", port=free_port(), controller_port=free_port())
        broker.start()
        return broker

    broker = start_retrying_busy_ports(start_broker)
    try:
        bootstrap = broker.bootstrap_servers
        topics = {"records": f"rec-{uuid.uuid4().hex[:6]}", "predictions": f"pred-{uuid.uuid4().hex[:6]}",
                  "dead_letter": f"dlq-{uuid.uuid4().hex[:6]}", "model_updates": f"upd-{uuid.uuid4().hex[:6]}",
                  "scorer_status": f"status-{uuid.uuid4().hex[:6]}"}
        ensure_topics({"bootstrap.servers": bootstrap}, {
            topics["records"]: (3, {}), topics["predictions"]: (3, {}),
            topics["dead_letter"]: (3, {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}),
            topics["model_updates"]: (1, {}), topics["scorer_status"]: (1, {"cleanup.policy": "compact"}),
        })
        settings = settings_factory(topics, **{**registered_model.settings_overrides(),
                                               "kafka.bootstrap_servers": bootstrap,
                                               "scorer.group_id": f"group-{uuid.uuid4().hex[:6]}"})
        group = settings.scorer.group_id
        records = BackgroundProducer(settings, 5000, rate=1000, prefix="outage", bad_every=50).start()
        scorer = scorer_process(settings, instance_id="outage", env=SMALL_BATCHES)
        wait_committed(bootstrap, group, topics["records"], 3, 1000, 60, [scorer])

        pid = broker.running_pid()
        assert pid is not None
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the broker goes away without a goodbye
        assert wait_for(lambda: broker.running_pid() is None, 15), "broker did not die"
        # Down for as long as a JVM takes to start again (seconds) while records keep coming.
        broker.start(format_storage=False)
        records.join(180)
        wait_committed(bootstrap, group, topics["records"], 3, 5000, 150, [scorer])
        assert scorer.alive(), scorer.tail()
        assert "Kafka: " in scorer.log(), "the scorer never noticed the outage:\n" + scorer.tail()
        scorer.terminate()
        assert scorer.wait(60) == 0, scorer.tail()
        assert_exactly_once(settings, records)
    finally:
        broker.stop()


def test_fatal_configuration_exits_nonzero_saying_what_to_fix(scorer_settings: Settings,
                                                              scorer_process: ScorerFactory,
                                                              tmp_path: Path) -> None:
    with unused_port() as port:  # held until every case has exited: nothing can listen there meanwhile
        # Started together: each one's failure takes seconds (the unreachable broker the longest).
        cases = {
            "missing-topic": ({"TOPIC_RECORDS": f"no-such-topic-{uuid.uuid4().hex[:6]}"},
                              ["do not exist", "no-such-topic-", "create them"]),
            "no-broker": ({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
                          ["did not answer", "KAFKA_BOOTSTRAP_SERVERS"]),
            "unknown-model": ({"MLFLOW_MODEL_NAME": f"no_such_model_{uuid.uuid4().hex[:6]}",
                               "MODEL_PATH": str(tmp_path / "missing.pkl")},
                              ["no model to serve", "no_such_model_", "MODEL_PATH", "housing-train"]),
            "bad-setting": ({"BATCH_MAX_RECORDS": "lots"}, ["BATCH_MAX_RECORDS", "integer"]),
        }
        procs = {name: scorer_process(scorer_settings, instance_id=name, env=env, wait=False)
                 for name, (env, _) in cases.items()}
        for name, (_, expected) in cases.items():
            proc = procs[name]
            code = proc.wait(90)
            log = proc.log()
            assert code == 2, f"{name}: exit code {code}\n{proc.tail()}"
            missing = [text for text in expected if text not in log]
            assert not missing, f"{name}: message lacks {missing}:\n{proc.tail()}"
            assert "Traceback" not in log, f"{name}: a traceback instead of a message:\n{proc.tail()}"

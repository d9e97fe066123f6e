"""Throughput (issue 3): records/s of three ways to score the same pre-loaded records with the same model.

(a) naive: poll one, a DataFrame of one, predict, produce, synchronous commit, per record;
(b) minimal batched: consume a batch, one DataFrame from ``json.loads``'d dicts, one predict, produce JSON,
    send the offsets in the transaction, commit; nothing else (no validation, DLQ, metrics, hooks);
(c) housing-scorer as a subprocess, every feature it has on, exactly-once and at-least-once.

Every variant reads the same input topic (its own consumer group) and writes its own output topic; the rate
is taken from the outputs' CreateTime timestamps, first to last (start-up excluded), and each output topic is
counted (exactly one output per input under exactly-once).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition
from tqdm import tqdm

from bench.env import BenchEnv, step
from bench.io import preload, read_outputs
from bench.scorer import ScorerProcess
from config.runtime import limit_thread_pools
from consumer.models.loader import load_fallback
from schemas.features import FEATURE_COLUMNS

logger = logging.getLogger(__name__)


def _consumer(env: BenchEnv, topic: str, group_id: str) -> Consumer:
    consumer = Consumer({**env.client_config, "group.id": group_id, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    return consumer


def naive_loop(env: BenchEnv, model: Any, in_topic: str, out_topic: str, count: int) -> float:
    """(a): per record everything; returns wall seconds from the first poll to the last delivery."""
    consumer = _consumer(env, in_topic, env.group_id("naive"))
    producer = Producer({**env.client_config, "acks": "all", "enable.idempotence": True})
    columns = list(FEATURE_COLUMNS)
    done = 0
    started: float | None = None
    bar = tqdm(total=count, desc="(a) naive", unit="rec", leave=False, mininterval=0.5)
    try:
        while done < count:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            if started is None:
                started = time.perf_counter()
            record = json.loads(message.value() or b"{}")
            frame = pd.DataFrame([record], columns=columns)
            prediction = float(model.predict(frame)[0])
            producer.produce(out_topic, json.dumps({"record_id": record["record_id"], "prediction": prediction}),
                             message.key())
            producer.poll(0)
            consumer.commit(message=message, asynchronous=False)
            done += 1
            bar.update(1)
        producer.flush(30)
    finally:
        bar.close()
        consumer.close()
    return time.perf_counter() - (started or time.perf_counter())


def minimal_batched_loop(env: BenchEnv, model: Any, in_topic: str, out_topic: str, count: int,
                         batch_max_records: int, batch_max_wait_ms: int) -> float:
    """(b): batches in transactions and nothing else; returns wall seconds from the first batch to the end."""
    group_id = env.group_id("minimal")
    consumer = _consumer(env, in_topic, group_id)
    producer = Producer({**env.client_config, "transactional.id": f"{group_id}-tx", "linger.ms": 2,
                         "compression.type": "lz4"})
    producer.init_transactions(30)
    columns = list(FEATURE_COLUMNS)
    loads, dumps = json.loads, json.dumps
    done = 0
    started: float | None = None
    bar = tqdm(total=count, desc="(b) minimal batched", unit="rec", leave=False, mininterval=0.5)
    try:
        while done < count:
            messages = consumer.consume(batch_max_records, batch_max_wait_ms / 1000)
            messages = [m for m in messages if not m.error()]
            if not messages:
                continue
            if started is None:
                started = time.perf_counter()
            records = [loads(m.value() or b"{}") for m in messages]
            predictions = model.predict(pd.DataFrame.from_records(records, columns=columns))
            producer.begin_transaction()
            produce = producer.produce
            for message, record, prediction in zip(messages, records, predictions.tolist(), strict=True):
                produce(out_topic, dumps({"record_id": record["record_id"], "prediction": prediction}),
                        message.key())
            last: dict[int, int] = {}
            for message in messages:
                last[int(message.partition() or 0)] = int(message.offset() or 0)
            offsets = [TopicPartition(in_topic, p, o + 1) for p, o in last.items()]
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            done += len(messages)
            bar.update(len(messages))
    finally:
        bar.close()
        consumer.close()
    return time.perf_counter() - (started or time.perf_counter())


def scorer_run(env: BenchEnv, in_topic: str, count: int, guarantee: str, batch_max_records: int,
               batch_max_wait_ms: int, tag: str) -> tuple[str, float, dict[str, Any]]:
    """(c): housing-scorer drains the pre-loaded topic; returns (output topic, wall seconds, process info)."""
    topics = env.fresh_topics(tag)
    # The scorer reads the shared pre-loaded input; its own output, DLQ and control topics are fresh.
    topics = type(topics)(in_topic, topics.predictions, topics.dead_letter, topics.model_updates,
                          topics.scorer_status)
    group_id = env.group_id(tag)
    scorer = ScorerProcess(env, topics, group_id=group_id, guarantee=guarantee,
                           batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms,
                           log_path=env.scratch / f"{tag}.log").start()
    started = time.perf_counter()
    bar = tqdm(total=count, desc=f"(c) housing-scorer {guarantee}", unit="rec", leave=False, mininterval=0.5)
    try:
        done = 0
        while done < count:
            scorer.check_alive()
            time.sleep(0.5)
            now = env.committed_total(group_id, in_topic)
            bar.update(now - done)
            done = now
        wall = time.perf_counter() - started
    finally:
        bar.close()
        scorer.stop()
        env.forget_group(group_id, in_topic)
    return topics.predictions, wall, scorer.describe()


def run(env: BenchEnv, *, count: int, naive_count: int, batch_max_records: int,
        batch_max_wait_ms: int) -> dict[str, Any]:
    assert env.model is not None
    limit_thread_pools(1)  # as the scorer does (MODEL_THREADS=1)
    handle = load_fallback(env.model.fallback_paths[-1], env.model.name)
    model = handle.model
    in_topic = env.create_topic(f"bench-{env.run_id}-throughput.records")
    step(f"throughput: pre-loading {count:,} records into {in_topic}")
    report = preload(env.client_config, in_topic, count)
    step(f"pre-loaded at {report.rate:,.0f} records/s")
    results: dict[str, Any] = {"records": count, "naive_records": naive_count,
                               "batch_max_records": batch_max_records, "batch_max_wait_ms": batch_max_wait_ms,
                               "model": {"name": env.model.name, "version": env.model.versions[-1],
                                         "kind": "hist_gradient_boosting"},
                               "method": "records/s from the first to the last output's CreateTime timestamp; "
                                         "outputs read read_committed and counted"}
    variants: dict[str, dict[str, Any]] = {}

    from bench import core

    step("throughput: CPU per record of the scoring work alone (no Kafka)")
    results["core"] = core.run(handle)
    step(f"  {results['core']['us_per_record']} us/record")

    step(f"throughput (a): naive per-record loop over {naive_count:,} records")
    out = env.create_topic(f"bench-{env.run_id}-naive.out")
    wall = naive_loop(env, model, in_topic, out, naive_count)
    variants["a_naive"] = _summary(env, out, naive_count, wall)

    step(f"throughput (b): minimal batched transactional loop over {count:,} records")
    out = env.create_topic(f"bench-{env.run_id}-minimal.out")
    wall = minimal_batched_loop(env, model, in_topic, out, count, batch_max_records, batch_max_wait_ms)
    variants["b_minimal_batched"] = _summary(env, out, count, wall)

    for guarantee, key in (("exactly_once", "c_scorer_eos"), ("at_least_once", "c_scorer_alo")):
        step(f"throughput (c): housing-scorer {guarantee} over {count:,} records")
        out, wall, info = scorer_run(env, in_topic, count, guarantee, batch_max_records, batch_max_wait_ms,
                                     f"tp-{guarantee}")
        variants[key] = {**_summary(env, out, count, wall), **info, "wall_includes_startup": True}

    for key, value in variants.items():
        step(f"  {key}: {value['records_per_s']:,.0f} records/s ({value['outputs']:,} outputs, "
             f"{value['duplicates']} duplicates)")
    rate = {key: value["records_per_s"] for key, value in variants.items()}
    results["variants"] = variants
    results["ratios"] = {
        "c_eos_over_a": round(rate["c_scorer_eos"] / rate["a_naive"], 1),
        "c_eos_over_b": round(rate["c_scorer_eos"] / rate["b_minimal_batched"], 3),
        "c_alo_over_a": round(rate["c_scorer_alo"] / rate["a_naive"], 1),
        "c_alo_over_b": round(rate["c_scorer_alo"] / rate["b_minimal_batched"], 3),
    }
    results["targets"] = {"c_eos_over_b>=0.7": results["ratios"]["c_eos_over_b"] >= 0.7,
                          "c_eos_over_a>=150": results["ratios"]["c_eos_over_a"] >= 150}
    step(f"throughput ratios: {results['ratios']}")
    return results


def _summary(env: BenchEnv, topic: str, expect: int, wall: float) -> dict[str, Any]:
    outputs = read_outputs(env.client_config, topic, expect)
    return {"records_per_s": round(outputs.rate(), 1), "outputs": outputs.count,
            "distinct_keys": outputs.distinct_keys, "duplicates": outputs.duplicates,
            "missing": max(0, expect - outputs.distinct_keys), "wall_seconds": round(wall, 2),
            "span_seconds": round(float(np.ptp(outputs.timestamps_ms)) / 1000, 3) if outputs.count else None}

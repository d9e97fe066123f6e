"""The in-process limits the efficiency benchmark sets the scorer against, each measured on the same records.

- ``raw_kafka``: only what Kafka costs, librdkafka through confluent-kafka: consume in batches and produce each
  value unchanged, in one transaction per batch with the offsets (exactly-once) or plain (at-least-once).
- ``floor``: the least this design can do per record and still keep the output contract, in its own process:
  the raw loop plus ``orjson.loads`` of each value, the feature columns, the model (compiled trees), one
  ``PredictionJsonWriter`` f-string per output and the contract's three headers on each. No validation, dead
  letters, metrics, drift, prediction logging, admin API, control plane or failure handling: what the scorer
  spends above it is the cost of those.
- ``predict``: the model alone on the records' feature columns, compiled trees and per-tree walk.

The two loops run as ``python -m bench.limits <spec JSON>`` so that their CPU is theirs alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from bench.env import PROJECT_ROOT, BenchEnv
from bench.scorer import SCORER_COMPILED_TREES_CACHE


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of the process and of its live children (the workers of ``--workers N``)."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        try:
            times = each.cpu_times()
        except psutil.Error:  # a child that just exited
            continue
        total += times.user + times.system
    return total


def _run_in_own_process(spec: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run([sys.executable, "-m", "bench.limits", json.dumps(spec)], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=900, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def raw_kafka(env: BenchEnv, in_topic: str, count: int, *, transactional: bool, compression: str,
              batch: int) -> dict[str, Any]:
    """The Kafka-only limit: consume ``count`` records of ``in_topic`` and produce each value unchanged."""
    return _run_in_own_process({"loop": "raw", "config": env.client_config, "in_topic": in_topic,
                                "out_topic": env.fresh_topics("raw").predictions, "count": count,
                                "transactional": transactional, "compression": compression, "batch": batch,
                                "group_id": env.group_id("raw")})


def floor(env: BenchEnv, in_topic: str, count: int, *, transactional: bool, batch: int) -> dict[str, Any]:
    """The floor of this design (module docstring) on the bench model's fallback file, compiled trees warm."""
    assert env.model is not None
    return _run_in_own_process({"loop": "floor", "config": env.client_config, "in_topic": in_topic,
                                "out_topic": env.fresh_topics("floor").predictions, "count": count,
                                "transactional": transactional, "compression": "lz4", "batch": batch,
                                "group_id": env.group_id("floor"), "model_name": env.model.name,
                                "fallback_path": str(env.model.fallback_paths[0])})


BatchWork = Callable[[list[Any], Callable[..., None], str], None]
"""Produce a batch's outputs: (messages, producer.produce, output topic)."""


def _consume_produce(spec: dict[str, Any], work: BatchWork) -> dict[str, Any]:
    """The loop both limits share: batches of ``spec["batch"]``, one transaction per batch (exactly-once) or an
    asynchronous commit (at-least-once); CPU and time from the first batch to the end."""
    from confluent_kafka import Consumer, Producer

    consumer = Consumer({**spec["config"], "group.id": spec["group_id"], "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 10, "queued.min.messages": max(10000, spec["batch"] * 4)})
    consumer.subscribe([spec["in_topic"]])
    producer_config = {**spec["config"], "enable.idempotence": True, "acks": "all", "linger.ms": 2,
                       "compression.type": spec["compression"], "queue.buffering.max.messages": 100000}
    if spec["transactional"]:
        producer_config["transactional.id"] = f"{spec['group_id']}-tx"
    producer = Producer(producer_config)
    if spec["transactional"]:
        producer.init_transactions(30)
    out, done, first = spec["out_topic"], 0, None
    process = psutil.Process()
    while done < spec["count"]:
        messages = [m for m in consumer.consume(spec["batch"], 1.0) if not m.error()]
        if not messages:
            continue
        if first is None:
            first = (cpu_seconds(process), time.monotonic(), len(messages))
        if spec["transactional"]:
            producer.begin_transaction()
        work(messages, producer.produce, out)
        producer.poll(0)
        if spec["transactional"]:
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata())
            producer.commit_transaction(30)
        else:
            consumer.commit(asynchronous=True)
        done += len(messages)
    producer.flush(30)
    cpu, wall = cpu_seconds(process), time.monotonic()
    consumer.close()
    assert first is not None
    records = done - first[2]
    return {"transactional": spec["transactional"], "compression": spec["compression"], "records": done,
            "cpu_us_per_record": round((cpu - first[0]) / records * 1e6, 2),
            "records_per_s": round(records / (wall - first[1]), 0)}


def _raw_work(messages: list[Any], produce: Callable[..., None], out: str) -> None:
    for message in messages:
        produce(out, message.value(), message.key())


def _floor_work(spec: dict[str, Any]) -> BatchWork:
    import orjson

    from consumer.core import compiled_trees
    from consumer.core.features import to_columns
    from consumer.models.loader import load_fallback
    from schemas import topics as contract
    from schemas.codecs import PredictionJsonWriter

    compiled_trees.configure(enabled=True, cache_dir=SCORER_COMPILED_TREES_CACHE)
    handle = load_fallback(spec["fallback_path"], spec["model_name"])
    handle.wait_compiled(300)
    headers = [(contract.HEADER_MODEL_NAME, handle.name.encode()),
               (contract.HEADER_MODEL_VERSION, handle.version.encode()), (contract.HEADER_FORMAT, b"json")]
    loads = orjson.loads

    def work(messages: list[Any], produce: Callable[..., None], out: str) -> None:
        records = [loads(message.value()) for message in messages]
        predictions = handle.predict(to_columns(records)).tolist()
        writer = PredictionJsonWriter(model_name=handle.name, model_version=handle.version, model_alias=None,
                                      model_stage=None, scored_at=int(time.time() * 1000),
                                      shadow_model_version=None)
        outputs = writer.write_many([record["record_id"] for record in records], predictions,
                                    [message.topic() for message in messages],
                                    [message.partition() for message in messages],
                                    [message.offset() for message in messages],
                                    [record.get("event_time") for record in records])
        for message, value in zip(messages, outputs, strict=True):
            produce(out, value, message.key(), headers=headers)

    return work


def predict_limit(env: BenchEnv, batch: int, rows: int = 20_000) -> dict[str, Any]:
    """The model alone on the backlog's records, in batches of ``batch``: CPU µs/record per tree walk."""
    from consumer.core import compiled_trees
    from consumer.core.features import to_columns
    from consumer.models.loader import load_fallback
    from producer.records import csv_records

    assert env.model is not None
    records = []
    for record in csv_records(loop=True):
        records.append(record)
        if len(records) >= rows:
            break
    batches = [to_columns(records[start:start + batch]) for start in range(0, rows, batch)]
    result: dict[str, Any] = {"batch": batch, "rows": rows}
    handles = {}
    for walk, enabled in (("compiled", True), ("per_tree", False)):
        compiled_trees.configure(enabled=enabled, cache_dir=SCORER_COMPILED_TREES_CACHE)
        handle = load_fallback(env.model.fallback_paths[0], env.model.name)
        handle.wait_compiled(300)
        handles[walk] = handle
        result[f"{walk}_tree_walk"] = handle.tree_walk
    compiled_trees.configure(enabled=False, cache_dir=None)
    times: dict[str, list[float]] = {walk: [] for walk in handles}
    for _ in range(5):  # interleaved, so a busy machine affects both alike
        for walk, handle in handles.items():
            started = time.process_time()
            for columns in batches:
                handle.predict(columns)
            times[walk].append(time.process_time() - started)
    for walk, values in times.items():
        result[f"{walk}_cpu_us_per_record"] = round(float(np.median(values)) / rows * 1e6, 2)
    return result


if __name__ == "__main__":  # one loop, in its own process (see _run_in_own_process)
    loop_spec = json.loads(sys.argv[1])
    loop_work = _raw_work if loop_spec["loop"] == "raw" else _floor_work(loop_spec)
    print(json.dumps(_consume_produce(loop_spec, loop_work)))

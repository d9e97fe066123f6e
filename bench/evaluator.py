"""The evaluator's benchmark (issue 14): CPU per matched pair and peak memory.

- ``window``: the join alone (consumer.evaluation.join, in a fresh subprocess so its peak RSS is its own) over a
  simulated backlog of ``seconds`` of event time at ``rate`` predictions/s (default a full 10-minute window at
  10,000/s), a share ``fraction`` of them followed by their outcome 5-60 s later: CPU per matched pair, peak RSS,
  rows pending at the peak and the checkpoint's size and encoding time there.
- ``kafka``: housing-evaluate's loop (in-process) reading a backlog of ``count`` predictions and outcomes from the
  real broker (decode, join, dead letters, checkpoints): CPU per matched pair and pairs per second.

``python -m bench --only evaluator`` runs both; ``python -m bench.evaluator`` runs the ``window`` part alone.
"""

from __future__ import annotations

import heapq
import json
import multiprocessing
import resource
import sys
import threading
import time
import uuid
from typing import Any

import numpy as np

from consumer.evaluation.checkpoint import Checkpoint
from consumer.evaluation.join import Joiner, ObservedOutcome, ScoredPrediction
from consumer.evaluation.stats import LiveStats
from schemas.outcomes import Outcome


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def simulate_window(rate: int = 10_000, seconds: int = 600, fraction: float = 0.9, window_s: float = 600.0,
                    max_pending: int = 10_000_000, seed: int = 0) -> dict[str, Any]:
    """The join over a simulated backlog, one second of event time per step (measured in this process)."""
    rng = np.random.default_rng(seed)
    start_rss = _rss_mb()
    joiner = Joiner(LiveStats(int(window_s * 1000), 10_000), int(window_s * 1000), max_pending)
    due: list[tuple[int, int, float]] = []  # (observed_at, record number, actual)
    t0 = 1_700_000_000_000
    cpu0 = time.process_time()
    peak_pending = 0
    checkpoint_bytes = checkpoint_seconds = 0.0
    for second in range(seconds + 61):
        base = t0 + second * 1000
        if second < seconds:
            ids = np.arange(second * rate, (second + 1) * rate)
            scored = base + (np.arange(rate) * 1000) // rate
            values = rng.uniform(5e4, 5e5, rate)
            joiner.add_predictions([ScoredPrediction(f"rec-{i}", float(v), "1", "champion", int(s), None, None,
                                                     int(i % 6), int(i // 6))
                                    for i, v, s in zip(ids.tolist(), values.tolist(), scored.tolist(), strict=True)])
            chosen = rng.random(rate) < fraction
            delays = rng.integers(5_000, 60_001, rate)
            actuals = values * rng.normal(1.0, 0.2, rate)
            for i, s, d, a in zip(ids[chosen].tolist(), scored[chosen].tolist(), delays[chosen].tolist(),
                                  actuals[chosen].tolist(), strict=True):
                heapq.heappush(due, (s + d, i, abs(a)))
        arrived = []
        limit = base + 1000
        while due and due[0][0] < limit:
            observed, i, actual = heapq.heappop(due)
            arrived.append(ObservedOutcome(Outcome(f"rec-{i}", actual, observed), i % 6, i // 6, None, b""))
        joiner.add_outcomes(arrived)
        joiner.advance(limit)
        pending = len(joiner.predictions) + len(joiner.outcomes)
        if pending > peak_pending:
            peak_pending = pending
        if second == seconds - 1:  # the fullest moment: measure a checkpoint of it
            began = time.perf_counter()
            predictions, outcomes = joiner.pending_offsets()
            encoded = Checkpoint("bench", 0, joiner.watermark, {}, {}, {"predictions": predictions,
                                                                        "outcomes": outcomes},
                                 joiner.stats.to_state(), [], joiner.matched).encode()
            checkpoint_seconds = time.perf_counter() - began
            checkpoint_bytes = len(encoded)
    cpu = time.process_time() - cpu0
    return {"rate": rate, "seconds": seconds, "fraction": fraction, "window_seconds": window_s,
            "predictions": rate * seconds, "matched": joiner.matched, "unmatched": joiner.unmatched(),
            "cpu_seconds": round(cpu, 2), "cpu_us_per_matched_pair": round(cpu / max(1, joiner.matched) * 1e6, 2),
            "cpu_us_per_message": round(cpu / max(1, rate * seconds + joiner.matched) * 1e6, 2),
            "peak_pending_rows": peak_pending, "peak_rss_mb": round(_rss_mb(), 1),
            "rss_before_mb": round(start_rss, 1), "checkpoint_bytes_at_peak": int(checkpoint_bytes),
            "checkpoint_encode_seconds_at_peak": round(checkpoint_seconds, 3)}


def _child(kwargs: dict[str, Any], out: Any) -> None:
    out.send(simulate_window(**kwargs))


def window_in_subprocess(**kwargs: Any) -> dict[str, Any]:
    """``simulate_window`` in a fresh process (spawn): the peak RSS is the join's, not this process's."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(kwargs, sender))
    process.start()
    result = receiver.recv()
    process.join()
    return dict(result)


def kafka_backlog(env: Any, count: int = 200_000, fraction: float = 0.9) -> dict[str, Any]:
    """housing-evaluate's loop over a backlog on the broker; CPU of this process while it reads."""
    # deferred: only this part needs Kafka, the evaluator loop and the test-style writer
    from consumer.evaluation.run import Evaluator
    from schemas.codecs import PredictionEncoder, WireFormat
    from schemas.outcomes import OutcomeEncoder

    names = {"predictions": env.create_topic(f"eval-predictions-{uuid.uuid4().hex[:6]}"),
             "outcomes": env.create_topic(f"eval-outcomes-{uuid.uuid4().hex[:6]}"),
             "outcomes_dead_letter": env.create_topic(f"eval-dlq-{uuid.uuid4().hex[:6]}"),
             "evaluation": env.create_topic(f"eval-snapshots-{uuid.uuid4().hex[:6]}", 1),
             "evaluator_checkpoints": env.create_topic(f"eval-checkpoints-{uuid.uuid4().hex[:6]}", 1)}
    settings = env.settings(**{f"topics.{k}": v for k, v in names.items()},
                            **{"evaluation.evaluator_id": f"bench-{uuid.uuid4().hex[:6]}",
                               "evaluation.mlflow_seconds": 0, "evaluation.port": 0})
    from confluent_kafka import Producer

    producer = Producer({**env.client_config(), "linger.ms": 20, "compression.type": "lz4",
                         "queue.buffering.max.messages": 1_000_000})
    rng = np.random.default_rng(1)
    now = int(time.time() * 1000) - 120_000
    encoder, outcomes = PredictionEncoder(), OutcomeEncoder()
    expected = 0
    for i in range(count):
        value = float(rng.uniform(5e4, 5e5))
        scored = now + i // 10
        fields = {"record_id": f"rec-{i}", "prediction": value, "model_name": "m", "model_version": "1",
                  "model_alias": "champion", "model_stage": None, "scored_at": scored, "source_topic": "r",
                  "source_partition": 0, "source_offset": i, "event_time": None, "shadow_prediction": None,
                  "shadow_model_version": None}
        producer.produce(names["predictions"], encoder.encode(fields, WireFormat.JSON), f"rec-{i}".encode())
        if rng.random() < fraction:
            producer.produce(names["outcomes"], outcomes.encode(Outcome(f"rec-{i}", value * 1.1, scored + 5_000),
                                                                WireFormat.JSON), f"rec-{i}".encode())
            expected += 1
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    evaluator = Evaluator(settings, serve_http=False, log_to_mlflow=False)
    thread = threading.Thread(target=evaluator.run, daemon=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    thread.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and evaluator.joiner.matched < expected:
        time.sleep(0.1)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    evaluator.stopping.set()
    thread.join(60)
    matched = evaluator.joiner.matched
    return {"predictions": count, "outcomes": expected, "matched": matched, "wall_seconds": round(wall, 2),
            "pairs_per_second": round(matched / wall), "cpu_seconds": round(cpu, 2),
            "cpu_us_per_matched_pair": round(cpu / max(1, matched) * 1e6, 1), "peak_rss_mb_of_bench": round(_rss_mb())}


def run(env: Any, *, quick: bool = False) -> dict[str, Any]:
    window = window_in_subprocess(seconds=60 if quick else 600)
    kafka = kafka_backlog(env, count=20_000 if quick else 200_000)
    return {"window": window, "kafka": kafka}


if __name__ == "__main__":
    print(json.dumps(window_in_subprocess(seconds=int(sys.argv[1]) if len(sys.argv) > 1 else 600), indent=1))

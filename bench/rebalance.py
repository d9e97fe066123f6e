"""Rebalances under a steady stream (issue 16, part 1): how long each partition goes without a committed
prediction while the fleet goes from 2 scorers to 3 and back to 2, for each group protocol side by side.

Per protocol (classic eager, classic cooperative-sticky, the consumer protocol of KIP-848): fresh topics of 6
partitions, two ``housing-scorer`` processes (exactly-once), ``housing-produce --rate 5000`` in its own process,
and a read_committed reader here that notes when each prediction becomes visible and which input partition it
came from. A third scorer is started (scale-out) and, once the group has settled, stopped with SIGTERM
(scale-in). Around each change, per input partition: the longest time between two consecutive committed
predictions (a gap that overlaps the change counts), and for the whole topic: the longest time with none at
all. A partition "stayed" when its owner (the group's member, as the broker describes it) is the same before
and after the change, and "moved" otherwise. At the end every input key must have exactly one output.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from bench.env import PARTITIONS, BenchEnv, load_average, machine_info, step
from bench.io import reader, send_keyed, wait_until
from bench.latency import WARMUP_RECORDS, paced_producer
from bench.scorer import ScorerProcess, wait_ready

logger = logging.getLogger(__name__)

PROTOCOLS = ("classic-eager", "classic", "consumer")
"""KAFKA_GROUP_PROTOCOL values compared: range (eager), cooperative-sticky, KIP-848."""
LABELS = {"classic-eager": "classic, eager (range)", "classic": "classic, cooperative-sticky",
          "consumer": "consumer protocol (KIP-848)"}
RATE = 5_000
LEAD_SECONDS = 6.0
"""Steady scoring by two scorers before the third is started (the baseline gaps)."""
SETTLED_SECONDS = 6.0
"""After the group settled on three, before the third is stopped."""
TAIL_SECONDS = 6.0
SETTLE_TIMEOUT = 60.0
RESUME_MARGIN_SECONDS = 1.0
"""A change's window ends this long after the group settled and every partition resumed."""
STAYED_TARGET_MS = 100.0
MOVED_TARGET_MS = 2000.0
_PARTITION = re.compile(rb'"source_partition":(\d+)')


class PartitionReader:
    """Reads the predictions topic read_committed; per prediction: arrival (ms), input partition and key."""

    def __init__(self, client_config: dict[str, Any], topic: str) -> None:
        self._consumer = reader(client_config, topic)
        self._stop = threading.Event()
        self.arrivals: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        self.keys: set[bytes] = set()
        self.count = 0
        self._thread = threading.Thread(target=self._run, name="partition-reader", daemon=True)

    def start(self) -> PartitionReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._consumer.close()

    def _run(self) -> None:
        consumer, find = self._consumer, _PARTITION.search
        while not self._stop.is_set():
            first = consumer.poll(0.02)
            if first is None:
                continue
            now = time.time() * 1000
            for message in [first, *consumer.consume(5000, 0)]:
                if message.error():
                    continue
                key = message.key() or b""
                if key.startswith(b"warm-"):
                    continue
                match = find(message.value() or b"")
                if match is not None:
                    self.arrivals[int(match.group(1))].append(now)
                self.keys.add(key)
                self.count += 1


def owners(admin: AdminClient, group_id: str) -> tuple[dict[int, str], int, bool]:
    """Input partition -> owning member's client id, the member count, and whether the group is stable (every
    partition owned, and with the consumer protocol each member's assignment equal to its target)."""
    description = admin.describe_consumer_groups([group_id], request_timeout=5)[group_id].result(timeout=10)
    owned: dict[int, str] = {}
    settled = description.state == ConsumerGroupState.STABLE
    for member in description.members:
        for tp in member.assignment.topic_partitions:
            owned[tp.partition] = member.client_id
        target = getattr(member, "target_assignment", None)
        if target is not None and {tp.partition for tp in target.topic_partitions} != {
                tp.partition for tp in member.assignment.topic_partitions}:
            settled = False
    return owned, len(description.members), settled and len(owned) == PARTITIONS


def wait_settled(admin: AdminClient, group_id: str, members: int, scorers: Sequence[ScorerProcess]) -> dict[int, str]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        for scorer in scorers:
            scorer.check_alive()
        try:
            owned, count, settled = owners(admin, group_id)
        except Exception as exc:  # a coordinator moving: ask again
            logger.debug("describe group: %s", exc)
            time.sleep(0.1)
            continue
        if settled and count == members:
            return owned
        time.sleep(0.05)
    raise RuntimeError(f"group {group_id} did not settle on {members} members within {SETTLE_TIMEOUT:.0f}s")


def longest_gaps(arrivals: np.ndarray, start_ms: float, end_ms: float) -> float:
    """The longest time between consecutive arrivals among gaps overlapping [start, end] (ms); the window's own
    length when nothing arrived in it."""
    if len(arrivals) == 0:
        return end_ms - start_ms
    before = arrivals[arrivals < start_ms]
    inside = arrivals[(arrivals >= start_ms) & (arrivals <= end_ms)]
    after = arrivals[arrivals > end_ms]
    points = np.concatenate([before[-1:], inside, after[:1]])
    if len(points) < 2:
        return end_ms - start_ms
    return float(np.diff(points).max())


def merged_gap(reader_: PartitionReader, start_ms: float, end_ms: float) -> float:
    every = np.sort(np.concatenate([np.asarray(a, dtype=np.float64) for a in reader_.arrivals.values()]))
    return longest_gaps(every, start_ms, end_ms)


def analyse_change(reader_: PartitionReader, name: str, start_ms: float, settled_ms: float,
                   before: dict[int, str], after: dict[int, str]) -> dict[str, Any]:
    arrivals = {p: np.asarray(a, dtype=np.float64) for p, a in reader_.arrivals.items()}
    resumed = [float(a[a > start_ms][0]) if (a > start_ms).any() else settled_ms for a in arrivals.values()]
    end_ms = max(settled_ms, *resumed) + RESUME_MARGIN_SECONDS * 1000
    gaps = {p: round(longest_gaps(arrivals[p], start_ms, end_ms), 1) for p in range(PARTITIONS)}
    stayed = {p: g for p, g in gaps.items() if before.get(p) is not None and before.get(p) == after.get(p)}
    moved = {p: g for p, g in gaps.items() if p not in stayed}
    return {
        "change": name, "settled_after_s": round((settled_ms - start_ms) / 1000, 2),
        "owners_before": {str(p): before.get(p) for p in range(PARTITIONS)},
        "owners_after": {str(p): after.get(p) for p in range(PARTITIONS)},
        "longest_gap_ms_by_partition": {str(p): g for p, g in gaps.items()},
        "stayed": sorted(stayed), "moved": sorted(moved),
        "max_gap_stayed_ms": max(stayed.values()) if stayed else None,
        "max_gap_moved_ms": max(moved.values()) if moved else None,
        "overall_longest_gap_ms": round(merged_gap(reader_, start_ms, end_ms), 1),
    }


def run_protocol(env: BenchEnv, protocol: str, *, batch_max_records: int, batch_max_wait_ms: int) -> dict[str, Any]:
    topics = env.fresh_topics(f"rebalance-{protocol}")
    group_id = env.group_id(f"rebalance-{protocol}")
    admin = AdminClient(env.client_config)

    def scorer(n: int) -> ScorerProcess:
        return ScorerProcess(env, topics, group_id=group_id, guarantee="exactly_once",
                             batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms,
                             log_path=env.scratch / f"rebalance-{protocol}-{n}.log",
                             extra_env={"KAFKA_GROUP_PROTOCOL": protocol, "SCORER_INSTANCE_ID": f"{group_id}-{n}"})

    seconds = LEAD_SECONDS + 40.0  # an upper bound: the stream is stopped once the scale-in is measured
    count = int(RATE * seconds)
    step(f"rebalance: {LABELS[protocol]}: 2 -> 3 -> 2 scorers at {RATE:,} records/s")
    scorers = [scorer(1).start(), scorer(2).start()]
    producer = None
    changes: list[dict[str, Any]] = []
    try:
        send_keyed(env.client_config, topics.records, WARMUP_RECORDS, "warm")
        wait_ready(env, scorers[0], group_id, topics.records, WARMUP_RECORDS)
        wait_settled(admin, group_id, 2, scorers)
        partition_reader = PartitionReader(env.client_config, topics.predictions).start()
        producer = paced_producer(env, topics.records, RATE, count)
        wait_until(lambda: partition_reader.count > 0, 30, 0.05)
        time.sleep(LEAD_SECONDS)
        baseline_end = time.time() * 1000
        baseline = {str(p): round(longest_gaps(np.asarray(a, dtype=np.float64), baseline_end - 4000, baseline_end), 1)
                    for p, a in partition_reader.arrivals.items()}

        before, _, _ = owners(admin, group_id)
        third = scorer(3).start()
        scorers.append(third)
        # The change starts when it subscribes (logged right after), not at launch: its start-up (imports, model
        # load) is not the protocol's doing.
        if not wait_until(lambda: "rebalancing with" in third.log_tail(200) or not third.alive(), 120, 0.02):
            raise RuntimeError(f"the third scorer did not subscribe:\n{third.log_tail()}")
        third.check_alive()
        started_ms = time.time() * 1000
        after = wait_settled(admin, group_id, 3, scorers)
        changes.append(analyse_after(partition_reader, "scale_out 2->3", started_ms, before, after))
        time.sleep(SETTLED_SECONDS)

        before = after
        started_ms = time.time() * 1000
        scorers[2].stop()  # SIGTERM: finishes its batch, commits, leaves the group
        after = wait_settled(admin, group_id, 2, scorers[:2])
        changes.append(analyse_after(partition_reader, "scale_in 3->2", started_ms, before, after))
        time.sleep(TAIL_SECONDS)
        producer.terminate()  # what it sent is read back from the input topic below
        producer.wait(30)
        # Everything sent is committed, then read to the end; a second more shows late duplicates.
        sent_keys = topic_keys(env, topics.records)
        wait_until(lambda: env.committed_total(group_id, topics.records) >= len(sent_keys) + WARMUP_RECORDS, 90, 0.2)
        wait_until(lambda: partition_reader.count >= len(sent_keys), 60, 0.1)
        time.sleep(1.0)
        partition_reader.stop()
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        for s in scorers:
            s.stop()
        metrics = [{**s.describe(), "rebalance_log": rebalance_lines(s.log_path)} for s in scorers]
        env.forget_group(group_id, topics.records)
    lost = len(sent_keys - partition_reader.keys)
    duplicated = partition_reader.count - len(partition_reader.keys)
    result = {"protocol": protocol, "label": LABELS[protocol], "sent": len(sent_keys),
              "received": partition_reader.count,
              "lost": lost, "duplicated": duplicated, "baseline_longest_gap_ms_by_partition": baseline,
              "changes": changes, "scorers": metrics}
    stayed = [c["max_gap_stayed_ms"] for c in changes if c["max_gap_stayed_ms"] is not None]
    moved = [c["max_gap_moved_ms"] for c in changes if c["max_gap_moved_ms"] is not None]
    result["targets"] = {"stayed<=100ms": bool(stayed) and max(stayed) <= STAYED_TARGET_MS,
                         "moved<=2s": bool(moved) and max(moved) <= MOVED_TARGET_MS,
                         "exactly_one_output": lost == 0 and duplicated == 0}
    step(f"  {protocol}: " + "; ".join(
        f"{c['change']}: stayed max {c['max_gap_stayed_ms']} ms, moved max {c['max_gap_moved_ms']} ms, "
        f"overall {c['overall_longest_gap_ms']} ms" for c in changes) + f"; lost {lost}, duplicated {duplicated}")
    return result


def analyse_after(partition_reader: PartitionReader, name: str, started_ms: float, before: dict[int, str],
                  after: dict[int, str]) -> dict[str, Any]:
    """Measure a change once every partition has resumed after it (or a generous bound has passed)."""
    settled_ms = time.time() * 1000

    def resumed() -> bool:
        return all(a and a[-1] > settled_ms for a in partition_reader.arrivals.values())

    wait_until(resumed, 10, 0.05)
    time.sleep(RESUME_MARGIN_SECONDS + 0.5)  # the window's tail, plus the reader's own latency
    return analyse_change(partition_reader, name, started_ms, settled_ms, before, after)


REBALANCE_LOG = re.compile(r"rebalancing with|assigned |revoked |lost |aborted|dropped|refused")


def rebalance_lines(log_path: Path) -> list[str]:
    """The scorer's log lines about its group (protocol, assignments, revokes) and anything aborted or dropped."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[:400] for line in lines if REBALANCE_LOG.search(line)][:100]


def topic_keys(env: BenchEnv, topic: str) -> set[bytes]:
    """Every key in ``topic`` up to its high watermarks (read_committed), warm-up keys left out."""
    consumer = reader(env.client_config, topic)
    keys: set[bytes] = set()
    try:
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in consumer.assignment()}
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 120
        while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for message in consumer.consume(5000, 0.5):
                if message.error():
                    continue
                positions[message.partition()] = message.offset() + 1  # type: ignore[index, operator]
                key = message.key() or b""
                if not key.startswith(b"warm-"):
                    keys.add(key)
        if any(positions[p] < ends[p] for p in ends):
            raise RuntimeError(f"could not read {topic} to its end: {positions} of {ends}")
    finally:
        consumer.close()
    return keys


def run(env: BenchEnv, *, out_dir: Path, batch_max_records: int, batch_max_wait_ms: int,
        protocols: Sequence[str] = PROTOCOLS) -> dict[str, Any]:
    results = {p: run_protocol(env, p, batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms)
               for p in protocols}
    document: dict[str, Any] = {
        # This section's own: a run of --only rebalance rewrites the document's "machine" too.
        "machine": {**machine_info(env), "load_average_after": load_average()},
        "rate": RATE, "partitions": PARTITIONS, "guarantee": "exactly_once",
        "batch_max_records": batch_max_records, "batch_max_wait_ms": batch_max_wait_ms,
        "by_protocol": results,
        "method": "arrival of each prediction at a read_committed reader (its commit, plus the reader's few ms), "
                  "per input partition (the prediction's source_partition); per change, the longest time between "
                  "consecutive arrivals among gaps overlapping [change started, settled and every partition "
                  "resumed + 1 s]; scale-out starts when the third process is launched (it joins once its model "
                  "is loaded), scale-in at its SIGTERM; stayed = same owner before and after (describe group)",
        "targets": {"stayed_ms": STAYED_TARGET_MS, "moved_ms": MOVED_TARGET_MS},
    }
    document["plot"] = plot(results, out_dir / "rebalance_gaps.png").name
    return document


def plot(results: dict[str, dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, stayed, moved, overall = [], [], [], []
    for result in results.values():
        for change in result["changes"]:
            labels.append(f"{result['label']}\n{change['change']}")
            stayed.append(change["max_gap_stayed_ms"] or 0.0)
            moved.append(change["max_gap_moved_ms"] or 0.0)
            overall.append(change["overall_longest_gap_ms"])
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.bar(x - 0.27, stayed, 0.27, label="partitions that stayed (longest gap)", color="#2a9d5c")
    ax.bar(x, moved, 0.27, label="partitions that moved (longest gap)", color="#e0a030")
    ax.bar(x + 0.27, overall, 0.27, label="whole topic (longest time with no prediction)", color="#5b8cc6")
    ax.axhline(STAYED_TARGET_MS, color="#2a9d5c", linestyle="--", linewidth=0.8)
    ax.axhline(MOVED_TARGET_MS, color="#e0a030", linestyle="--", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("longest gap without a committed prediction, ms (log)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title(f"Rebalances at {RATE:,} records/s, exactly-once, 6 partitions: 2 -> 3 -> 2 scorers "
                 f"(targets: stayed {STAYED_TARGET_MS:.0f} ms, moved {MOVED_TARGET_MS / 1000:.0f} s)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""Where a scorer's CPU goes, by stage and by thread: loaded by a scorer the efficiency benchmark starts with this
folder on PYTHONPATH and ``BENCH_STAGE_TIMES`` set (bench/efficiency.py), inert otherwise.

- Each stage of the scoring loop is wrapped to add the CPU time of the thread running it (``time.thread_time``:
  inclusive, so a stage's figure holds the stages inside it); the totals and call counts are written as JSON to
  ``$BENCH_STAGE_TIMES`` at exit.
- Each thread appends its native id and name to ``$BENCH_STAGE_TIMES.threads`` as it starts, so the benchmark can
  name the threads it reads in ``/proc/<pid>/task``.

The wrappers cost about a microsecond per call, a dozen calls per batch: a few nanoseconds per record.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
import time
from typing import Any

_OUT = os.environ.get("BENCH_STAGE_TIMES")

# (module, attribute path, stage), in import order: a module that imports a stage by name must come after it.
_STAGES = (
    ("schemas.batch_validation", "screen_records", "validate (column-wise screen)"),
    ("consumer.core.batch_decode", "decode_validate", "decode + validate"),
    ("schemas.codecs", "PredictionJsonWriter.write_many", "format (one f-string per output)"),
    ("consumer.core.handle", "ModelHandle.predict", "predict"),
    ("consumer.core.scoring", "_scored_json_batch", "outputs (format, ids, headers)"),
    ("consumer.core.scoring", "score_batch", "score_batch"),
    ("consumer.kafka.producer", "OutputProducer.produce_all", "produce"),
    ("consumer.kafka.commit", "ExactlyOnceCommit.deliver", "deliver (produce, transaction calls)"),
    ("consumer.kafka.commit", "AtLeastOnceCommit.deliver", "deliver (produce, transaction calls)"),
    ("consumer.kafka.loop", "ScoringLoop._next_batch", "consume (poll + consume)"),
    ("consumer.kafka.loop", "ScoringLoop._observe", "observe (metrics, hooks)"),
    ("consumer.kafka.loop", "ScoringLoop._process", "batch (Incoming, score, deliver)"),
)


def _install(out: str) -> None:
    import importlib

    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    clock = time.thread_time

    def wrap(function: Any, stage: str) -> Any:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                totals[stage] = totals.get(stage, 0.0) + clock() - started
                calls[stage] = calls.get(stage, 0) + 1

        return timed

    for module_name, path, stage in _STAGES:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, name, wrap(getattr(owner, name), stage))

    threads = open(f"{out}.threads", "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    bootstrap_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def named_bootstrap(self: threading.Thread) -> None:
        threads.write(f"{threading.get_native_id()} {self.name}\n")
        bootstrap_inner(self)

    threading.Thread._bootstrap_inner = named_bootstrap  # type: ignore[attr-defined]
    threads.write(f"{threading.get_native_id()} {threading.current_thread().name}\n")

    def dump() -> None:
        with open(out, "w") as handle:
            json.dump({"cpu_seconds": totals, "calls": calls}, handle)

    atexit.register(dump)


if _OUT:
    _install(_OUT)

"""Serving by flavour (issue 13): records/s and CPU per record of housing-scorer under exactly-once for the
scikit-learn fast path, the LightGBM path and the generic pyfunc path, on the same pre-loaded records in one run.

- ``sklearn_fast_path``: the benchmark's HistGradientBoosting pipeline (numpy preprocessing, trees summed);
- ``lightgbm``: a LightGBM pipeline from ``housing-train`` (``mlflow.lightgbm``; numpy preprocessing, booster);
- ``pyfunc``: ``examples/clipped_model.py``, a custom ``mlflow.pyfunc.PythonModel`` wrapping the same
  HistGradientBoosting version: served through ``mlflow.pyfunc`` with one DataFrame per batch (its schema
  enforcement, then the inner model's, then scikit-learn on the frame).

Each variant is a fresh scorer process pinned to its version (``MLFLOW_MODEL_VERSION``), its own consumer group
on the same input topic and its own output topic. Records/s is taken from the outputs' CreateTime timestamps,
first to last; CPU µs/record is the scorer process's user + system CPU from its first committed record to its
last, over the records committed in between (start-up and model load excluded).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psutil
from tqdm import tqdm

from bench.env import CACHE_DIR, TRAIN_SAMPLE, BenchEnv, step
from bench.io import preload
from bench.scorer import ScorerProcess, warm_compiled_trees
from bench.throughput import _summary

logger = logging.getLogger(__name__)

VARIANTS = ("sklearn_fast_path", "lightgbm", "pyfunc")
LIGHTGBM_FALLBACK = CACHE_DIR / "model-lightgbm.pkl"


def register_versions(env: BenchEnv) -> dict[str, str]:
    """The version each variant serves: the benchmark's champion, a LightGBM version and the example's pyfunc."""
    from examples.register_custom_pyfunc import register as register_custom_pyfunc
    from training.register import TrainingConfig, train_and_register

    assert env.model is not None
    fast = env.model.versions[-1]
    step(f"flavours: training a LightGBM version of {env.model.name} (sample {TRAIN_SAMPLE:,} rows)")
    config = TrainingConfig(tracking_uri=env.tracking_uri, model_name=env.model.name, models=("lightgbm",),
                            promote=False, fallback_path=str(LIGHTGBM_FALLBACK),
                            sample=TRAIN_SAMPLE, seed=43, progress=False)
    lightgbm = str(train_and_register(config).version)
    step(f"flavours: registering examples/clipped_model.py around v{fast}")
    pyfunc = register_custom_pyfunc(env.tracking_uri, env.model.name, fast)
    return {"sklearn_fast_path": fast, "lightgbm": lightgbm, "pyfunc": pyfunc}


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def scorer_run(env: BenchEnv, in_topic: str, count: int, version: str, tag: str, batch_max_records: int,
               batch_max_wait_ms: int) -> dict[str, Any]:
    """One exactly-once scorer serving ``version`` drains the pre-loaded topic; its figures."""
    topics = env.fresh_topics(tag)
    topics = type(topics)(in_topic, topics.predictions, topics.dead_letter, topics.model_updates,
                          topics.scorer_status)
    group_id = env.group_id(tag)
    scorer = ScorerProcess(env, topics, group_id=group_id, guarantee="exactly_once",
                           batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms,
                           log_path=env.scratch / f"{tag}.log",
                           extra_env={"MLFLOW_MODEL_VERSION": version}).start()
    process = psutil.Process(scorer.pid)
    first: tuple[int, float] | None = None
    last: tuple[int, float] = (0, 0.0)
    bar = tqdm(total=count, desc=f"flavour {tag}", unit="rec", leave=False, mininterval=0.5)
    started = time.perf_counter()
    try:
        done = 0
        while done < count:
            scorer.check_alive()
            time.sleep(0.1)  # fine-grained: the CPU window starts and ends close to a commit
            now = env.committed_total(group_id, in_topic)
            if now > 0:
                cpu = _cpu_seconds(process)
                if first is None:
                    first = (now, cpu)
                last = (now, cpu)
            bar.update(now - done)
            done = now
        wall = time.perf_counter() - started
    finally:
        bar.close()
        scorer.stop()
        env.forget_group(group_id, in_topic)
    summary = {**_summary(env, topics.predictions, count, wall), **scorer.describe(), "version": version}
    if first is not None and last[0] > first[0]:
        summary["cpu_us_per_record"] = round((last[1] - first[1]) / (last[0] - first[0]) * 1e6, 1)
        summary["cpu_window_records"] = last[0] - first[0]
    return summary


def run(env: BenchEnv, *, count: int, batch_max_records: int, batch_max_wait_ms: int) -> dict[str, Any]:
    versions = register_versions(env)
    in_topic = env.create_topic(f"bench-{env.run_id}-flavours.records")
    step(f"flavours: pre-loading {count:,} records into {in_topic}")
    preload(env.client_config, in_topic, count)
    # Each tree ensemble as a scorer serves it once running: its trees compiled (cached), not compiling mid-run.
    assert env.model is not None
    tree_walks = {"sklearn_fast_path": warm_compiled_trees(env.model.fallback_paths[0], env.model.name),
                  "lightgbm": warm_compiled_trees(LIGHTGBM_FALLBACK, env.model.name)}
    step(f"flavours: tree walks {tree_walks}")
    variants: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        step(f"flavours: housing-scorer exactly-once serving {variant} (v{versions[variant]}) over {count:,} records")
        variants[variant] = scorer_run(env, in_topic, count, versions[variant], f"fl-{variant}",
                                       batch_max_records, batch_max_wait_ms)
        v = variants[variant]
        step(f"  {variant}: {v['records_per_s']:,.0f} records/s, {v.get('cpu_us_per_record')} CPU us/record "
             f"({v['outputs']:,} outputs, {v['duplicates']} duplicates, {v['missing']} missing)")
    fast = variants["sklearn_fast_path"]["records_per_s"]
    ratios = {f"{k}_over_sklearn_fast_path": round(v["records_per_s"] / fast, 3) for k, v in variants.items()
              if k != "sklearn_fast_path"}
    return {"records": count, "guarantee": "exactly_once", "batch_max_records": batch_max_records,
            "tree_walks": tree_walks,
            "batch_max_wait_ms": batch_max_wait_ms, "versions": versions, "variants": variants, "ratios": ratios,
            "targets": {"pyfunc_over_sklearn_fast_path>=0.5": ratios["pyfunc_over_sklearn_fast_path"] >= 0.5},
            "method": __doc__.split("\n\n", 1)[1] if __doc__ else ""}

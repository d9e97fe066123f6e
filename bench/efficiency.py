"""Efficiency (issue 15): CPU per scored record of housing-scorer over a large backlog, against its limits.

Every scorer variant drains the same pre-loaded backlog (its own consumer group, its own output topics), with
every feature on (validation, dead letters, drift, metrics, prediction logging, admin API). CPU µs/record is
the scorer process's user + system CPU from its first committed record to its last, over the records committed
in between: the start-up (imports, model load, group join) is outside that window and reported on its own.
Records/s is taken over the same window (committed offsets, sampled every 100 ms).

The in-process limits (``bench.limits``), measured in the same run on the same records:
- ``raw_kafka``: a subprocess doing only what Kafka costs, librdkafka through confluent-kafka: consume the same
  messages in batches of ``BATCH_MAX_RECORDS`` and produce each value unchanged, in one transaction per batch
  with the offsets (exactly-once) or plain (at-least-once); its own CPU per record, with lz4 and without
  compression (the producing lever);
- ``floor``: the same loop doing the least this design must per record to keep the output contract (parse,
  features, model, one formatted output with its headers) and nothing else: no validation, dead letters,
  metrics, drift, prediction logging, admin API or control plane;
- ``predict``: the model alone on the same records' feature columns in batches of ``BATCH_MAX_RECORDS``, in
  this process, compiled trees and per-tree walk;
- ``mlflow_serve``: ``mlflow models serve --env-manager local`` on the same version, 1,000 records per HTTP
  request, one client; the exactly-once scorer's records/s over it is a target.

With ``--baseline-root DIR`` (a ``git worktree`` of an older commit) the same scorers run from that tree too,
interleaved with the current code, so old and new are compared on the same machine in the same minutes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from tqdm import tqdm

from bench.env import PROJECT_ROOT, BenchEnv, step
from bench.io import preload, read_outputs
from bench.limits import cpu_seconds, floor, predict_limit, raw_kafka
from bench.scorer import ScorerProcess, warm_compiled_trees
from stack.processes import free_port

logger = logging.getLogger(__name__)

TARGETS = {"eos_cpu_us_per_record": 10.0, "alo_cpu_us_per_record": 8.0, "eos_over_mlflow_serve": 1.5,
           "peak_rss_mb": 300.0}


def _set_challenger(env: BenchEnv, version: str) -> None:
    """Point the canary alias (``CANARY_ALIAS`` default, ``challenger``) at ``version``."""
    from mlflow.tracking import MlflowClient

    assert env.model is not None
    MlflowClient(env.tracking_uri, env.tracking_uri).set_registered_model_alias(env.model.name, "challenger",
                                                                               version)


def _broker_process(env: BenchEnv) -> psutil.Process | None:
    """The local broker started for this run (None with ``--bootstrap-servers``)."""
    pid = env._kafka.running_pid() if env._kafka is not None else None
    return psutil.Process(pid) if pid is not None else None


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per kind of thread: librdkafka's own (``rdk:*``) and the interpreter's (everything else), over
    the process and its live children (the workers of ``--workers N``)."""
    try:
        pids = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        pids = [pid]
    totals: dict[str, float] = {}
    for tasks in (Path(f"/proc/{each}/task") for each in pids):
        try:
            _add_thread_cpu(tasks, totals)
        except OSError:  # a child that just exited
            continue
    return totals


def _named_thread_cpu(pid: int, names_file: Path) -> dict[str, float]:
    """CPU seconds per thread name of one process: the interpreter's threads by the name ``bench/stage_probe``
    recorded for them, librdkafka's by theirs with the broker number dropped (``rdk:broker<n>`` together)."""
    names: dict[int, str] = {}
    try:
        for line in names_file.read_text().splitlines():
            native_id, _, name = line.partition(" ")
            names[int(native_id)] = name
    except (OSError, ValueError):
        return {}
    totals: dict[str, float] = {}
    for tid, comm, seconds in _task_cpu(Path(f"/proc/{pid}/task")):
        name = re.sub(r"-?\d+$", "<n>", comm) if comm.startswith("rdk:") else names.get(tid, "unnamed")
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def _add_thread_cpu(tasks: Path, totals: dict[str, float]) -> None:
    for _, comm, seconds in _task_cpu(tasks):
        kind = "librdkafka" if comm.startswith("rdk:") else "python"
        totals[kind] = totals.get(kind, 0.0) + seconds


def _task_cpu(tasks: Path) -> list[tuple[int, str, float]]:
    """(thread id, thread name, user + system CPU seconds) of each thread under ``/proc/<pid>/task``."""
    found = []
    for task in tasks.iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a thread that just ended
            continue
        found.append((int(task.name), comm, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")))
    return found


PROFILE_STAGES = (
    ("decode + validate", ("decode_validate",)),
    ("predict", ("_predict_all", "_shadow_predictions")),
    ("encode + outputs", ("score_batch",)),
    ("produce + commit", ("commit.py", "producer.py", "delivery.py")),
    ("consume + batching", ("loop.py",)),
    ("hooks (drift, prediction log, metrics)", ("monitoring/", "metrics.py")),
    ("admin API, control, status", ("admin_api/", "aiohttp", "control.py", "status.py")),
)


def summarize_profile(raw: str) -> dict[str, float]:
    """py-spy's collapsed stacks → share of the interpreter's samples per stage (first stage a stack names)."""
    shares: dict[str, float] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        stage = next((name for name, marks in PROFILE_STAGES if any(m in stack for m in marks)), "other")
        shares[stage] = shares.get(stage, 0) + samples
    return {stage: round(samples / total, 3) for stage, samples in sorted(shares.items(), key=lambda i: -i[1])} \
        if total else {}


def scorer_run(env: BenchEnv, in_topic: str, count: int, *, guarantee: str, tag: str, batch_max_records: int,
               batch_max_wait_ms: int, root: Path = PROJECT_ROOT,
               extra_env: dict[str, str] | None = None, profile: bool = False,
               args: tuple[str, ...] = (), stages: bool = False) -> dict[str, Any]:
    """One scorer drains the backlog; its CPU per record over the steady window, start-up CPU, records/s, RSS,
    and the broker's CPU per record over the same window (its share of the two cores).

    :param stages: also its CPU by stage of the scoring loop and by thread (``bench/stage_probe``)."""
    stage_file = env.scratch / f"{tag}.stages.json"
    if stages:
        probe = str(PROJECT_ROOT / "bench" / "stage_probe")
        extra_env = {**(extra_env or {}), "BENCH_STAGE_TIMES": str(stage_file),
                     "PYTHONPATH": os.pathsep.join(filter(None, (probe, os.environ.get("PYTHONPATH"))))}
    names_file = Path(f"{stage_file}.threads")
    named_first: dict[str, float] = {}
    named_last: dict[str, float] = {}
    topics = env.fresh_topics(tag)
    topics = type(topics)(in_topic, topics.predictions, topics.dead_letter, topics.model_updates,
                          topics.scorer_status)
    group_id = env.group_id(tag)
    scorer = ScorerProcess(env, topics, group_id=group_id, guarantee=guarantee, batch_max_records=batch_max_records,
                           batch_max_wait_ms=batch_max_wait_ms, log_path=env.scratch / f"{tag}.log",
                           extra_env=extra_env, root=root, args=args).start()
    process = psutil.Process(scorer.pid)
    broker = _broker_process(env)
    broker_first = broker_last = 0.0
    threads_first: dict[str, float] = {}
    threads_last: dict[str, float] = {}
    spy: subprocess.Popen[bytes] | None = None
    first: tuple[int, float, float] | None = None
    last: tuple[int, float, float] = (0, 0.0, 0.0)
    bar = tqdm(total=count, desc=f"efficiency {tag}", unit="rec", leave=False, mininterval=0.5)
    try:
        done = 0
        while done < count:
            scorer.check_alive()
            time.sleep(0.1)  # fine-grained: the CPU window starts and ends close to a commit
            now = env.committed_total(group_id, in_topic)
            if now > 0:
                point = (now, cpu_seconds(process), time.monotonic())
                if first is None:
                    first = point
                    broker_first = cpu_seconds(broker) if broker is not None else 0.0
                    threads_first = _thread_cpu(scorer.pid)
                    named_first = _named_thread_cpu(scorer.pid, names_file) if stages else {}
                    if profile:
                        spy = _start_profile(scorer.pid, env.scratch / f"{tag}.pyspy")
                if now < count:
                    threads_last = _thread_cpu(scorer.pid)
                    named_last = _named_thread_cpu(scorer.pid, names_file) if stages else {}
                last = point
                broker_last = cpu_seconds(broker) if broker is not None else 0.0
            bar.update(now - done)
            done = now
    finally:
        bar.close()
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its file on SIGINT
            spy.wait(30)
        scorer.stop()
        env.forget_group(group_id, in_topic)
    outputs = read_outputs(env.client_config, topics.predictions, count)
    result: dict[str, Any] = {"guarantee": guarantee, "root": "baseline" if root != PROJECT_ROOT else "current",
                              "outputs": outputs.count, "duplicates": outputs.duplicates,
                              "missing": count - outputs.distinct_keys, **scorer.describe()}
    if first is not None and last[0] > first[0]:
        records = last[0] - first[0]
        result.update(cpu_us_per_record=round((last[1] - first[1]) / records * 1e6, 2),
                      startup_cpu_seconds=round(first[1], 2), window_records=records,
                      window_seconds=round(last[2] - first[2], 1),
                      records_per_s=round(records / (last[2] - first[2]), 0))
        spent = {kind: threads_last.get(kind, 0.0) - threads_first.get(kind, 0.0) for kind in threads_last}
        result["cpu_us_per_record_by_thread"] = {kind: round(seconds / records * 1e6, 2)
                                                 for kind, seconds in spent.items()}
        if named_last:
            named = {name: (seconds - named_first.get(name, 0.0)) / records * 1e6
                     for name, seconds in named_last.items()}
            result["cpu_us_per_record_by_named_thread"] = {
                name: round(value, 2) for name, value in sorted(named.items(), key=lambda item: -item[1])
                if value >= 0.01}
        if broker is not None:
            result["broker_cpu_us_per_record"] = round((broker_last - broker_first) / records * 1e6, 2)
            result["broker_share_of_cpu"] = round((broker_last - broker_first) / (
                (broker_last - broker_first) + (last[1] - first[1])), 3)
    if stages and stage_file.exists():
        # Over the whole run (every record, the first batches' too), inclusive: a stage holds those inside it.
        measured = json.loads(stage_file.read_text())
        result["stage_cpu_us_per_record"] = {
            stage: round(seconds / count * 1e6, 2)
            for stage, seconds in sorted(measured["cpu_seconds"].items(), key=lambda item: -item[1])}
        result["stage_calls"] = measured["calls"]
    if profile and (env.scratch / f"{tag}.pyspy").exists():
        result["python_profile_shares"] = summarize_profile((env.scratch / f"{tag}.pyspy").read_text())
    return result


def _start_profile(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the scorer's Python threads (collapsed stacks), if py-spy is installed."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return None
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "50",
                             "--nonblocking", "--output", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def mlflow_serve(env: BenchEnv, version: str, seconds: float = 20.0, batch: int = 1000) -> dict[str, Any]:
    """``mlflow models serve --env-manager local`` on ``version``: records/s at ``batch`` records per request
    over ``seconds`` of requests (one client), and the server's CPU per record over the same requests."""
    from producer.records import csv_records
    from schemas.features import FEATURE_COLUMNS

    assert env.model is not None
    port = free_port()
    log = open(env.scratch / "mlflow-serve.log", "wb")
    argv = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
            f"models:/{env.model.name}/{version}", "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]
    # mlflow execs ``uvicorn`` by name: the venv's bin must be on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    server = subprocess.Popen(argv, env={**os.environ, "MLFLOW_TRACKING_URI": env.tracking_uri, "PATH": path},
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (env.scratch / "mlflow-serve.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"mlflow models serve did not answer /ping:\n{tail}") from None
                time.sleep(0.5)
        rows = []
        for record in csv_records(loop=True):
            rows.append([record[name] for name in FEATURE_COLUMNS])
            if len(rows) >= batch:
                break
        body = json.dumps({"dataframe_split": {"columns": list(FEATURE_COLUMNS), "data": rows}}).encode()

        def ask() -> None:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
            assert len(answer["predictions"]) == batch

        for _ in range(5):
            ask()  # warm-up
        served = psutil.Process(server.pid)
        cpu_before, started, requests = cpu_seconds(served), time.monotonic(), 0
        while time.monotonic() - started < seconds or requests < 60:
            ask()
            requests += 1
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(served) - cpu_before
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(30)
        log.close()
    return {"command": " ".join(argv[1:]), "records_per_request": batch, "requests": requests, "clients": 1,
            "seconds": round(elapsed, 1), "records_per_s": round(requests * batch / elapsed, 0),
            "server_cpu_us_per_record": round(server_cpu / (requests * batch) * 1e6, 2)}


def run(env: BenchEnv, *, count: int, batch_max_records: int, batch_max_wait_ms: int,
        baseline_root: Path | None = None, profiles_dir: Path | None = None) -> dict[str, Any]:
    """:param profiles_dir: where the py-spy profiles of the eos and alo runs are kept (``<name>.pyspy``,
        collapsed stacks: ``flamegraph.pl`` or speedscope read them); None: not kept."""
    assert env.model is not None
    version = env.model.versions[-1]
    in_topic = env.create_topic(f"bench-{env.run_id}-efficiency.records")
    step(f"efficiency: pre-loading {count:,} records into {in_topic}")
    preload(env.client_config, in_topic, count)
    step("efficiency: the model alone on the same records (compiled trees and per-tree walk)")
    predict = predict_limit(env, batch_max_records)
    # Every version a scorer loads (the champion is the last, the canary the first) compiled into the scorer's
    # cache beforehand, as a scorer that has run a while has them: a fresh one would compile mid-run.
    for fallback_path in env.model.fallback_paths:
        warm_compiled_trees(fallback_path, env.model.name)
    plan: list[tuple[str, str, Path, dict[str, str], tuple[str, ...]]] = []
    for guarantee, short in (("exactly_once", "eos"), ("at_least_once", "alo")):
        plan.append((short, guarantee, PROJECT_ROOT, {}, ()))
        if baseline_root is not None:
            plan.append((f"{short}_baseline", guarantee, baseline_root, {}, ()))
    plan.append(("eos_per_tree", "exactly_once", PROJECT_ROOT, {"MODEL_COMPILED_TREES": "false"}, ()))
    # Larger transactions over a backlog: the batches of a steady stream are cut by BATCH_MAX_WAIT_MS long
    # before this size, so only a backlog sees it.
    plan.append(("eos_batch_5000", "exactly_once", PROJECT_ROOT, {"BATCH_MAX_RECORDS": "5000"}, ()))
    if len(env.model.versions) >= 2:
        # Issue 14's cost: 20 % of the keys scored by the canary (@challenger, an older version) beside the
        # champion, every prediction naming its role; against "eos" on the same backlog.
        plan.append(("eos_canary_20", "exactly_once", PROJECT_ROOT, {"CANARY_FRACTION": "0.2"}, ()))
    if (PROJECT_ROOT / "consumer" / "supervisor").is_dir():
        # Every core (lever 4): the same backlog through one parent and two workers in one group.
        plan.append(("eos_workers_2", "exactly_once", PROJECT_ROOT, {}, ("--workers", "2")))
        plan.append(("alo_workers_2", "at_least_once", PROJECT_ROOT, {}, ("--workers", "2")))
    variants: dict[str, dict[str, Any]] = {}
    for name, guarantee, root, extra, args in plan:
        step(f"efficiency: {name} over {count:,} records")
        if "CANARY_FRACTION" in extra:
            _set_challenger(env, env.model.versions[0])
        variants[name] = scorer_run(env, in_topic, count, guarantee=guarantee, tag=f"ef-{name}",
                                    batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms,
                                    root=root, extra_env=extra, profile=name in ("eos", "alo"), args=args,
                                    stages=name in ("eos", "alo"))
        kept = env.scratch / f"ef-{name}.pyspy"
        if profiles_dir is not None and kept.exists():
            profiles_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, profiles_dir / f"{name}.pyspy")
        v = variants[name]
        step(f"  {name}: {v.get('cpu_us_per_record')} CPU us/record, {v.get('records_per_s')} records/s, "
             f"start-up {v.get('startup_cpu_seconds')} CPU s, peak RSS {v.get('peak_rss_mb_sampled')} MB, "
             f"{v['duplicates']} duplicates, {v['missing']} missing")
    raw: dict[str, dict[str, Any]] = {}
    for transactional in (True, False):
        for compression in ("lz4", "none"):
            key = f"{'eos' if transactional else 'alo'}_{compression}"
            step(f"efficiency: raw librdkafka consume + produce, {key}")
            raw[key] = raw_kafka(env, in_topic, count, transactional=transactional, compression=compression,
                                 batch=batch_max_records)
            step(f"  raw {key}: {raw[key]['cpu_us_per_record']} CPU us/record, {raw[key]['records_per_s']} records/s")
    floors: dict[str, dict[str, Any]] = {}
    for transactional, key in ((True, "eos"), (False, "alo")):
        step(f"efficiency: the floor of this design (parse, features, model, format, produce), {key}")
        floors[key] = floor(env, in_topic, count, transactional=transactional, batch=batch_max_records)
        step(f"  floor {key}: {floors[key]['cpu_us_per_record']} CPU us/record, "
             f"{floors[key]['records_per_s']} records/s")
    step("efficiency: mlflow models serve (1,000 records per request)")
    try:
        serve = mlflow_serve(env, version)
        step(f"  mlflow models serve: {serve['records_per_s']:,.0f} records/s")
    except Exception as exc:  # the peer is a comparison: its failure is recorded, the figures above kept
        logger.warning("mlflow models serve failed: %s", exc)
        serve = {"error": str(exc)[-500:], "records_per_s": float("nan")}
    eos, alo = variants["eos"], variants["alo"]
    ratios = {
        "eos_over_mlflow_serve": round(eos["records_per_s"] / serve["records_per_s"], 2),
        "eos_cpu_over_raw_kafka": round(eos["cpu_us_per_record"] / raw["eos_lz4"]["cpu_us_per_record"], 2),
        "alo_cpu_over_raw_kafka": round(alo["cpu_us_per_record"] / raw["alo_lz4"]["cpu_us_per_record"], 2),
        "eos_cpu_over_floor": round(eos["cpu_us_per_record"] / floors["eos"]["cpu_us_per_record"], 2),
        "alo_cpu_over_floor": round(alo["cpu_us_per_record"] / floors["alo"]["cpu_us_per_record"], 2),
        "eos_cpu_over_predict": round(eos["cpu_us_per_record"] / predict["compiled_cpu_us_per_record"], 2),
        "eos_cpu_over_raw_kafka_plus_predict": round(eos["cpu_us_per_record"] / (
            raw["eos_lz4"]["cpu_us_per_record"] + predict["compiled_cpu_us_per_record"]), 2),
    }
    if serve.get("server_cpu_us_per_record"):  # CPU per record, the server's against the scorer's (with Kafka)
        ratios["mlflow_serve_cpu_over_eos_cpu"] = round(serve["server_cpu_us_per_record"] / eos["cpu_us_per_record"],
                                                        2)
    if variants.get("eos_batch_5000", {}).get("records_per_s"):
        ratios["eos_batch_5000_over_mlflow_serve"] = round(
            variants["eos_batch_5000"]["records_per_s"] / serve["records_per_s"], 2)
    if variants.get("eos_canary_20", {}).get("records_per_s"):
        ratios["eos_canary_20_over_eos_records_per_s"] = round(
            variants["eos_canary_20"]["records_per_s"] / eos["records_per_s"], 2)
    for name in ("eos_workers_2", "alo_workers_2"):
        one = eos if name.startswith("eos") else alo
        if name in variants and variants[name].get("records_per_s") and one.get("records_per_s"):
            ratios[f"{name}_over_one_records_per_s"] = round(variants[name]["records_per_s"] / one["records_per_s"], 2)
    # The target is one scorer with the product's defaults: the workers' figure is the parent's, and the other
    # variants change a setting (5,000-record batches hold more records in memory, the canary a second model).
    peak = max(variants[name].get("peak_rss_mb_vmhwm") or 0 for name in ("eos", "alo"))
    targets = {
        "eos_cpu_us_per_record<=10": eos["cpu_us_per_record"] <= TARGETS["eos_cpu_us_per_record"],
        "alo_cpu_us_per_record<=8": alo["cpu_us_per_record"] <= TARGETS["alo_cpu_us_per_record"],
        "eos_over_mlflow_serve>=1.5": ratios["eos_over_mlflow_serve"] >= TARGETS["eos_over_mlflow_serve"],
        "peak_rss_mb<=300": peak <= TARGETS["peak_rss_mb"],
    }
    return {"records": count, "batch_max_records": batch_max_records, "batch_max_wait_ms": batch_max_wait_ms,
            "version": version, "variants": variants, "raw_kafka": raw, "floor": floors, "predict": predict,
            "mlflow_serve": serve,
            "ratios": ratios, "peak_rss_mb": peak, "targets": targets,
            "method": __doc__.split("\n\n", 1)[1] if __doc__ else ""}

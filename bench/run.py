"""``python -m bench``: run the benchmarks, write ``bench/results/benchmarks.json`` and the PNG plots.

By default a fresh local Kafka broker and MLflow server are started on free ports in a temporary folder and
stopped at the end; ``--bootstrap-servers`` / ``--tracking-uri`` reuse running ones. ``--only`` runs a
subset (the other sections of an existing benchmarks.json are kept); ``--quick`` is a smoke run with small
counts (its results go to ``bench/results/quick/`` unless ``--output-dir`` says otherwise).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.env import RESULTS_DIR, BenchEnv, load_average, machine_info, step
from config.runtime import configure_logging

logger = logging.getLogger(__name__)

SECTIONS = ("throughput", "latency", "rates", "reload", "rebalance", "evaluator", "flavours", "efficiency")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=SECTIONS,
                        help="run only this benchmark (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true", help="small counts and short runs: a smoke run")
    parser.add_argument("--bootstrap-servers", help="use this Kafka instead of starting a fresh local broker")
    parser.add_argument("--tracking-uri", help="use this MLflow server instead of starting a fresh one")
    parser.add_argument("--output-dir", type=Path, help="where benchmarks.json and the plots go "
                        "(default: bench/results, or bench/results/quick with --quick)")
    parser.add_argument("--records", type=int, help="records for throughput (b) and (c) (default 50,000)")
    parser.add_argument("--naive-records", type=int, help="records for throughput (a) (default 2,000)")
    parser.add_argument("--rate", type=int, default=10_000, help="offered rate for latency/reload (records/s)")
    parser.add_argument("--seconds", type=float, help="length of each headline latency run (default 30)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the batch-settings sweep")
    parser.add_argument("--lower-rate", type=int, action="append", dest="lower_rates",
                        help="offered rates for the 'rates' section (repeatable; default 2,500 and 5,000)")
    parser.add_argument("--reloads", type=int, help="reloads in the reload benchmark (default 12)")
    parser.add_argument("--batch-max-records", type=int, help="BATCH_MAX_RECORDS (default: the product default)")
    parser.add_argument("--batch-max-wait-ms", type=int, help="BATCH_MAX_WAIT_MS (default: the product default)")
    parser.add_argument("--efficiency-records", type=int,
                        help="backlog of the efficiency section (default 1,600,000: >= 20 s per variant at 75,000/s)")
    parser.add_argument("--baseline-root", type=Path,
                        help="efficiency: also run the scorers from this source tree (a git worktree of an older "
                        "commit), interleaved with the current code")
    parser.add_argument("--log-level", default="WARNING")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    sections = tuple(dict.fromkeys(args.only or SECTIONS))
    out_dir: Path = args.output_dir or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "benchmarks.json"
    document: dict[str, Any] = {}
    if json_path.exists():
        try:
            document = json.loads(json_path.read_text())
        except ValueError:
            document = {}

    q = args.quick
    records = args.records or (5_000 if q else 50_000)
    naive_records = args.naive_records or (300 if q else 2_000)
    seconds = args.seconds or (8.0 if q else 30.0)
    sweep_seconds = 6.0 if q else 15.0
    reloads = args.reloads or (3 if q else 12)

    started = time.monotonic()
    load_before = load_average()
    step(f"benchmarks {', '.join(sections)}{' (quick)' if q else ''}; load average {load_before}")
    env = BenchEnv.open(args.bootstrap_servers, args.tracking_uri)
    try:
        defaults = env.settings().scorer
        batch_max_records = args.batch_max_records or defaults.batch_max_records
        batch_max_wait_ms = args.batch_max_wait_ms if args.batch_max_wait_ms is not None \
            else defaults.batch_max_wait_ms
        env.prepare_model(versions=2 if {"reload", "efficiency"} & set(sections) else 1)  # efficiency: a canary
        _stamp_earlier_sections(document)
        document["machine"] = machine_info(env)
        document["model"] = {"name": env.model.name if env.model else None,
                             "kind": "hist_gradient_boosting", "train_sample": 20_000,
                             "train_seconds": [round(s, 1) for s in env.model.train_seconds] if env.model else [],
                             "model_threads": 1}
        loads: dict[str, Any] = {"before": load_before}

        def keep(key: str, result: dict[str, Any], load_key: str) -> None:
            # Stamped with its own run: `--only` keeps the other sections, which were measured at other times.
            loads[load_key] = load_average()
            result["measured"] = {"date": document["machine"]["date"], "git_sha": document["machine"]["git_sha"],
                                  "load_average_before": load_before, "load_average_after": loads[load_key]}
            document[key] = result
            _write(json_path, document)

        if "throughput" in sections:
            from bench import plots, throughput

            result = throughput.run(env, count=records, naive_count=naive_records,
                                    batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms)
            result["quick"] = q
            result["plot"] = plots.throughput_bars(result, out_dir / "throughput.png").name
            keep("throughput", result, "after_throughput")
        if "latency" in sections:
            from bench import latency, plots

            result = latency.run(env, rate=args.rate, seconds=seconds, sweep_seconds=sweep_seconds,
                                 batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms,
                                 sweep=not args.no_sweep, headline_runs=1 if q else latency.HEADLINE_RUNS,
                                 warmup_seconds=5.0 if q else latency.WARMUP_SECONDS)
            result["quick"] = q
            runs = {f"{'exactly-once' if k == 'eos' else 'at-least-once'}": r["_latencies"]
                    for k, r in result["headline"].items()}
            result["plot"] = plots.latency_cdf(
                runs, out_dir / "latency_cdf.png",
                f"housing-scorer latency at {args.rate:,} records/s offered "
                f"(batches {batch_max_records} / {batch_max_wait_ms} ms)").name
            if result.get("sweep"):
                result["sweep_plot"] = plots.sweep_bars(result["sweep"], out_dir / "latency_sweep.png").name
                result["recommendation"] = recommend(result["sweep"])
            for run in [*result["headline"].values(), *result.get("sweep", [])]:
                run.pop("_latencies", None)
            keep("latency", result, "after_latency")
        if "rates" in sections:
            from bench import latency

            result = latency.run_rates(env, rates=tuple(args.lower_rates or ((5_000,) if q else (2_500, 5_000))),
                                       seconds=seconds / 2 if q else 20.0, batch_max_records=batch_max_records,
                                       batch_max_wait_ms=batch_max_wait_ms)
            result["quick"] = q
            keep("latency_by_rate", result, "after_rates")
        if "flavours" in sections:
            from bench import flavours

            result = flavours.run(env, count=records, batch_max_records=batch_max_records,
                                  batch_max_wait_ms=batch_max_wait_ms)
            result["quick"] = q
            keep("flavours", result, "after_flavours")
        if "efficiency" in sections:
            from bench import efficiency, plots

            result = efficiency.run(env, count=args.efficiency_records or (30_000 if q else 1_600_000),
                                    batch_max_records=batch_max_records, batch_max_wait_ms=batch_max_wait_ms,
                                    baseline_root=args.baseline_root, profiles_dir=out_dir / "profiles")
            result["quick"] = q
            result["plot"] = plots.efficiency_bars(result, out_dir / "efficiency.png").name
            keep("efficiency", result, "after_efficiency")
        if "evaluator" in sections:
            from bench import evaluator

            result = evaluator.run(env, quick=q)
            keep("evaluator", result, "after_evaluator")
        if "reload" in sections:
            from bench import reload

            result = reload.run(env, rate=args.rate, reloads=reloads, out_dir=out_dir)
            result["quick"] = q
            keep("reload", result, "after_reload")
        if "rebalance" in sections:
            from bench import rebalance

            result = rebalance.run(env, out_dir=out_dir, batch_max_records=batch_max_records,
                                   batch_max_wait_ms=batch_max_wait_ms)
            result["quick"] = q
            keep("rebalance", result, "after_rebalance")
        document["machine"]["load_average"] = loads
        document["machine"]["bench_seconds"] = round(time.monotonic() - started, 1)
        _write(json_path, document)
    finally:
        env.close()
    step(f"done in {time.monotonic() - started:.0f}s: {json_path}")
    summary(document)
    return 0


def _stamp_earlier_sections(document: dict[str, Any]) -> None:
    """Give the sections of an earlier run that have no ``measured`` yet that run's date, commit and load, before
    its ``machine`` is replaced by this run's (files written before sections carried their own stamp)."""
    earlier = document.get("machine")
    if not isinstance(earlier, dict):
        return
    for key, section in document.items():
        if key not in ("machine", "model") and isinstance(section, dict) and "measured" not in section:
            section["measured"] = {"date": earlier.get("date"), "git_sha": earlier.get("git_sha"),
                                   "load_average": earlier.get("load_average")}


def recommend(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's best exactly-once setting: lowest p99 among runs that kept up with the offered rate."""
    out: dict[str, Any] = {}
    for guarantee in ("exactly_once", "at_least_once"):
        measured = [r for r in runs if r["guarantee"] == guarantee and r["latency"].get("count")]
        candidates = [r for r in measured if r.get("kept_up")]
        if not candidates:
            # Nothing kept up (a busy machine): say so, and name the setting that fell behind least.
            candidates = measured
            out[f"{guarantee}_note"] = "no setting kept up with the offered rate; lowest p99 shown"
        if not candidates:
            continue
        best = min(candidates, key=lambda r: r["latency"]["p99_ms"])
        out[guarantee] = {"batch_max_records": best["batch_max_records"],
                          "batch_max_wait_ms": best["batch_max_wait_ms"],
                          "p50_ms": best["latency"]["p50_ms"], "p99_ms": best["latency"]["p99_ms"],
                          "kept_up": bool(best.get("kept_up"))}
    return out


def summary(document: dict[str, Any]) -> None:
    lines = []
    if "throughput" in document:
        t = document["throughput"]
        rates = ", ".join(f"{k} {v['records_per_s']:,.0f}/s" for k, v in t["variants"].items())
        lines.append(f"throughput: {rates}; ratios {t['ratios']}")
    if "latency" in document:
        for key, run in document["latency"]["headline"].items():
            lat = run["latency"]
            lines.append(f"latency {key}: p50 {lat.get('p50_ms')} ms p99 {lat.get('p99_ms')} ms at "
                         f"{run['offered_rate']:,.0f}/s offered; peak RSS {run.get('peak_rss_mb_vmhwm')} MB")
        if document["latency"].get("recommendation"):
            lines.append(f"sweep recommends: {document['latency']['recommendation']}")
    for rate, runs in document.get("latency_by_rate", {}).get("by_rate", {}).items():
        for key, run in runs.items():
            lat = run["latency"]
            lines.append(f"latency {key} at {int(rate):,}/s: p50 {lat.get('p50_ms')} ms p99 {lat.get('p99_ms')} ms "
                         f"(kept up: {run.get('kept_up')})")
    if "flavours" in document:
        f = document["flavours"]
        rates = ", ".join(f"{k} {v['records_per_s']:,.0f}/s ({v.get('cpu_us_per_record')} CPU us/record)"
                          for k, v in f["variants"].items())
        lines.append(f"flavours (exactly-once): {rates}; ratios {f['ratios']}")
    if "evaluator" in document:
        w, k = document["evaluator"]["window"], document["evaluator"]["kafka"]
        lines.append(f"evaluator: join {w['cpu_us_per_matched_pair']} CPU us/pair, peak RSS {w['peak_rss_mb']} MB for "
                     f"{w['seconds']} s at {w['rate']:,}/s ({w['peak_pending_rows']:,} rows pending); from Kafka "
                     f"{k['cpu_us_per_matched_pair']} CPU us/pair, {k['pairs_per_second']:,} pairs/s")
    if "reload" in document and document["reload"].get("latency"):
        r = document["reload"]
        lines.append(f"reload: {r['latency']} gaps {r.get('missing')} duplicates {r.get('duplicates')}")
    for protocol, run in document.get("rebalance", {}).get("by_protocol", {}).items():
        gaps = ", ".join(f"{c['change']}: stayed {c['max_gap_stayed_ms']} ms, moved {c['max_gap_moved_ms']} ms"
                         for c in run["changes"])
        lines.append(f"rebalance {protocol}: {gaps}; lost {run['lost']}, duplicated {run['duplicated']}")
    for line in lines:
        print(line, file=sys.stdout)


def _write(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)

"""PNG plots of the benchmark results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402

logger = logging.getLogger(__name__)

LABELS = {"a_naive": "(a) naive\nper record", "b_minimal_batched": "(b) minimal\nbatched EOS",
          "c_scorer_eos": "(c) housing-scorer\nexactly-once", "c_scorer_alo": "(c) housing-scorer\nat-least-once"}


def throughput_bars(results: Mapping[str, Any], path: Path) -> Path:
    variants = results["variants"]
    keys = [k for k in LABELS if k in variants]
    rates = [variants[k]["records_per_s"] for k in keys]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    bars = ax.bar([LABELS[k] for k in keys], rates, color=["#999999", "#5b8cc6", "#2a9d5c", "#e0a030"][:len(keys)])
    ax.set_yscale("log")
    ax.set_ylabel("records/s (log scale)")
    for bar, rate in zip(bars, rates, strict=True):
        ax.annotate(f"{rate:,.0f}/s", (bar.get_x() + bar.get_width() / 2, rate), ha="center", va="bottom",
                    fontsize=9, xytext=(0, 3), textcoords="offset points")
    ratios = results.get("ratios", {})
    ax.set_title(f"Throughput, {results['records']:,} records (naive: {results['naive_records']:,})\n"
                 f"c/a = {ratios.get('c_eos_over_a', 0):,.0f}x   c/b = {ratios.get('c_eos_over_b', 0):.2f} "
                 f"(exactly-once; at-least-once c/b = {ratios.get('c_alo_over_b', 0):.2f})", fontsize=10)
    ax.set_ylim(top=max(rates) * 3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdf(runs: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, values in runs.items():
        if len(values) == 0:
            continue
        ordered = np.sort(values)
        ax.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=(
            f"{label}: p50 {np.percentile(ordered, 50):.0f} ms, p99 {np.percentile(ordered, 99):.0f} ms"))
    ax.set_xscale("log")
    ax.set_xlabel("produce -> visible prediction latency, ms (log scale)")
    ax.set_ylabel("fraction of records")
    for y in (0.5, 0.99):
        ax.axhline(y, color="#cccccc", linewidth=0.8, linestyle="--")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_bars(runs: Sequence[Mapping[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.8))
    labels = sorted({(r["batch_max_records"], r["batch_max_wait_ms"]) for r in runs},
                    key=lambda rw: (rw[0], rw[1]))
    x = np.arange(len(labels))
    width = 0.2
    for i, (guarantee, colour) in enumerate((("exactly_once", "#2a9d5c"), ("at_least_once", "#e0a030"))):
        by = {(r["batch_max_records"], r["batch_max_wait_ms"]): r for r in runs if r["guarantee"] == guarantee}
        p50 = [by[k]["latency"].get("p50_ms", 0) if k in by else 0 for k in labels]
        p99 = [by[k]["latency"].get("p99_ms", 0) if k in by else 0 for k in labels]
        ax.bar(x + (2 * i - 1.5) * width, p50, width, color=colour, alpha=0.55, label=f"{guarantee} p50")
        ax.bar(x + (2 * i - 0.5) * width, p99, width, color=colour, label=f"{guarantee} p99")
    ax.set_xticks(x, [f"{r} rec\n{w} ms" for r, w in labels], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("BATCH_MAX_RECORDS / BATCH_MAX_WAIT_MS sweep at the offered rate", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reload_timeline(bucket_starts_s: np.ndarray, rates: np.ndarray, reloads: Sequence[Mapping[str, Any]],
                    path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(bucket_starts_s, rates, linewidth=0.6, color="#9bbce0", label="predictions/s (100 ms buckets)")
    if len(rates) >= 10:
        smooth = np.convolve(rates, np.ones(10) / 10, mode="same")
        ax.plot(bucket_starts_s, smooth, linewidth=1.4, color="#1f4e89", label="1 s moving average")
    for i, reload in enumerate(reloads):
        ax.axvline(reload["published_s"], color="#d04040", linewidth=0.8, alpha=0.7,
                   label="model-update event published" if i == 0 else None)
        if reload.get("first_new_s") is not None:
            ax.axvline(reload["first_new_s"], color="#2a9d5c", linewidth=0.8, linestyle="--", alpha=0.7,
                       label="first prediction by the new version" if i == 0 else None)
    ax.set_xlabel("seconds since the stream started")
    ax.set_ylabel("predictions/s")
    ax.set_title("Hot reloads while scoring the offered rate", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reload_latency_hist(latencies_s: Sequence[float], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    values = np.asarray(latencies_s, dtype=np.float64)
    ax.hist(values, bins=max(5, min(30, len(values))), color="#2a9d5c")
    if len(values):
        for q, style in ((50, "--"), (99, ":")):
            v = float(np.percentile(values, q))
            ax.axvline(v, color="black", linestyle=style, linewidth=1, label=f"p{q} {v:.2f} s")
    ax.set_xlabel("event published -> first prediction by the new version, s")
    ax.set_ylabel("reloads")
    ax.set_title(f"Reload latency over {len(values)} reloads", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def efficiency_bars(results: Mapping[str, Any], path: Path) -> Path:
    """CPU µs per scored record of each variant (the scorer's interpreter and librdkafka threads stacked, the
    broker's beside it), the raw librdkafka loop, the floor of the design (exactly-once) and the model alone as
    lines, the targets dashed."""
    variants = results["variants"]
    names = list(variants)
    python = [variants[n].get("cpu_us_per_record_by_thread", {}).get("python", 0.0) for n in names]
    kafka = [variants[n].get("cpu_us_per_record_by_thread", {}).get("librdkafka", 0.0) for n in names]
    broker = [variants[n].get("broker_cpu_us_per_record", 0.0) for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(names)) + 3.0, 4.8))
    ax.bar(x - 0.2, python, 0.4, label="scorer: interpreter threads", color="#5b8cc6")
    ax.bar(x - 0.2, kafka, 0.4, bottom=python, label="scorer: librdkafka threads", color="#e0a030")
    ax.bar(x + 0.2, broker, 0.4, label="Kafka broker (same window)", color="#999999")
    for i, name in enumerate(names):
        total = variants[name].get("cpu_us_per_record")
        if total is not None:
            ax.annotate(f"{total:.1f}", (x[i] - 0.2, total), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    raw = results.get("raw_kafka", {}).get("eos_lz4", {}).get("cpu_us_per_record")
    predict = results.get("predict", {}).get("compiled_cpu_us_per_record")
    if raw is not None:
        ax.axhline(raw, color="#e0a030", linestyle=":", linewidth=1, label=f"raw librdkafka EOS {raw:.1f}")
    design_floor = results.get("floor", {}).get("eos", {}).get("cpu_us_per_record")
    if design_floor is not None:
        ax.axhline(design_floor, color="#b04a8f", linestyle="-.", linewidth=1,
                   label=f"floor of the design EOS {design_floor:.1f}")
    if predict is not None:
        ax.axhline(predict, color="#2a9d5c", linestyle=":", linewidth=1, label=f"model alone {predict:.1f}")
    ax.axhline(10.0, color="black", linestyle="--", linewidth=0.8, label="target EOS 10 (ALO 8)")
    ax.set_xticks(x, [n.replace("_", "\n", 1) for n in names], fontsize=8)
    ax.set_ylabel("CPU µs per scored record")
    ax.set_title(f"CPU per record over a {results['records']:,}-record backlog (start-up excluded)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""housing-scorer as a subprocess (``python -m consumer``), with its memory sampled.

A subprocess, not ``ScorerService`` in the bench process: the RSS is the scorer's alone, and the scorer's
threads do not share a GIL with the benchmark's readers. Configured through the environment only (the names
in config/settings.py), so it runs exactly as an operator would start it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from bench.env import PROJECT_ROOT, BenchEnv, Topics
from stack.processes import free_port

logger = logging.getLogger(__name__)


SCORER_COMPILED_TREES_CACHE = Path("~/.cache/housing-stream-scorer/compiled-trees")
"""Where a scorer started with the default settings looks for compiled tree libraries (MODEL_COMPILED_TREES_CACHE)."""


def warm_compiled_trees(fallback_path: str | Path, model_name: str) -> str | None:
    """Compile the trees of the model saved at ``fallback_path`` into the scorer's cache, as a scorer that has run
    a while has them: a fresh one would start on the uncompiled walk and switch mid-run (the compile competing for
    the cores meanwhile). Returns the handle's ``tree_walk``."""
    from consumer.core import compiled_trees
    from consumer.models.loader import load_fallback

    compiled_trees.configure(enabled=True, cache_dir=SCORER_COMPILED_TREES_CACHE)
    try:
        handle = load_fallback(str(fallback_path), model_name)
        handle.wait_compiled(300)
        return handle.tree_walk
    finally:
        compiled_trees.configure(enabled=False, cache_dir=None)


def admin_api_available() -> bool:
    """The admin API module exists (the scorer runs it: "every feature on"); else ``--no-admin-api``."""
    return (PROJECT_ROOT / "admin_api" / "app.py").exists()


class ScorerProcess:
    """One housing-scorer process; ``peak_rss_mb`` is the sampled maximum and ``hwm_rss_mb`` the kernel's."""

    def __init__(self, env: BenchEnv, topics: Topics, *, group_id: str, guarantee: str,
                 batch_max_records: int, batch_max_wait_ms: int, log_path: Path,
                 alias: str = "champion", extra_env: dict[str, str] | None = None,
                 root: Path = PROJECT_ROOT, args: tuple[str, ...] = ()) -> None:
        """:param args: more ``housing-scorer`` arguments (``("--workers", "2")``)."""
        assert env.model is not None
        self.log_path = log_path
        self.root = root
        """The source tree it runs from (another ``git worktree`` to compare an older commit)."""
        self.admin_api = admin_api_available()
        self.env_vars = {
            "KAFKA_BOOTSTRAP_SERVERS": env.bootstrap_servers,
            "MLFLOW_TRACKING_URI": env.tracking_uri,
            "MLFLOW_ENABLED": "true",
            "MLFLOW_MODEL_NAME": env.model.name,
            "MLFLOW_MODEL_ALIAS": alias,
            "MODEL_PATH": str(env.model.fallback_paths[0]),
            "TOPIC_RECORDS": topics.records,
            "TOPIC_PREDICTIONS": topics.predictions,
            "TOPIC_DEAD_LETTER": topics.dead_letter,
            "TOPIC_MODEL_UPDATES": topics.model_updates,
            "TOPIC_SCORER_STATUS": topics.scorer_status,
            "SCORER_GROUP_ID": group_id,
            "SCORER_INSTANCE_ID": f"{group_id}-1",
            "PROCESSING_GUARANTEE": guarantee,
            "BATCH_MAX_RECORDS": str(batch_max_records),
            "BATCH_MAX_WAIT_MS": str(batch_max_wait_ms),
            "PORT": str(free_port()),
            "LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._sampler: threading.Thread | None = None
        self._stop_sampling = threading.Event()
        self.rss_samples_mb: list[float] = []
        self.hwm_rss_mb: float | None = None
        self.metrics: dict[str, Any] | None = None

    def start(self) -> ScorerProcess:
        argv = [sys.executable, "-m", "consumer", *self.args] + ([] if self.admin_api else ["--no-admin-api"])
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=self.root, env={**os.environ, **self.env_vars},
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"housing-scorer exited with {self.process.returncode if self.process else None}; "
                               f"last lines of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _sample(self) -> None:
        import psutil

        try:
            process = psutil.Process(self.pid)
            while not self._stop_sampling.is_set():
                self.rss_samples_mb.append(process.memory_info().rss / 2**20)
                self.hwm_rss_mb = _vm_hwm_mb(self.pid) or self.hwm_rss_mb
                self._stop_sampling.wait(0.25)
        except psutil.Error:
            pass

    @property
    def peak_rss_mb(self) -> float | None:
        return round(max(self.rss_samples_mb), 1) if self.rss_samples_mb else None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (finish the batch, commit, close), then SIGKILL if it hangs."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.scrape_metrics()
            self.hwm_rss_mb = _vm_hwm_mb(self.pid) or self.hwm_rss_mb
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("housing-scorer %d did not stop within %.0fs; killing it", self.pid, timeout)
                self.process.kill()
                self.process.wait(10)
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
        if self._log is not None:
            self._log.close()
        return self.process.returncode

    def scrape_metrics(self) -> None:
        """Keep the scorer's own view (batches, batch size, seconds per batch and per predict) from /metrics."""
        if not self.admin_api or not self.alive():
            return
        url = f"http://127.0.0.1:{self.env_vars['PORT']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except (OSError, ValueError) as exc:
            logger.warning("could not read %s: %s", url, exc)
            return
        totals: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("housing_scorer_"):
                name, _, value = line.rpartition(" ")
                base = name.split("{", 1)[0]
                try:
                    totals[base] = totals.get(base, 0.0) + float(value)
                except ValueError:
                    continue

        def mean(metric: str, scale: float = 1.0) -> float | None:
            count = totals.get(f"{metric}_count", 0.0)
            return round(totals.get(f"{metric}_sum", 0.0) / count * scale, 2) if count else None

        self.metrics = {
            "batches": int(totals.get("housing_scorer_batch_size_count", 0)),
            "mean_batch_size": mean("housing_scorer_batch_size"),
            "mean_batch_ms": mean("housing_scorer_batch_seconds", 1000),
            "mean_predict_ms": mean("housing_scorer_predict_seconds", 1000),
            "transactions": int(totals.get("housing_scorer_transactions_total", 0)),
        }

    def describe(self) -> dict[str, Any]:
        return {"peak_rss_mb_sampled": self.peak_rss_mb,
                "peak_rss_mb_vmhwm": round(self.hwm_rss_mb, 1) if self.hwm_rss_mb else None,
                "admin_api": self.admin_api, "scorer_metrics": self.metrics}


def _vm_hwm_mb(pid: int) -> float | None:
    """The kernel's peak resident set size of ``pid`` (VmHWM), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def wait_ready(env: BenchEnv, scorer: ScorerProcess, group_id: str, topic: str, expect: int,
               timeout: float = 180.0) -> float:
    """Wait until the scorer has committed ``expect`` records of ``topic``; returns seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        scorer.check_alive()
        if env.committed_total(group_id, topic) >= expect:
            return time.monotonic() - started
        time.sleep(0.3)
    raise RuntimeError(f"housing-scorer did not commit {expect} warm-up records within {timeout:.0f}s; "
                       f"last lines of {scorer.log_path}:\n{scorer.log_tail()}")

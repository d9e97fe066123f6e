"""``make demo``: the whole story, unattended, in a few minutes.

Stack up -> train and promote -> two scorers -> a stream with a few bad records -> predictions and the DLQ ->
a challenger promoted through the admin API while records flow -> both scorers switch (fleet view), no gap ->
each scorer's health and drift -> where to look. The stack and the scorers stay up for exploring; ``make down``
stops everything.

The streams send the dataset in a seeded random order (``demo_stream_csv``): the CSV is sorted by location, and
its tail alone is far from the training distribution (PSI of latitude above 3), so streamed in file order the
scorers' drift windows would turn /health ``degraded`` right after the demo: a false alarm on a first look.
MLflow's own lines ("View run ... at", "Successfully registered model", ...) are kept out of the training
steps' output (``training_env``, ``ChatterFilter``).
"""

from __future__ import annotations

import codecs
import collections
import json
import os
import random
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Message, TopicPartition  # noqa: E402

from config.settings import load_settings  # noqa: E402
from schemas.codecs import decode_prediction  # noqa: E402
from stack.local import LocalStack  # noqa: E402
from stack.processes import StackError, read_pid, start_process, stop_process, wait_until  # noqa: E402

BIN = Path(sys.executable).parent
SCORER_PORTS = (5001, 5002)
STREAM_COUNT = 20_000
"""Records of step 4's stream."""
CHALLENGER_STREAM_COUNT = 12_000
"""Records of step 6's stream, during which the challenger is promoted."""
CANARY_STREAM_COUNT = 6_000
"""Records of each canary stream (step 8), each with its outcome a few seconds later."""
CANARY_FRACTION = 0.2
CANARY_START_ID = 1_000_000
"""First record id number of the canary streams (rec-1000000...): ids no earlier stream of the demo used."""
EVALUATOR_PORT = 5003
CANARY_GATE = {"AUTO_PROMOTE": "true", "CANARY_MIN_MATCHED": "300", "CANARY_MIN_MINUTES": "0.1",
               "CANARY_DECIDE_SECONDS": "3", "EVALUATION_CHECKPOINT_SECONDS": "1", "EVALUATION_MLFLOW_SECONDS": "3"}
"""housing-evaluate's gate for the demo: decide after 300 matched pairs and 6 s (the defaults are 2,000 and 10
minutes: a production gate, too slow for a demo)."""
DEMO_SEED = 12
"""Seed of the demo stream's order: every demo sends the same records in the same order."""
BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = GREEN = RED = RESET = ""


def step(number: int, title: str) -> None:
    print(f"\n{BOLD}== {number}. {title}{RESET}", flush=True)


def table(headers: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def http(method: str, url: str, body: Any = None, key: str | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def run(argv: list[str], **kwargs: Any) -> None:
    result = subprocess.run(argv, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(argv)}` failed with exit code {result.returncode}")


# --- numbers --------------------------------------------------------------------------------------------------
def fmt_count(value: int) -> str:
    return f"{value:,}"


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def fleet_rows(instances: list[dict[str, Any]]) -> list[list[Any]]:
    """/api/fleet's instances as rows of the demo's fleet table: instance, version, result, state, load s."""
    return [[s.get("instance_id"), s.get("model_version"), s.get("result"), s.get("state", "-"),
             fmt_seconds(s.get("load_seconds"))] for s in instances]


# --- the stream ---------------------------------------------------------------------------------------------
def demo_stream_csv(home: Path) -> Path:
    """The dataset in a seeded random order, written once under ``home``: what the demo streams.

    In file order (sorted by location) the last records are all from the north of the state, and the scorers'
    drift windows (their last 5,000 records) would flag drift on a first look.
    """
    source = ROOT / "data" / "housing.csv"
    header, *rows = source.read_text(encoding="utf-8").splitlines()
    random.Random(DEMO_SEED).shuffle(rows)
    target = home / "demo" / "housing-shuffled.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([header, *rows]) + "\n"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target


# --- MLflow's chatter out of the training steps -----------------------------------------------------------------
def training_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for housing-train with MLflow quiet: no "View run ... at" links, no INFO log lines."""
    return {**env, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_LOGGING_LEVEL": "WARNING"}


MLFLOW_CHATTER = re.compile(r"🏃 View run |🧪 View experiment at|🔗 View Logged Model|Successfully registered model '"
                            r"|Registered model '.*' already exists|Created version '.*' of model ")
"""Lines MLflow prints on its own (``eprint``), whatever its log level."""


class ChatterFilter:
    """Drops MLflow's own lines from a child's stderr as it arrives; progress-bar redraws (``\\r...``) pass at
    once, other text a line at a time."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> str:
        self._pending += text
        out: list[str] = []
        while True:
            # A segment ends with a newline (included) or just before the next carriage return (a redraw).
            newline, redraw = self._pending.find("\n"), self._pending.find("\r", 1)
            if newline < 0 and redraw < 0:
                break
            end = newline + 1 if newline >= 0 and (redraw < 0 or newline < redraw) else redraw
            out.append(self._keep(self._pending[:end]))
            self._pending = self._pending[end:]
        if self._pending.startswith("\r"):  # a redraw arrives whole: show it now, not at the next one
            out.append(self._keep(self._pending))
            self._pending = ""
        return "".join(out)

    def close(self) -> str:
        rest, self._pending = self._pending, ""
        return self._keep(rest)

    @staticmethod
    def _keep(segment: str) -> str:
        return "" if MLFLOW_CHATTER.search(segment) else segment


def run_training(argv: list[str], env: dict[str, str]) -> None:
    """housing-train with MLflow quiet: its stdout as is, its stderr (progress bar, warnings) through
    ChatterFilter."""
    process = subprocess.Popen(argv, env=training_env(env), stderr=subprocess.PIPE)
    assert process.stderr is not None
    chatter, decoder = ChatterFilter(), codecs.getincrementaldecoder("utf-8")("replace")
    while chunk := os.read(process.stderr.fileno(), 4096):
        sys.stderr.write(chatter.feed(decoder.decode(chunk)))
        sys.stderr.flush()
    sys.stderr.write(chatter.feed(decoder.decode(b"", final=True)) + chatter.close())
    sys.stderr.flush()
    process.stderr.close()
    if (code := process.wait()) != 0:
        raise SystemExit(f"demo: `{' '.join(argv)}` failed with exit code {code}")


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every committed message of a topic, read to its current end (read_committed)."""
    consumer = Consumer({**load_settings().kafka.client_config(), "bootstrap.servers": bootstrap,
                         "group.id": f"demo-reader-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
    consumer.assign(partitions)
    messages: list[Message] = []
    deadline = time.monotonic() + 60
    # Positions pass the end offsets (which count transaction markers) once everything is read.
    while time.monotonic() < deadline:
        messages.extend(m for m in consumer.consume(5000, 0.3) if not m.error())
        if all(ends[tp.partition] == 0 or tp.offset >= ends[tp.partition] for tp in consumer.position(partitions)):
            break
    consumer.close()
    return messages


def main() -> int:
    os.chdir(ROOT)
    settings = load_settings()
    api_key = os.environ.get("ADMIN_API_KEY") or secrets.token_urlsafe(18)
    stack = LocalStack(settings)
    scorer_dir = stack.home / "scorers"

    step(1, "Local stack: Apache Kafka (KRaft) and the MLflow tracking server")
    try:
        for line in stack.up():
            print("  " + line)
    except StackError as exc:
        raise SystemExit(f"demo: {exc}") from exc
    bootstrap, tracking = stack.bootstrap_servers, stack.tracking_uri
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "MLFLOW_TRACKING_URI": tracking,
           "ADMIN_API_KEY": api_key, "MLFLOW_RELOAD_INTERVAL": "10"}

    step(2, "Train four models, register the best, promote it to champion")
    run_training([str(BIN / "housing-train"), "--promote", "--log-level", "WARNING"], env)

    step(3, "Start two scorers in one consumer group (admin API on :5001 and :5002)")
    for index, port in enumerate(SCORER_PORTS, start=1):
        pid_file = scorer_dir / f"scorer-{index}.pid"
        if read_pid(pid_file):
            stop_process(pid_file)
        start_process([str(BIN / "housing-scorer")], log_file=scorer_dir / f"scorer-{index}.log", pid_file=pid_file,
                      env={**env, "PORT": str(port), "SCORER_INSTANCE_ID": f"demo-scorer-{index}"})
    for port in SCORER_PORTS:
        if not wait_until(lambda p=port: http("GET", f"http://127.0.0.1:{p}/ready")[0] == 200, 120, 0.5):
            raise SystemExit(f"demo: scorer on :{port} did not become ready; see {scorer_dir}/*.log")
    rows = []
    for port in SCORER_PORTS:
        _, info = http("GET", f"http://127.0.0.1:{port}/api/model/info")
        meta = (info or {}).get("model_info", {}).get("model_metadata", {})
        rows.append([f"http://127.0.0.1:{port}", meta.get("name"), meta.get("version"), meta.get("alias")])
    table(["scorer", "model", "version", "alias"], rows)

    stream_csv = demo_stream_csv(stack.home)
    step(4, f"Stream {fmt_count(STREAM_COUNT)} housing records in random order (1% malformed on purpose)")
    run([str(BIN / "housing-produce"), "--csv", str(stream_csv), "--count", str(STREAM_COUNT), "--rate", "4000",
         "--bad-fraction", "0.01", "--seed", str(int(time.time())), "--log-level", "WARNING"], env=env)

    step(5, "Predictions and dead letters")
    wait_until(lambda: _lag_zero(), 60, 0.5)
    predictions = read_topic(bootstrap, settings.topics.predictions)
    dead = read_topic(bootstrap, settings.topics.dead_letter)
    sample = [decode_prediction(m.value()) for m in predictions[-5:]]
    table(["record id", "predicted value", "model", "version"],
          [[p["record_id"], f"{p['prediction']:,.0f}", p["model_name"], p["model_version"]] for p in sample])
    reasons = collections.Counter(dict(m.headers() or [])["dlq.reason"].decode() for m in dead)
    print(f"\n  {fmt_count(len(predictions))} predictions, {fmt_count(len(dead))} dead letters")
    table(["dead-letter reason", "count"], [[r, fmt_count(c)] for r, c in reasons.most_common()])

    step(6, "Train a challenger and promote it through the admin API while records flow")
    run_training([str(BIN / "housing-train"), "--models", "random_forest,hist_gradient_boosting", "--seed", "7",
                  "--log-level", "WARNING"], env)
    name = settings.model.name
    _, details = http("GET", f"http://127.0.0.1:{SCORER_PORTS[0]}/api/mlflow/models/{name}")
    versions = (details or {}).get("versions", [])
    challenger = max((v for v in versions if "challenger" in (v.get("aliases") or [])),
                     key=lambda v: int(v["version"]), default=None)
    if challenger is None:
        raise SystemExit("demo: no challenger version in the registry")
    stream = subprocess.Popen([str(BIN / "housing-produce"), "--csv", str(stream_csv), "--count",
                               str(CHALLENGER_STREAM_COUNT), "--rate", "1000", "--no-progress"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)  # let the stream run on the old model first: the switch happens mid-stream
    status, answer = http("PUT", f"http://127.0.0.1:{SCORER_PORTS[0]}/api/mlflow/models/{name}/aliases/champion",
                          {"version": str(challenger["version"])}, key=api_key)
    print(f"  PUT /api/mlflow/models/{name}/aliases/champion version {challenger['version']} -> HTTP {status}")
    if status >= 300:
        print(f"  {RED}{answer}{RESET}")

    step(7, "Both scorers switch (fleet view), with no gap in the stream")
    new_version = str(challenger["version"])
    switched = wait_until(lambda: _fleet_on(new_version), 60, 0.5)
    _, fleet = http("GET", f"http://127.0.0.1:{SCORER_PORTS[0]}/api/fleet")
    table(["instance", "model version", "result", "state", "load s"], fleet_rows((fleet or {}).get("instances") or []))
    verdict = f"{GREEN}both scorers run version {new_version}{RESET}" if switched else f"{RED}not switched{RESET}"
    print(f"  {verdict}")
    stream.wait(timeout=120)
    wait_until(lambda: _lag_zero(), 60, 0.5)
    balance(bootstrap, settings)

    canary_phase(settings, env, stream_csv, stack.home, scorer_dir)

    step(10, "Health and drift of each scorer (PSI of its last records against the training profile)")
    for port in SCORER_PORTS:
        print("  " + health_line(port))

    step(11, "Where to look")
    for port in SCORER_PORTS:
        print(f"  admin API   http://127.0.0.1:{port}/health   /ready   /api/model/info   /api/fleet   /api/canary   "
              "/metrics")
    print(f"  evaluator   http://127.0.0.1:{EVALUATOR_PORT}/performance   /metrics   (live RMSE plot: "
          f"{stack.home / 'demo' / 'live-rmse.png'})")
    print(f"  MLflow UI   {tracking}")
    print(f"  API key     {api_key}   (mutating endpoints: -H 'X-API-Key: ...')")
    print(f"  logs        {scorer_dir}/scorer-*.log, {stack.home}/kafka/logs, {stack.home}/mlflow/logs")
    print(f"  stop        {BOLD}make down{RESET}")
    return 0


def balance(bootstrap: str, settings: Any) -> None:
    """Predictions per version, and inputs = predictions + dead letters."""
    records = read_topic(bootstrap, settings.topics.records)
    predictions = read_topic(bootstrap, settings.topics.predictions)
    dead = read_topic(bootstrap, settings.topics.dead_letter)
    by_version = collections.Counter(dict(m.headers() or [])["model_version"].decode()
                                     for m in predictions)
    table(["model version", "predictions"], [[v, fmt_count(c)] for v, c in sorted(by_version.items())])
    gap = len(records) - len(predictions) - len(dead)
    print(f"\n  inputs {fmt_count(len(records))} = predictions {fmt_count(len(predictions))} + dead letters "
          f"{fmt_count(len(dead))}  -> {GREEN + 'no gap' + RESET if gap == 0 else RED + f'{gap:,} missing' + RESET}")


# --- the canary (issue 14) ------------------------------------------------------------------------------------
def shuffled_target_csv(source: Path, home: Path) -> Path:
    """``source`` with its target column (median_house_value) shuffled: a model trained on it learns nothing."""
    header, *rows = source.read_text(encoding="utf-8").splitlines()
    column = header.split(",").index("median_house_value")
    cells = [row.split(",") for row in rows]
    targets = [c[column] for c in cells]
    random.Random(DEMO_SEED).shuffle(targets)
    for c, target in zip(cells, targets, strict=True):
        c[column] = target
    out = home / "demo" / "housing-shuffled-target.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([header, *(",".join(c) for c in cells)]) + "\n", encoding="utf-8")
    return out


def evidence_table(evidence: dict[str, Any]) -> str:
    """A decision's evidence (as the gate tags the version with it) as the gate's own table."""
    from dataclasses import fields  # deferred: only the canary step needs these

    from consumer.evaluation.gates import Decision  # deferred
    from consumer.evaluation.gates import table as gate_table  # deferred

    known = {f.name for f in fields(Decision)}
    return gate_table(Decision(**{k: v for k, v in evidence.items() if k in known}))


def _challenger_version(client: Any, name: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, "challenger").version)
    except Exception:  # no challenger alias
        return None


def _canary_stream(env: dict[str, str], stream_csv: Path, start_id: int) -> None:
    """Records with their outcomes; ids from ``start_id`` on: the earlier streams used rec-0..., and the
    evaluator joins an outcome to the first prediction of its record id (later ones are duplicates)."""
    run([str(BIN / "housing-produce"), "--csv", str(stream_csv), "--count", str(CANARY_STREAM_COUNT), "--rate",
         "1000", "--start-id", str(start_id), "--outcomes", "--outcome-delay", "2s..10s", "--seed",
         str(int(time.time())), "--no-progress", "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL)


def _decided(client: Any, name: str, version: str, tag: str, deadline: float) -> dict[str, Any] | None:
    """The evidence the gate tagged ``version`` with (``tag``), waiting until ``deadline`` seconds pass."""
    found: dict[str, Any] = {}

    def tagged() -> bool:
        tags = client.get_model_version(name, version).tags or {}
        if tag in tags:
            found.update(json.loads(tags[tag]))
        return bool(found)

    wait_until(tagged, deadline, 1.0)
    return found or None


def canary_phase(settings: Any, env: dict[str, str], stream_csv: Path, home: Path, scorer_dir: Path) -> None:
    """Step 8 and 9: a better challenger canaried at 20 % and promoted by the gate; a bad one rolled back."""
    from mlflow.tracking import MlflowClient  # deferred: only this step needs the registry client

    from consumer.evaluation.plots import live_rmse_history, plot_live_rmse  # deferred
    from consumer.models.canary import PROMOTED_TAG, REJECTED_TAG  # deferred

    name, admin = settings.model.name, f"http://127.0.0.1:{SCORER_PORTS[0]}"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    step(8, f"Canary: a better challenger scores {CANARY_FRACTION:.0%} of the keys; outcomes arrive later; "
            "the gate decides")
    pid_file = scorer_dir / "evaluator.pid"
    if read_pid(pid_file):
        stop_process(pid_file)
    start_process([str(BIN / "housing-evaluate")], log_file=scorer_dir / "evaluator.log", pid_file=pid_file,
                  env={**env, **CANARY_GATE, "EVALUATOR_PORT": str(EVALUATOR_PORT), "EVALUATOR_ID": "demo-evaluator"})
    run_training([str(BIN / "housing-train"), "--models", "random_forest", "--seed", "21", "--log-level",
                  "WARNING"], env)
    better = _challenger_version(client, name)
    status, _ = http("PUT", f"{admin}/api/canary", {"fraction": CANARY_FRACTION}, key=api_key_of(env))
    print(f"  challenger v{better}; PUT /api/canary fraction {CANARY_FRACTION} -> HTTP {status}")
    _canary_stream(env, stream_csv, CANARY_START_ID)
    evidence = _decided(client, name, str(better), PROMOTED_TAG, 180) if better else None
    if evidence:
        print(f"  {GREEN}the gate promoted v{better}{RESET} (decision {evidence.get('decision_id')}):")
        print("    " + evidence_table(evidence).replace("\n", "\n    "))
    else:
        print(f"  {RED}no promotion within 3 minutes; see {scorer_dir}/evaluator.log{RESET}")

    step(9, "A deliberately bad version (trained on a shuffled target) canaried, and rolled back")
    bad_csv = shuffled_target_csv(ROOT / "data" / "housing.csv", home)
    run_training([str(BIN / "housing-train"), "--models", "linear_regression", "--data", str(bad_csv),
                  "--log-level", "WARNING"], env)
    bad = _challenger_version(client, name)
    status, _ = http("PUT", f"{admin}/api/canary", {"fraction": CANARY_FRACTION}, key=api_key_of(env))
    print(f"  bad challenger v{bad}; PUT /api/canary fraction {CANARY_FRACTION} -> HTTP {status}")
    _canary_stream(env, stream_csv, CANARY_START_ID + CANARY_STREAM_COUNT)
    evidence = _decided(client, name, str(bad), REJECTED_TAG, 180) if bad else None
    if evidence:
        print(f"  {GREEN}the gate rolled v{bad} back{RESET} (decision {evidence.get('decision_id')}):")
        print("    " + evidence_table(evidence).replace("\n", "\n    "))
    else:
        print(f"  {RED}no rollback within 3 minutes; see {scorer_dir}/evaluator.log{RESET}")
    wait_until(lambda: _lag_zero(), 60, 0.5)
    balance(settings.kafka.bootstrap_servers, settings)
    try:
        versions = [str(v.version) for v in client.search_model_versions(f"name='{name}'")]
        plot = plot_live_rmse(live_rmse_history(client, name, versions), home / "demo" / "live-rmse.png")
        print(f"\n  live RMSE per version over time: {plot}")
    except Exception as exc:  # the plot is a bonus: the demo goes on without it
        print(f"  {RED}live RMSE plot not written: {exc}{RESET}")


def api_key_of(env: dict[str, str]) -> str:
    return env["ADMIN_API_KEY"]


def health_line(port: int) -> str:
    """One scorer's /health verdict and its largest drift PSI, e.g. ``:5001  healthy  largest PSI 0.012 ...``."""
    _, health = http("GET", f"http://127.0.0.1:{port}/health", timeout=10)
    _, drift = http("GET", f"http://127.0.0.1:{port}/api/model/drift", timeout=10)
    verdict = str((health or {}).get("status", "unreachable"))
    colour = GREEN if verdict == "healthy" else RED
    psi = {k: v for k, v in ((drift or {}).get("psi") or {}).items() if isinstance(v, int | float)}
    if psi:
        worst = max(psi, key=lambda name: psi[name])
        rows = (drift or {}).get("computed_rows") or (drift or {}).get("window_rows") or 0
        seen = (f"largest drift PSI {psi[worst]:.3f} ({worst}) over its last {fmt_count(int(rows))} records, "
                f"alert above {float((drift or {}).get('threshold') or 0.25):.2f}")
    else:
        seen = f"drift: {(drift or {}).get('status', 'unknown')}"
    reasons = "; ".join(str(r) for r in (health or {}).get("reasons") or [])
    return f":{port}  {colour}{verdict}{RESET}  {seen}" + (f"\n         {RED}{reasons}{RESET}" if reasons else "")


def _lag_zero() -> bool:
    total = 0
    for port in SCORER_PORTS:
        status, health = http("GET", f"http://127.0.0.1:{port}/health", timeout=5)
        if not health:
            return False
        total += int(health.get("consumer_lag") or 0)
    return total == 0


def _fleet_on(version: str) -> bool:
    _, fleet = http("GET", f"http://127.0.0.1:{SCORER_PORTS[0]}/api/fleet", timeout=5)
    mine = [s for s in (fleet or {}).get("instances") or [] if str(s.get("instance_id")).startswith("demo-scorer-")]
    return len(mine) == len(SCORER_PORTS) and all(str(s.get("model_version")) == version for s in mine)


if __name__ == "__main__":
    sys.exit(main())

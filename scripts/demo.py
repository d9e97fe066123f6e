"""``make demo``: the whole story, unattended, in a few minutes.

Stack up -> train and promote -> two scorers -> a stream with a few bad records -> predictions and the DLQ ->
a challenger promoted through the admin API while records flow -> both scorers switch (fleet view), no gap ->
where to look. The stack and the scorers stay up for exploring; ``make down`` stops everything.
"""

from __future__ import annotations

import collections
import json
import os
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
os.chdir(ROOT)

from confluent_kafka import Consumer, Message, TopicPartition  # noqa: E402

from config.settings import load_settings  # noqa: E402
from schemas.codecs import decode_prediction  # noqa: E402
from stack.local import LocalStack  # noqa: E402
from stack.processes import StackError, read_pid, start_process, stop_process, wait_until  # noqa: E402

BIN = Path(sys.executable).parent
SCORER_PORTS = (5001, 5002)
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
    run([str(BIN / "housing-train"), "--promote", "--log-level", "WARNING"], env=env)

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

    step(4, "Stream 20,000 housing records (1% malformed on purpose)")
    run([str(BIN / "housing-produce"), "--count", "20000", "--rate", "4000", "--bad-fraction", "0.01",
         "--seed", str(int(time.time()))], env=env)

    step(5, "Predictions and dead letters")
    wait_until(lambda: _lag_zero(), 60, 0.5)
    predictions = read_topic(bootstrap, settings.topics.predictions)
    dead = read_topic(bootstrap, settings.topics.dead_letter)
    sample = [decode_prediction(m.value()) for m in predictions[-5:]]
    table(["record id", "predicted value", "model", "version"],
          [[p["record_id"], f"{p['prediction']:,.0f}", p["model_name"], p["model_version"]] for p in sample])
    reasons = collections.Counter(dict(m.headers() or [])["dlq.reason"].decode() for m in dead)
    print(f"\n  {len(predictions):,} predictions, {len(dead):,} dead letters")
    table(["dead-letter reason", "count"], [[r, c] for r, c in reasons.most_common()])

    step(6, "Train a challenger and promote it through the admin API while records flow")
    run([str(BIN / "housing-train"), "--models", "random_forest,hist_gradient_boosting", "--seed", "7",
         "--log-level", "WARNING"], env=env)
    name = settings.model.name
    _, details = http("GET", f"http://127.0.0.1:{SCORER_PORTS[0]}/api/mlflow/models/{name}")
    versions = (details or {}).get("versions", [])
    challenger = max((v for v in versions if "challenger" in (v.get("aliases") or [])),
                     key=lambda v: int(v["version"]), default=None)
    if challenger is None:
        raise SystemExit("demo: no challenger version in the registry")
    stream = subprocess.Popen([str(BIN / "housing-produce"), "--count", "12000", "--rate", "1000", "--no-progress"],
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
    table(["instance", "model version", "result", "load s"],
          [[s.get("instance_id"), s.get("model_version"), s.get("result"), s.get("load_seconds")]
           for s in (fleet or {}).get("instances") or []])
    verdict = f"{GREEN}both scorers run version {new_version}{RESET}" if switched else f"{RED}not switched{RESET}"
    print(f"  {verdict}")
    stream.wait(timeout=120)
    wait_until(lambda: _lag_zero(), 60, 0.5)
    records = read_topic(bootstrap, settings.topics.records)
    predictions = read_topic(bootstrap, settings.topics.predictions)
    dead = read_topic(bootstrap, settings.topics.dead_letter)
    by_version = collections.Counter(dict(m.headers() or [])["model_version"].decode()
                                     for m in predictions)
    table(["model version", "predictions"], [[v, c] for v, c in sorted(by_version.items())])
    gap = len(records) - len(predictions) - len(dead)
    print(f"\n  inputs {len(records):,} = predictions {len(predictions):,} + dead letters {len(dead):,}"
          f"  -> {GREEN + 'no gap' + RESET if gap == 0 else RED + f'{gap} missing' + RESET}")

    step(8, "Where to look")
    for port in SCORER_PORTS:
        print(f"  admin API   http://127.0.0.1:{port}/health   /ready   /api/model/info   /api/fleet   /metrics")
    print(f"  MLflow UI   {tracking}")
    print(f"  API key     {api_key}   (mutating endpoints: -H 'X-API-Key: ...')")
    print(f"  logs        {scorer_dir}/scorer-*.log, {stack.home}/kafka/logs, {stack.home}/mlflow/logs")
    print(f"  stop        {BOLD}make down{RESET}")
    return 0


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

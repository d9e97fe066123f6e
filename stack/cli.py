"""``housing-stack up | down | status``: the local Kafka broker and MLflow server for development and tests.

``up --with-registry`` adds a schema registry (Apicurio, Confluent-compatible API); ``up --webhooks`` registers
the scorers' webhook receiver with MLflow, so an alias moved in MLflow reaches the scorers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from config.runtime import configure_logging
from config.settings import Settings, SettingsError, load_settings
from stack.local import LocalStack, StackStatus
from stack.processes import StackError
from stack.schema_registry import DEFAULT_PORT as REGISTRY_PORT
from stack.schema_registry import LocalSchemaRegistry, registry_answers
from stack.webhooks import receiver_url, register_webhook, stack_secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="housing-stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--home", type=Path, default=None, help="state folder (default .stack or $HOUSING_STACK_DIR)")
    parser.add_argument("--kafka-port", type=int, default=None, help="broker port (default 9092 or $KAFKA_PORT)")
    parser.add_argument("--mlflow-port", type=int, default=None, help="MLflow port (default 5000 or $MLFLOW_PORT)")
    parser.add_argument("--with-registry", action="store_true",
                        help="up: also start a schema registry (Apicurio, built from Maven Central once)")
    parser.add_argument("--registry-port", type=int, default=None,
                        help=f"schema registry port (default {REGISTRY_PORT} or $SCHEMA_REGISTRY_PORT)")
    parser.add_argument("--webhooks", action="store_true",
                        help="up: register the scorers' webhook receiver with MLflow for alias changes")
    parser.add_argument("--webhook-url", action="append", default=None, metavar="URL",
                        help="receiver to register (repeatable; default the admin API on this machine: "
                             "http://127.0.0.1:<PORT>/api/webhooks/mlflow)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.WARNING, fmt="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        stack = LocalStack(settings, home=args.home, kafka_port=args.kafka_port,
                           controller_port=args.kafka_port + 1 if args.kafka_port else None,
                           mlflow_port=args.mlflow_port)
        registry = LocalSchemaRegistry(stack.home / "schema-registry", port=args.registry_port
                                       or int(os.environ.get("SCHEMA_REGISTRY_PORT", REGISTRY_PORT)))
        if args.command == "up":
            for line in stack.up():
                print(line, flush=True)
            exports = [f"KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers}",
                       f"MLFLOW_TRACKING_URI={stack.tracking_uri}"]
            if args.with_registry:
                print(_registry_up(registry, settings), flush=True)
                exports.append(f"SCHEMA_REGISTRY_URL={settings.schema_registry_url or registry.url}")
            if args.webhooks:
                secret = settings.admin.webhook_secret or stack_secret(stack.home / "mlflow-webhook.secret")
                for url in args.webhook_url or [receiver_url(settings.admin.host, settings.admin.port)]:
                    print(register_webhook(stack.tracking_uri, url, secret).line(), flush=True)
                exports.append(f"MLFLOW_WEBHOOK_SECRET={secret}")
            _print_status(stack, registry)
            print(f"logs: {stack.home}/kafka/logs/kafka.log, {stack.home}/mlflow/logs/mlflow.log"
                  + (f", {registry.log_file}" if args.with_registry else ""))
            print("export " + " ".join(exports))
        elif args.command == "down":
            if registry.is_running():
                print(f"schema-registry: {'stopped' if registry.stop() else 'was not running'}")
            for line in stack.down():
                print(line)
        else:
            status = _print_status(stack, registry)
            if not (status.kafka_ok and status.mlflow_ok):
                return 1
    except (StackError, SettingsError) as exc:
        print(f"housing-stack {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _registry_up(registry: LocalSchemaRegistry, settings: Settings) -> str:
    external = settings.schema_registry_url
    if external:
        if not registry_answers(external):
            raise StackError(f"SCHEMA_REGISTRY_URL={external} does not answer GET /subjects: start that registry "
                             "or unset the variable to use the local one")
        return f"schema-registry: using external registry {external}"
    if registry.is_healthy():
        return f"schema-registry: already running at {registry.url} (reused)"
    registry.stop()  # a recorded pid that does not answer is stale
    registry.start()
    return f"schema-registry: started at {registry.url}"


def _print_status(stack: LocalStack, registry: LocalSchemaRegistry) -> StackStatus:
    status = stack.status()
    for line in status.lines():
        print(line)
    pid = registry.running_pid()
    if pid:
        print(f"registry {registry.url:<28} {'healthy' if registry.answers() else 'DOWN':<8} local, pid {pid}")
    return status


if __name__ == "__main__":
    sys.exit(main())

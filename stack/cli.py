"""``housing-stack up | down | status``: the local Kafka broker and MLflow server for development and tests."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from config.runtime import configure_logging
from config.settings import SettingsError, load_settings
from stack.local import LocalStack, StackStatus
from stack.processes import StackError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="housing-stack", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--home", type=Path, default=None, help="state folder (default .stack or $HOUSING_STACK_DIR)")
    parser.add_argument("--kafka-port", type=int, default=None, help="broker port (default 9092 or $KAFKA_PORT)")
    parser.add_argument("--mlflow-port", type=int, default=None, help="MLflow port (default 5000 or $MLFLOW_PORT)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.WARNING, fmt="%(levelname)s %(name)s: %(message)s")
    try:
        stack = LocalStack(load_settings(), home=args.home, kafka_port=args.kafka_port,
                           controller_port=args.kafka_port + 1 if args.kafka_port else None,
                           mlflow_port=args.mlflow_port)
        if args.command == "up":
            for line in stack.up():
                print(line, flush=True)
            _print_status(stack)
            print(f"logs: {stack.home}/kafka/logs/kafka.log, {stack.home}/mlflow/logs/mlflow.log")
            print(f"export KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers} MLFLOW_TRACKING_URI={stack.tracking_uri}")
        elif args.command == "down":
            for line in stack.down():
                print(line)
        else:
            status = _print_status(stack)
            if not (status.kafka_ok and status.mlflow_ok):
                return 1
    except (StackError, SettingsError) as exc:
        print(f"housing-stack {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_status(stack: LocalStack) -> StackStatus:
    status = stack.status()
    for line in status.lines():
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())

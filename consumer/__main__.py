"""``housing-scorer``: score housing records from Kafka with the registry's model; admin API beside it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from config.runtime import THREADED_FORMAT, configure_logging, pin_thread_pools
from config.settings import Settings, SettingsError, add_settings_arguments, settings_from_args

if TYPE_CHECKING:
    from consumer.service import AdminApp, ScorerService


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="housing-scorer", description=__doc__)
    add_settings_arguments(parser)
    parser.add_argument("--no-admin-api", action="store_true", help="run the scoring loop only")
    parser.add_argument("--show-config", action="store_true", help="print the effective settings and exit")
    return parser


def admin_app(service: ScorerService) -> AdminApp:
    """The admin API for ``service``: built here, the composition root, so the scorer never imports admin_api."""
    from admin_api.app import create_app, ssl_context  # deferred with the scorer's modules (see main)
    from consumer.service import AdminApp  # deferred with the scorer's modules (see main)

    return AdminApp(create_app(service.settings, state=service.state, service=service), ssl_context(service.settings))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings: Settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"housing-scorer: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.show_config:
        print(json.dumps({k: v for k, v in settings.as_dict().items()}, indent=2, default=str))
        return 0
    configure_logging(settings.log_level, fmt=THREADED_FORMAT)
    pin_thread_pools(settings.scorer.model_threads)

    # deferred: the scorer's modules pull in MLflow, scikit-learn and pandas (seconds); --help, --show-config
    # and a bad setting answer without them.
    from consumer.core import compiled_trees
    from consumer.errors import ModelUnavailable, ScorerFatalError
    from consumer.service import ScorerService

    compiled_trees.configure(enabled=settings.scorer.compiled_trees, cache_dir=settings.scorer.compiled_trees_cache)
    service = ScorerService(settings)
    service.catch_stop_signals()
    try:
        service.start()
    except KeyboardInterrupt:  # a second stop signal while starting
        print("housing-scorer: stopped while starting", file=sys.stderr)
        service.stop()
        return 130
    except (ModelUnavailable, ScorerFatalError) as exc:
        print(f"housing-scorer: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        code = service.run_forever(None if args.no_admin_api else admin_app)
    except ScorerFatalError as exc:
        print(f"housing-scorer: {exc}", file=sys.stderr)
        service.stop()
        return 2
    if code:
        print(f"housing-scorer: stopped: {service.state.fatal_error}", file=sys.stderr)
    if service.loop is not None and service.loop.abandoned_clients:
        # A producer abandoned inside librdkafka (see TransactionalProducer.abandon) would block the
        # interpreter's teardown forever; everything else is flushed and closed by now.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

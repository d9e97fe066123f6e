"""``housing-scorer``: score housing records from Kafka with the registry's model; admin API beside it.

``--workers N`` (N > 1, or ``auto``: one per core) runs N such scorers as worker processes of one parent
(``consumer/supervisor/``) that forwards stop signals, restarts a worker that dies and serves one admin API.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from config.runtime import THREADED_FORMAT, configure_logging, pin_thread_pools
from config.settings import Settings, SettingsError, add_settings_arguments, settings_from_args
from consumer.supervisor.worker import stop_with_parent, write_report

if TYPE_CHECKING:
    from consumer.service import AdminApp, ScorerService


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="housing-scorer", description=__doc__)
    add_settings_arguments(parser)
    parser.add_argument("--no-admin-api", action="store_true", help="run the scoring loop only")
    parser.add_argument("--show-config", action="store_true", help="print the effective settings and exit")
    parser.add_argument("--workers", type=worker_count, default=1, metavar="N",
                        help="scoring worker processes under one parent (default 1: this process scores; auto: one "
                             "per core)")
    # Set by the parent of --workers N for each worker (consumer/supervisor/parent.py), not by hand.
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-report", default=None, help=argparse.SUPPRESS)
    return parser


def worker_count(text: str) -> int:
    """``--workers``: a positive number, or ``auto`` for the number of cores."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or auto, not {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 worker, not {count}")
    return count


def run_workers(args: argparse.Namespace, settings: Settings, argv: Sequence[str]) -> int:
    """The parent of ``--workers N``: N scorers as worker processes, one admin API (no model in this process)."""
    # deferred: aiohttp and prometheus_client, needed by the parent of --workers N only
    from consumer.supervisor.http import admin_server
    from consumer.supervisor.parent import Supervisor, worker_slots

    serve_api = not args.no_admin_api and settings.admin.enabled
    report_dir = Path(tempfile.mkdtemp(prefix="housing-scorer-workers-")) if serve_api else None
    # The parent's arguments, then "--workers 1" (the last occurrence wins, abbreviations included): each worker
    # is a plain scorer with the parent's settings.
    slots = worker_slots(args.workers, base_argv=[*argv, "--workers", "1"], instance_id=settings.scorer.instance_id,
                         report_dir=report_dir)
    supervisor = Supervisor(slots, stop_timeout=settings.scorer.shutdown_timeout + 30)
    logging.getLogger(__name__).info("starting %d workers: %s", args.workers,
                                     ", ".join(slot.instance_id for slot in slots))
    try:
        tls = None
        if serve_api and settings.admin.tls_cert:
            from admin_api.app import ssl_context  # deferred: only with TLS (it pulls in the scorer's modules)

            try:
                tls = ssl_context(settings)
            except SettingsError as exc:
                print(f"housing-scorer: bad configuration: {exc}", file=sys.stderr)
                return 2
        return supervisor.run(admin_server(settings, tls) if serve_api else None)
    finally:
        if report_dir is not None:
            shutil.rmtree(report_dir, ignore_errors=True)


def admin_app(service: ScorerService) -> AdminApp:
    """The admin API for ``service``: built here, the composition root, so the scorer never imports admin_api."""
    from admin_api.app import create_app, ssl_context  # deferred with the scorer's modules (see main)
    from consumer.service import AdminApp  # deferred with the scorer's modules (see main)

    return AdminApp(create_app(service.settings, state=service.state, service=service), ssl_context(service.settings))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
    if args.workers > 1:
        return run_workers(args, settings, argv)
    on_admin_listening: Callable[[str], None] | None = None
    if args.worker_index is not None:  # a worker of --workers N: it stops with its parent, reports its admin API
        stop_with_parent()
        if args.worker_report is not None:
            report, index = Path(args.worker_report), args.worker_index

            def on_admin_listening(url: str) -> None:
                write_report(report, index=index, url=url)
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
        code = service.run_forever(None if args.no_admin_api else admin_app, on_admin_listening=on_admin_listening)
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

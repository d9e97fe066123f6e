"""``housing-evaluate``: live accuracy: join outcomes to predictions, per model version and role.

Examples::

    housing-evaluate                              # housing.predictions + housing.outcomes, metrics on :5003
    housing-evaluate --evaluation-window 300 --evaluator-port 5013

Reads ``housing.predictions`` (read_committed) and ``housing.outcomes``, joins them by record id within
EVALUATION_WINDOW_SECONDS, and every EVALUATION_CHECKPOINT_SECONDS commits, in one transaction, the outcomes'
dead letters (``housing.outcomes.dlq``), its checkpoint (``housing.evaluator-checkpoints``) and its snapshot
(``housing.evaluation``, which GET /api/model/performance serves). Restarted (even after kill -9), it resumes from
its last checkpoint: no pair lost, none counted twice. Run one per EVALUATOR_ID.

Exit status: 0 stopped (SIGTERM, Ctrl-C: after a last checkpoint); 1 Kafka failed it (restart it: it resumes);
2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from config.runtime import configure_logging
from config.settings import SettingsError, add_settings_arguments, settings_from_args
from consumer.errors import ScorerError
from consumer.evaluation.run import Evaluator

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
SETTING_FLAGS = ("kafka.bootstrap_servers", "schema_registry_url", "topics.predictions", "topics.outcomes",
                 "topics.outcomes_dead_letter", "mlflow.tracking_uri", "model.name", "evaluation.evaluator_id",
                 "evaluation.window_seconds", "evaluation.port", "log_level")
"""The settings the evaluator reads from flags (every one of the table through env and the config file)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="housing-evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser, keys=SETTING_FLAGS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"housing-evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    evaluator = Evaluator(settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        evaluator.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        evaluator.run()
    except ScorerError as exc:
        print(f"housing-evaluate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

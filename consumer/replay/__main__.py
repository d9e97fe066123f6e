"""``housing-replay``: score a past range of the records topic with one pinned model version into another topic.

Examples::

    housing-replay --from 2024-05-01T10:00:00Z --to 2024-05-01T12:00:00Z --model-version 4 \\
        --output-topic housing.predictions.backfill-v4
    housing-replay --from earliest --to now --model-version 7 --output-topic housing.predictions.candidate-v7
    housing-replay --from 0:1200,1:1150 --to 0:5000,1:4980 --model-version 3 --output-topic replay-v3

The range is ``[--from, --to)``: ISO-8601 times (no zone: UTC), epoch milliseconds, ``offset:N`` (every
partition), ``P:N,P:N`` (per partition, only those partitions), ``earliest`` (--from) and ``now`` (--to, the
default). The output topic and its DLQ (``<output>.dlq`` unless --dlq-topic) must exist. The live scorers' group
is never used: progress is committed, in each transaction, to the replay group ``housing-replay.<output>``, so
running the same command again after a crash or Ctrl-C resumes where the last committed transaction ended.

Exit status: 0 done; 1 stopped part-way (run it again to resume); 2 bad arguments (a range that cannot be
parsed or is inverted, an unknown version, a missing topic, an unfinished different replay in the replay group);
3 Kafka, MLflow or the schema registry did not answer; 130 interrupted (run it again to resume).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from config.runtime import configure_logging, pin_thread_pools
from config.settings import SettingsError, add_settings_arguments, settings_from_args
from consumer.replay.errors import RangeError, ReplayError
from consumer.replay.range import NOW, parse_bound

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
SETTING_FLAGS = ("kafka.bootstrap_servers", "schema_registry_url", "topics.records", "mlflow.tracking_uri",
                 "model.name", "scorer.group_id", "scorer.batch_max_records", "scorer.model_threads", "log_level")
"""The settings a replay reads (the rest of the settings table does not concern it)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="housing-replay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    replay = parser.add_argument_group("replay")
    replay.add_argument("--from", dest="start", required=True, metavar="WHEN",
                        help="first record of the range (inclusive): time, epoch ms, offset:N, P:N,..., earliest")
    replay.add_argument("--to", dest="end", default=NOW, metavar="WHEN",
                        help="end of the range (exclusive): time, epoch ms, offset:N, P:N,..., now (default)")
    replay.add_argument("--model-version", required=True, metavar="N",
                        help="the registry version to score with (of MLFLOW_MODEL_NAME / --model-name)")
    replay.add_argument("--output-topic", required=True, metavar="TOPIC",
                        help="topic for the predictions (must exist; not the records topic)")
    replay.add_argument("--dlq-topic", default="", metavar="TOPIC",
                        help="topic for the dead letters (must exist; default <output-topic>.dlq)")
    replay.add_argument("--replay-group", default="", metavar="GROUP",
                        help="group the progress is committed to, and the transactional.id "
                        "(default housing-replay.<output-topic>; never the live SCORER_GROUP_ID)")
    replay.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    add_settings_arguments(parser, keys=SETTING_FLAGS)
    return parser


def _stop_on_sigterm() -> None:
    # SIGTERM ends the run like Ctrl-C: the open transaction is aborted, what was committed stays.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, replay, print the summary; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        start, end = parse_bound(args.start, "from"), parse_bound(args.end, "to")
        settings = settings_from_args(args)
    except (RangeError, SettingsError) as exc:
        print(f"housing-replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    pin_thread_pools(settings.scorer.model_threads)
    _stop_on_sigterm()

    # deferred: the replay pulls in MLflow, scikit-learn and pandas (seconds); --help and bad arguments answer
    # without them.
    from consumer.replay.run import Replay, ReplayRequest

    request = ReplayRequest(start=start, end=end, model_version=args.model_version, output_topic=args.output_topic,
                            dlq_topic=args.dlq_topic, replay_group=args.replay_group,
                            progress=sys.stderr.isatty() if args.progress is None else args.progress)
    try:
        summary = Replay(settings, request).run()
    except ReplayError as exc:
        print(f"housing-replay: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("housing-replay: interrupted before the first transaction; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.text(), flush=True)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

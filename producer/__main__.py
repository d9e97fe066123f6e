"""``housing-produce``: publish housing records to Kafka from the CSV, a synthetic generator or stdin.

Examples::

    housing-produce                                   # the whole CSV once, JSON, as fast as possible
    housing-produce --source synthetic --rate 1000    # 1,000 records/s until Ctrl-C
    housing-produce --loop --count 100000 --format avro --bad-fraction 0.05
    housing-produce --outcomes --outcome-delay 5s..60s --outcome-fraction 0.8   # true values, later
    jq -c . records.jsonl | housing-produce --source stdin

Exit status: 0 all delivered; 1 some messages not delivered (how many and why is printed);
2 bad arguments or settings; 3 the broker (or schema registry) could not be used; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

from config.runtime import configure_logging
from config.settings import SettingsError, add_settings_arguments, settings_from_args
from producer.outcomes import OutcomeSchedule, csv_actuals, parse_delay_range
from producer.publish import (
    DEFAULT_CONNECT_TIMEOUT,
    BrokerUnavailableError,
    PublishError,
    make_encoder,
    make_outcome_encoder,
    producer_config,
    publish,
)
from producer.records import (
    DEFAULT_CSV_PATH,
    Record,
    SourceError,
    csv_records,
    inject_bad,
    stdin_records,
    synthetic_records,
    with_ids,
)

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NOT_DELIVERED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="housing-produce",
        description="Publish California-housing records to Kafka (JSON or Avro), optionally paced and "
        "with malformed records mixed in on purpose.",
    )
    source = parser.add_argument_group("source")
    source.add_argument("--source", choices=("csv", "synthetic", "stdin"), default="csv",
                        help="where records come from (default: csv); stdin reads JSON lines")
    source.add_argument("--csv", dest="csv_path", default=str(DEFAULT_CSV_PATH), metavar="PATH",
                        help="CSV with the dataset's header (default: data/housing.csv)")
    source.add_argument("--loop", action="store_true",
                        help="repeat the CSV until --count or Ctrl-C (synthetic never ends)")
    source.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed for the synthetic generator and bad-record placement (default: 0)")
    source.add_argument("--start-id", type=int, default=0, metavar="N",
                        help="first record id number: rec-<n> (default: 0)")

    sending = parser.add_argument_group("sending")
    sending.add_argument("--format", choices=("json", "avro"), default="json",
                         help="json (default) or avro: Confluent wire format when a schema registry URL "
                         "is set, single-object encoding otherwise")
    sending.add_argument("--rate", type=float, default=0.0, metavar="PER_SECOND",
                         help="records per second; 0 = as fast as possible (default)")
    sending.add_argument("--count", type=int, default=None, metavar="N",
                         help="stop after this many messages (good + bad)")
    sending.add_argument("--bad-fraction", type=float, default=0.0, metavar="F",
                         help="share of messages that are malformed on purpose, 0..1 (keys bad-<kind>-<n>)")
    sending.add_argument("--topic", dest="setting__topics__records", default=None, metavar="TOPIC",
                         help="topic to publish to (env TOPIC_RECORDS; default housing.records)")
    sending.add_argument("--compression", default="lz4", choices=("lz4", "none", "zstd", "snappy", "gzip"),
                         help="producer compression (default: lz4)")
    sending.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                         help="give up if the broker does not answer within this many seconds "
                         f"(default: {DEFAULT_CONNECT_TIMEOUT:g})")
    sending.add_argument("--delivery-timeout", type=float, default=60.0, metavar="SECONDS",
                         help="a message not acknowledged within this counts as failed (default: 60)")
    sending.add_argument("--keep-going", action="store_true",
                         help="keep sending after a delivery failure (default: stop at the first, flush, exit 1)")
    sending.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="progress bar on stderr (default: when stderr is a terminal)")
    outcomes = parser.add_argument_group("outcomes (the true values, later; --source csv)")
    outcomes.add_argument("--outcomes", action="store_true",
                          help="also publish each record's outcome (its median_house_value) to the outcomes topic, "
                          "delayed, keyed by record id (the run ends once the last one is out)")
    outcomes.add_argument("--outcome-delay", default="5s..60s", metavar="LOW..HIGH",
                          help="delay after the record, uniform between LOW and HIGH (5s, 500ms, 2m; one value: "
                          "fixed); default 5s..60s")
    outcomes.add_argument("--outcome-fraction", type=float, default=1.0, metavar="F",
                          help="share of records that get an outcome, 0..1 (default 1)")
    add_settings_arguments(parser, keys=("kafka.bootstrap_servers", "schema_registry_url", "topics.outcomes",
                                         "log_level"))
    return parser


def _records(args: argparse.Namespace) -> Iterator[Record]:
    if args.source == "synthetic":
        return synthetic_records(args.seed)
    if args.source == "stdin":
        return stdin_records(sys.stdin.buffer)
    return csv_records(args.csv_path, loop=args.loop)


def _configure_logging(level: str) -> None:
    configure_logging(level)
    # librdkafka repeats connection errors many times a second; the publisher reports the cause once.
    logging.getLogger("producer.librdkafka").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


def _stop_on_sigterm() -> None:
    # SIGTERM (docker stop, a supervisor) ends the run like Ctrl-C: stop sending, flush, summarise.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, build settings, publish, print a summary; returns the exit status."""
    _stop_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.loop and args.source == "stdin":
        parser.error("--loop cannot repeat stdin")
    if args.rate < 0:
        parser.error("--rate must be >= 0")
    if args.count is not None and args.count < 0:
        parser.error("--count must be >= 0")
    if args.delivery_timeout <= 0 or args.connect_timeout <= 0:
        parser.error("--delivery-timeout and --connect-timeout must be > 0")
    if not 0.0 <= args.bad_fraction <= 1.0:
        parser.error("--bad-fraction must be between 0 and 1")
    if not 0.0 <= args.outcome_fraction <= 1.0:
        parser.error("--outcome-fraction must be between 0 and 1")
    try:
        outcome_delay = parse_delay_range(args.outcome_delay)
    except ValueError as exc:
        parser.error(f"--outcome-delay: {exc}")
    if args.outcomes and args.source != "csv":
        parser.error("--outcomes needs --source csv: only the dataset holds the true values")
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"housing-produce: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(settings.log_level)

    topic = settings.topics.records
    servers = settings.kafka.bootstrap_servers
    if args.bad_fraction > 0 and args.compression == "none":
        logger.warning("--compression none: the corpus's 1 MiB bad records exceed the broker's default "
                       "message size and will fail delivery; lz4 lets them through")
    try:
        encode = make_encoder(args.format, schema_registry_url=settings.schema_registry_url)
        records = with_ids(_records(args), args.start_id)
        schedule = None
        if args.outcomes:
            schedule = OutcomeSchedule(
                topic=settings.topics.outcomes, fraction=args.outcome_fraction, delay=outcome_delay,
                encode=make_outcome_encoder(args.format, schema_registry_url=settings.schema_registry_url),
                seed=args.seed)
            records = schedule.attach(records, csv_actuals(args.csv_path, loop=args.loop))
        messages = inject_bad(records, args.bad_fraction, args.seed, first_bad_id=args.start_id)
        config = producer_config(settings.kafka.client_config(), compression_type=args.compression,
                                 message_timeout_ms=max(1, int(args.delivery_timeout * 1000)))
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        logger.info("publishing %s records to %s at %s (%s%s)", args.source, topic, servers, args.format,
                    f", {args.rate:g}/s" if args.rate else ", unpaced")
        report = publish(messages, config=config, topic=topic, rate=args.rate, count=args.count,
                         progress=progress, encode=encode, connect_timeout=args.connect_timeout,
                         flush_timeout=args.delivery_timeout + 10.0, stop_on_error=not args.keep_going,
                         outcomes=schedule)
    except BrokerUnavailableError as exc:
        print(f"housing-produce: cannot reach Kafka at {servers}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PublishError as exc:
        print(f"housing-produce: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        print("housing-produce: interrupted before sending", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SourceError as exc:
        # Raised while reading the source, after some messages may already have gone out.
        print(f"housing-produce: {exc}", file=sys.stderr)
        return EXIT_USAGE

    print(report.summary(), flush=True)
    if schedule is not None:
        print(schedule.summary(), flush=True)
        if schedule.failed:
            print(f"housing-produce: {schedule.failed} outcomes not delivered: {schedule.errors}", file=sys.stderr)
            return EXIT_NOT_DELIVERED
    if not report.ok:
        print(f"housing-produce: {report.failure_message()}", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    return EXIT_INTERRUPTED if report.interrupted else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

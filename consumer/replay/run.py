"""One replay: check the request, load the pinned version, resolve the range, resume from the replay's own
progress, then read, score and write batch after batch, each batch in one transaction.

The scoring is the live scorer's (``score_batch``: same validation, dead-letter reasons, encodings, outputs too
large); the model comes from the registry through ``ModelLoader`` (resolved by version, loaded and checked); the
Kafka clients are the scorer's configs (consumer/kafka/replay_io.py). The live group is never named to Kafka: the
reader assigns partitions itself and offsets go to the replay group only.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from tqdm import tqdm

from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchResult, score_batch
from consumer.errors import MlflowUnavailable, ModelError
from consumer.kafka.oversize import max_output_bytes
from consumer.kafka.replay_io import (
    RangeReader,
    ReplayKafkaError,
    ReplayWriter,
    TransactionAborted,
    topic_partition_counts,
)
from consumer.models.loader import ModelLoader
from consumer.replay.errors import ReplayError, ReplayUnavailable, ReplayUsageError
from consumer.replay.progress import Committed, Marker, ReplayJob, ResumePlan, plan_resume
from consumer.replay.range import Bound, ResolvedRange, check_order, resolve_range
from schemas.codecs import PredictionEncoder, RecordDecoder, registry_client
from schemas.errors import RegistryUnavailableError

logger = logging.getLogger(__name__)

REPLAY_GROUP_PREFIX = "housing-replay."
DLQ_SUFFIX = ".dlq"
HEADER_REPLAY_GROUP = "replay.group"
"""Added to every replay output (predictions and dead letters): which replay wrote it."""
MAX_ABORTS_IN_A_ROW = 3
"""Transactions aborted one after another (each batch read again) before the replay stops (resumable)."""
POLL_SECONDS = 0.5
WAITING_WARNING_SECONDS = 30.0


def default_replay_group(output_topic: str) -> str:
    """``housing-replay.<output topic>``: the group the progress is committed to, and the transactional.id."""
    return REPLAY_GROUP_PREFIX + output_topic


def default_dlq_topic(output_topic: str) -> str:
    """``<output topic>.dlq``: the replay's dead letters stay beside its predictions, out of the live DLQ."""
    return output_topic + DLQ_SUFFIX


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay; topics and the model name come from the settings."""

    start: Bound
    end: Bound
    model_version: str
    output_topic: str
    dlq_topic: str = ""
    """Default ``<output_topic>.dlq``."""
    replay_group: str = ""
    """Default ``housing-replay.<output_topic>``."""
    progress: bool = False
    """Show a progress bar on stderr."""

    def __post_init__(self) -> None:
        if not self.dlq_topic:
            object.__setattr__(self, "dlq_topic", default_dlq_topic(self.output_topic))
        if not self.replay_group:
            object.__setattr__(self, "replay_group", default_replay_group(self.output_topic))


def check_request(settings: Settings, request: ReplayRequest) -> None:
    """The checks that need no broker.

    :raises ReplayUsageError: a topic used twice, the live group as the replay group, an empty version, or
        ``--from`` after ``--to`` (two times).
    """
    records = settings.topics.records
    if not request.model_version.strip().isdigit():
        raise ReplayUsageError(f"--model-version {request.model_version!r}: a registry version number, e.g. 3")
    for flag, topic in (("--output-topic", request.output_topic), ("--dlq-topic", request.dlq_topic)):
        if topic == records:
            raise ReplayUsageError(f"{flag} {topic!r} is the records topic being replayed: the replay would read "
                                   "its own output")
    if request.output_topic == request.dlq_topic:
        raise ReplayUsageError(f"--output-topic and --dlq-topic are both {request.output_topic!r}: give the dead "
                               "letters their own topic")
    if request.replay_group == settings.scorer.group_id:
        raise ReplayUsageError(f"--replay-group {request.replay_group!r} is the live scorers' group "
                               "(SCORER_GROUP_ID): the replay would move their offsets")
    check_order(request.start, request.end)


@dataclass
class ReplaySummary:
    """What a replay did, for the last line it prints."""

    input_topic: str
    output_topic: str
    dlq_topic: str
    replay_group: str
    model: str = ""
    range: str = ""
    records: int = 0
    """Input records read and scored in this run (committed)."""
    predictions: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    """By reason."""
    transactions: int = 0
    seconds: float = 0.0
    already_replayed: int = 0
    """Offsets of the range an earlier run of the same replay had committed (resumed after them)."""
    interrupted: bool = False

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: BatchResult | None, records: int) -> None:
        self.transactions += 1
        self.records += records
        if result is not None:
            self.predictions += len(result.scored)
            self.dead_letters.update(r.reason for r in result.rejected)

    def text(self) -> str:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(self.dead_letters.items()))
        lines = [f"replayed {self.records:,} records of {self.input_topic} ({self.range}) with {self.model} into "
                 f"{self.output_topic}: {self.predictions:,} predictions, {self.dead_lettered:,} dead letters to "
                 f"{self.dlq_topic}{f' ({reasons})' if reasons else ''}; {self.seconds:.1f} s, {self.rate:,.0f} "
                 f"records/s, {self.transactions:,} transactions (replay group {self.replay_group})"]
        if self.already_replayed:
            lines.append(f"resumed: {self.already_replayed:,} offsets of the range were committed by an earlier run "
                         "of this replay and not scored again")
        if self.interrupted:
            lines.append("interrupted: what was committed stays; run the same command again to resume")
        return "\n".join(lines)


BatchCommitted = Callable[[ReplaySummary], None]
"""Told after each committed transaction (tests stop a replay part-way with it)."""


class Replay:
    """One run of ``housing-replay``."""

    def __init__(self, settings: Settings, request: ReplayRequest, *, loader: ModelLoader | None = None,
                 progress_file: TextIO | None = None) -> None:
        self.settings = settings
        self.request = request
        self._loader = loader
        self._progress_file = progress_file or sys.stderr
        self.summary = ReplaySummary(settings.topics.records, request.output_topic, request.dlq_topic,
                                     request.replay_group)

    def run(self, on_committed: BatchCommitted | None = None) -> ReplaySummary:
        """Replay the range; returns the summary (``interrupted`` after Ctrl-C).

        :raises ReplayError: a bad request (``ReplayUsageError``), something unreachable (``ReplayUnavailable``),
            or a failure part-way (what was committed stays; the same command resumes).
        """
        settings, request = self.settings, self.request
        check_request(settings, request)
        partitions = self._check_topics()
        handle = self._load_model()
        self.summary.model = f"{handle.name} v{handle.version}"
        reader = RangeReader(settings, settings.topics.records, request.replay_group)
        writer: ReplayWriter | None = None
        try:
            resolved = self._resolve(reader, partitions)
            self.summary.range = resolved.describe()
            for note in resolved.notes:
                logger.warning("%s", note)
            job = ReplayJob(request.output_topic, handle.name, handle.version)
            writer = ReplayWriter(settings, request.replay_group, request.output_topic, request.dlq_topic)
            try:
                writer.init()  # first: fences a crashed replay and aborts its open transaction
                committed = reader.committed([r.partition for r in resolved.ranges])
            except ReplayKafkaError as exc:
                raise self._kafka_error(exc) from exc
            plan = plan_resume(resolved.ranges, job, {p: Committed(o, m) for p, (o, m) in committed.items()},
                               request.replay_group)
            self.summary.already_replayed = plan.already_replayed
            self._replay(reader, writer, handle, resolved, job, plan, on_committed)
        finally:
            if writer is not None:
                writer.close()
            reader.close()
        return self.summary

    # --- before the first record ---------------------------------------------------------------------
    def _check_topics(self) -> int:
        topics = [self.settings.topics.records, self.request.output_topic, self.request.dlq_topic]
        try:
            counts = topic_partition_counts(self.settings, topics)
        except ReplayKafkaError as exc:
            raise self._kafka_error(exc) from exc
        missing = [topic for topic in topics if counts[topic] is None]
        if missing:
            raise ReplayUsageError(
                f"topic(s) {', '.join(missing)} do not exist on {self.settings.kafka.bootstrap_servers}: create them "
                f"first (the output and its DLQ, e.g. with as many partitions as {topics[0]}), or fix "
                "--input-topic / --output-topic / --dlq-topic")
        partitions = counts[topics[0]]
        assert partitions is not None
        return partitions

    def _load_model(self) -> ModelHandle:
        loader = self._loader
        version = self.request.model_version.strip()
        try:
            loader = loader or ModelLoader(self.settings)
            resolved = loader.resolve(version=version)
            return loader.load(resolved)
        except MlflowUnavailable as exc:
            raise ReplayUnavailable(str(exc)) from exc
        except ModelError as exc:
            raise ReplayUsageError(f"--model-version {version}: {exc}") from exc

    def _resolve(self, reader: RangeReader, partitions: int) -> ResolvedRange:
        cache: dict[int, dict[int, int | None]] = {}

        def offsets_for_time(ms: int) -> dict[int, int | None]:
            if ms not in cache:
                cache[ms] = reader.offsets_for_time(list(range(partitions)), ms)
            return cache[ms]

        try:
            return resolve_range(self.request.start, self.request.end, reader.watermarks(partitions),
                                 offsets_for_time)
        except ReplayKafkaError as exc:
            raise self._kafka_error(exc) from exc

    @staticmethod
    def _kafka_error(exc: ReplayKafkaError) -> ReplayError:
        return ReplayUnavailable(str(exc)) if exc.retriable else ReplayError(str(exc))

    # --- the records ---------------------------------------------------------------------------------
    def _replay(self, reader: RangeReader, writer: ReplayWriter, handle: ModelHandle, resolved: ResolvedRange,
                job: ReplayJob, plan: ResumePlan, on_committed: BatchCommitted | None) -> None:
        settings, summary = self.settings, self.summary
        registry = registry_client(settings.schema_registry_url)
        decoder = RecordDecoder(registry, max_bytes=settings.scorer.max_message_bytes)
        encoder = PredictionEncoder(registry, subject=f"{self.request.output_topic}-value")
        output_limit = max_output_bytes(settings)
        markers = {r.partition: Marker(job, r.start, r.end).encode() for r in resolved.ranges}
        ends = {r.partition: r.end for r in resolved.ranges}
        committed = dict(plan.positions)
        tag = (HEADER_REPLAY_GROUP, self.request.replay_group.encode())
        remaining = sum(ends[p] - committed[p] for p in ends)
        logger.info("replaying %s (%s, %d offsets%s) with %s into %s, dead letters to %s, replay group %s",
                    settings.topics.records, resolved.describe(), remaining,
                    f"; resuming after {plan.already_replayed} already replayed" if plan.resumed else "",
                    summary.model, self.request.output_topic, self.request.dlq_topic, self.request.replay_group)
        reader.start(committed, ends)
        bar = tqdm(total=remaining, unit="rec", unit_scale=True, disable=not self.request.progress,
                   file=self._progress_file, mininterval=0.5, smoothing=0.3, desc=f"replay v{handle.version}")
        started = time.monotonic()
        aborts = 0
        quiet_since = time.monotonic()
        try:
            while not reader.finished:
                batch = reader.next_batch(settings.scorer.batch_max_records, POLL_SECONDS)
                advanced = {p: (reader.positions[p], markers[p]) for p in ends if reader.positions[p] != committed[p]}
                if not batch and not advanced:
                    if time.monotonic() - quiet_since > WAITING_WARNING_SECONDS:
                        logger.warning("no records for %.0f s before the end of the range (an open upstream "
                                       "transaction holds it back?); still waiting", time.monotonic() - quiet_since)
                        quiet_since = time.monotonic()
                    continue
                quiet_since = time.monotonic()
                result: BatchResult | None = None
                if batch:
                    try:
                        result = score_batch(batch, handle, decoder=decoder, encoder=encoder,
                                             max_output_bytes=output_limit, refused=writer.refused.positions())
                    except RegistryUnavailableError as exc:
                        raise ReplayUnavailable(f"schema registry unavailable: {exc}") from exc
                    for scored in result.scored:
                        scored.headers.append(tag)
                    for rejected in result.rejected:
                        rejected.headers.append(tag)
                try:
                    writer.write(result, advanced, settings.topics.records, reader.group_metadata())
                except TransactionAborted as exc:
                    aborts += 1
                    if aborts >= MAX_ABORTS_IN_A_ROW:
                        raise ReplayError(f"{aborts} transactions in a row were aborted ({exc}); committed so far: "
                                          f"{self._describe(committed)}; run the same command to resume") from exc
                    logger.warning("%s; reading the batch again", exc)
                    reader.rewind(committed)
                    continue
                except ReplayKafkaError as exc:
                    raise ReplayError(f"{exc}; committed so far: {self._describe(committed)}; run the same command "
                                      "to resume") from exc
                aborts = 0
                committed.update({p: offset for p, (offset, _) in advanced.items()})
                summary.add(result, len(batch))
                bar.update(len(batch))
                if on_committed is not None:
                    on_committed(summary)
        except KeyboardInterrupt:
            writer.abort()
            summary.interrupted = True
        finally:
            summary.seconds = time.monotonic() - started
            bar.close()

    @staticmethod
    def _describe(positions: dict[int, int]) -> str:
        return ", ".join(f"{p}:{offset}" for p, offset in sorted(positions.items()))

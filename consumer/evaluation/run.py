"""The evaluator's loop: resume from the last checkpoint, read predictions and outcomes, join, checkpoint.

Reading: two readers (consumer.kafka.evaluation_io), each topic from the checkpoint's positions (or the start
policy). The reader whose event time is behind is read first, so a backlog is merged in time order and the
pending rows stay bounded by the window, however fast it is read. The watermark (the join's clock) is the
slower input's event time; an input that has caught up counts as now.

The deciding evaluator (``AUTO_PROMOTE`` or ``CANARY_DRY_RUN``) also reads the scorers' dead letters
(``TOPIC_DEAD_LETTER``) and keeps the canary's health (``consumer.evaluation.health``: failures and non-finite
predictions from the dead letters, prediction drift from the predictions it reads anyway) for the gate; those
counts and the dead-letter positions are in the checkpoint too.

Every ``EVALUATION_CHECKPOINT_SECONDS`` one transaction commits the outcomes' dead letters written since the
previous one, the checkpoint (stats, counts, positions, pending offsets) and the snapshot. A crash loses only
the open transaction; the restart reads back from the checkpoint (``checkpoint.Resume``). A commit that fails
stops the evaluator (exit 1): its memory is ahead of the last checkpoint, and a restart resumes from that.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from config.settings import Settings
from consumer.evaluation.checkpoint import SIDES, Checkpoint, CheckpointError, Resume
from consumer.evaluation.decider import CanaryDecider, state_key
from consumer.evaluation.gates import Health
from consumer.evaluation.health import HealthStats
from consumer.evaluation.http import EvaluatorHttp
from consumer.evaluation.join import Joiner, ObservedOutcome, ScoredPrediction
from consumer.evaluation.metrics import EvaluatorMetrics
from consumer.evaluation.mlflow_log import LiveMetricsLogger
from consumer.evaluation.snapshot import build_snapshot
from consumer.evaluation.stats import LiveStats
from consumer.kafka.evaluation_io import (
    EvaluationKafkaError,
    EvaluationWriter,
    InputMessage,
    InputReader,
    Start,
    latest_values,
)
from schemas.clock import now_ms
from schemas.codecs import decode_prediction, registry_client
from schemas.errors import SchemaError
from schemas.outcomes import OutcomeDecoder, OutcomeError

logger = logging.getLogger(__name__)

POLL_MESSAGES = 2000
POLL_SECONDS = 0.1
STAGE_DECODE = "decode"
STAGE_JOIN = "join"


def prediction_of(fields: Mapping[str, Any], partition: int, offset: int) -> ScoredPrediction:
    """A decoded Prediction -> what the join needs; ``role`` from the message (default champion).

    :raises ValueError: a field of the wrong type.
    """
    shadow = fields.get("shadow_prediction")
    shadow_version = fields.get("shadow_model_version")
    scored_at = fields["scored_at"]
    if type(scored_at) is not int:
        raise ValueError(f"scored_at is {type(scored_at).__name__}")
    return ScoredPrediction(
        record_id=str(fields["record_id"]), prediction=float(fields["prediction"]),
        model_version=str(fields["model_version"]), role=str(fields.get("role") or "champion"),
        scored_at=scored_at, shadow_prediction=None if shadow is None else float(shadow),
        shadow_model_version=None if shadow_version is None else str(shadow_version),
        partition=partition, offset=offset)


class Evaluator:
    """One evaluator process's state and loop.

    :param serve_http: start /metrics, /performance, /health on ``EVALUATOR_HOST:EVALUATOR_PORT``.
    :param log_to_mlflow: log live metrics to the versions' runs every ``EVALUATION_MLFLOW_SECONDS``.
    """

    def __init__(self, settings: Settings, *, serve_http: bool = True, log_to_mlflow: bool = True) -> None:
        self.settings = settings
        evaluation = settings.evaluation
        self.stats = LiveStats(int(evaluation.window_seconds * 1000), int(evaluation.bucket_seconds * 1000))
        self.joiner = Joiner(self.stats, int(evaluation.window_seconds * 1000), evaluation.max_pending)
        self.dead_lettered: Counter[str] = Counter()
        self.bad_predictions = 0
        self.metrics = EvaluatorMetrics()
        self.snapshot: dict[str, Any] | None = None
        self.stopping = threading.Event()
        self.started_at = time.monotonic()
        self._decoder = OutcomeDecoder(registry_client(settings.schema_registry_url))
        self._registry = registry_client(settings.schema_registry_url)
        self._prediction_time = 0
        self._outcome_time = 0
        self._serve_http = serve_http
        self._mlflow: LiveMetricsLogger | None = None
        if log_to_mlflow and evaluation.mlflow_seconds > 0 and settings.mlflow.enabled:
            self._mlflow = LiveMetricsLogger(settings.mlflow.tracking_uri, settings.model.name)
        self._http: EvaluatorHttp | None = None
        self._resume = Resume(None)
        self.decider: CanaryDecider | None = None
        # The canary's failures and prediction drift: kept only by a deciding evaluator (the gate's input).
        self.health_stats: HealthStats | None = None
        self.dead_letter_reader: InputReader | None = None
        if settings.mlflow.enabled and (settings.canary.auto_promote or settings.canary.dry_run):
            self.decider = CanaryDecider(settings, lambda: _registry_client(settings))
            self.health_stats = HealthStats(int(evaluation.window_seconds * 1000),
                                            int(evaluation.bucket_seconds * 1000))

    # --- start ---------------------------------------------------------------------------------------------

    def topics(self) -> dict[str, str]:
        return {"predictions": self.settings.topics.predictions, "outcomes": self.settings.topics.outcomes}

    def load_checkpoint(self) -> Checkpoint | None:
        """The last committed checkpoint of this evaluator id, or None (a first start, or other topics)."""
        evaluation = self.settings.evaluation
        values = latest_values(self.settings, self.settings.topics.evaluator_checkpoints, timeout=60.0,
                               purpose="evaluator-resume")
        if self.decider is not None:  # the canary decisions taken, kept beside the checkpoint
            self.decider.restore(values.get(state_key(evaluation.evaluator_id)))
        raw = values.get(evaluation.evaluator_id)
        if raw is None:
            logger.info("no checkpoint for evaluator %s: starting at the %s offsets", evaluation.evaluator_id,
                        evaluation.start)
            return None
        try:
            checkpoint = Checkpoint.decode(raw)
        except CheckpointError as exc:
            logger.error("the checkpoint of evaluator %s cannot be read (%s): starting without it",
                         evaluation.evaluator_id, exc)
            return None
        if checkpoint.topics != self.topics():
            logger.warning("the checkpoint of evaluator %s is of other topics (%s): starting without it",
                           evaluation.evaluator_id, checkpoint.topics)
            return None
        return checkpoint

    def restore(self, checkpoint: Checkpoint) -> None:
        self.stats.restore(checkpoint.stats)
        self.joiner.counts = Counter({(k, v, r): n for k, v, r, n in checkpoint.counts})
        self.joiner.matched = checkpoint.matched
        self.joiner.watermark = checkpoint.watermark
        self.dead_lettered = Counter(checkpoint.dead_lettered)
        self.bad_predictions = checkpoint.bad_predictions
        if self.health_stats is not None:
            self.health_stats.restore(checkpoint.health)
        self._resume = Resume(checkpoint)
        logger.info("resuming evaluator %s from its checkpoint of %d (watermark %d): %d pairs matched, %d rows "
                    "pending to read back", checkpoint.evaluator_id, checkpoint.written_at, checkpoint.watermark,
                    checkpoint.matched, self._resume.restores_left)

    def open(self) -> None:
        """Resume (or start), open the readers and the writer, start HTTP and the MLflow logger."""
        checkpoint = self.load_checkpoint()
        if checkpoint is not None:
            self.restore(checkpoint)
        start = self.settings.evaluation.start
        topics = self.topics()
        self.readers = {}
        for side, topic in topics.items():
            offsets = {}
            if checkpoint is not None:
                for partition in checkpoint.next_offsets.get(side, {}):
                    first = self._resume.start_offset(side, partition)
                    if first is not None:
                        offsets[partition] = first
            self.readers[side] = self.open_reader(topic, offsets, start)
        if checkpoint is not None:
            # The readers begin at the oldest pending rows; what a checkpoint records is where reading goes on.
            for side, reader in self.readers.items():
                for partition, following in checkpoint.next_offsets.get(side, {}).items():
                    if partition in reader.next_offsets:
                        reader.next_offsets[partition] = max(reader.next_offsets[partition], following)
        if self.health_stats is not None:
            self.dead_letter_reader = self.open_dead_letter_reader(self.health_stats.dead_letter_offsets, start)
        self.writer = self.open_writer()
        if self._serve_http:
            evaluation = self.settings.evaluation
            self._http = EvaluatorHttp(evaluation.host, evaluation.port, self.metrics.registry,
                                       lambda: self.snapshot, self.health)
            logger.info("evaluator metrics on http://%s:%d/metrics", evaluation.host, self._http.port)
        if self._mlflow is not None:
            self._mlflow.start()

    def open_reader(self, topic: str, start: Mapping[int, int], default_start: Start) -> InputReader:
        """The reader of one input topic from ``start`` (a seam: the unit tests give a list of messages)."""
        return InputReader(self.settings, topic, start, default_start)

    def open_dead_letter_reader(self, start: Mapping[int, int], default_start: Start) -> InputReader | None:
        """The reader of the scorers' dead letters (the canary's failures), or None when that topic is missing:
        the gate then judges the canary without its failures (logged)."""
        topic = self.settings.topics.dead_letter
        try:
            return InputReader(self.settings, topic, start, default_start, with_headers=True)
        except EvaluationKafkaError as exc:
            logger.warning("the canary gate cannot read the scorers' dead letters (%s): it decides without the "
                           "canary's failure rate and non-finite predictions", exc)
            return None

    def open_writer(self) -> EvaluationWriter:
        """The transactional writer of dead letters, checkpoints and snapshots (a seam, like ``open_reader``)."""
        return EvaluationWriter(self.settings)

    @property
    def http_port(self) -> int | None:
        return self._http.port if self._http else None

    # --- loop ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stopping`` is set: read, join, checkpoint; a last checkpoint on the way out."""
        self.open()
        try:
            interval = self.settings.evaluation.checkpoint_seconds
            mlflow_interval = self.settings.evaluation.mlflow_seconds
            next_checkpoint = time.monotonic() + interval
            next_mlflow = time.monotonic() + mlflow_interval
            self.checkpoint()
            while not self.stopping.is_set():
                self.step()
                now = time.monotonic()
                if now >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = now + interval
                    if self._mlflow is not None and now >= next_mlflow and self.snapshot is not None:
                        self._mlflow.offer(self.snapshot)
                        next_mlflow = now + mlflow_interval
            self.checkpoint()
            if self._mlflow is not None and self.snapshot is not None:
                self._mlflow.offer(self.snapshot)
        finally:
            self.close()

    def step(self) -> int:
        """Read one batch from the input that is behind, join it, dead-letter what fell out; messages read."""
        predictions, outcomes = self.readers["predictions"], self.readers["outcomes"]
        if predictions.caught_up and outcomes.caught_up:
            read = self._read_predictions(predictions.poll(POLL_MESSAGES, POLL_SECONDS / 2))
            read += self._read_outcomes(outcomes.poll(POLL_MESSAGES, POLL_SECONDS / 2))
        elif outcomes.caught_up or (not predictions.caught_up and self._prediction_time <= self._outcome_time):
            read = self._read_predictions(predictions.poll(POLL_MESSAGES, POLL_SECONDS))
        else:
            read = self._read_outcomes(outcomes.poll(POLL_MESSAGES, POLL_SECONDS))
        if self.dead_letter_reader is not None:
            self._read_dead_letters(self.dead_letter_reader.poll(POLL_MESSAGES, 0))
        wall = now_ms()
        prediction_clock = wall if predictions.caught_up else self._prediction_time
        outcome_clock = wall if outcomes.caught_up else self._outcome_time
        watermark = min(prediction_clock, outcome_clock)
        if watermark > 0:
            self.joiner.advance(watermark)
        self._write_dead_letters()
        return read

    def _read_predictions(self, messages: list[InputMessage]) -> int:
        rows = []
        latest = self._prediction_time
        health = self.health_stats
        for message in messages:
            verdict = self._resume.classify("predictions", message.partition, message.offset)
            if verdict == "skip":
                continue
            try:
                row = prediction_of(decode_prediction(message.value or b"", self._registry), message.partition,
                                    message.offset)
            except (SchemaError, KeyError, ValueError, TypeError) as exc:
                self.bad_predictions += 1
                if self.bad_predictions == 1 or self.bad_predictions % 1000 == 0:
                    logger.warning("unreadable prediction at %s[%d]@%d (%d so far): %s",
                                   self.settings.topics.predictions, message.partition, message.offset,
                                   self.bad_predictions, exc)
                continue
            rows.append(row)
            if health is not None and verdict == "new":  # a restored row was counted before the checkpoint
                health.add_prediction(row.model_version, row.role, row.prediction, row.scored_at)
            if row.scored_at > latest:
                latest = row.scored_at
        self._prediction_time = latest
        self.joiner.add_predictions(rows)
        return len(messages)

    def _read_outcomes(self, messages: list[InputMessage]) -> int:
        rows = []
        latest = self._outcome_time
        for message in messages:
            if self._resume.classify("outcomes", message.partition, message.offset) == "skip":
                continue
            try:
                outcome = self._decoder.decode(message.value)
            except OutcomeError as exc:
                self.dead_lettered[exc.reason] += 1
                self.writer.dead_letter(key=message.key, value=message.value, reason=exc.reason, message=exc.message,
                                        stage=STAGE_DECODE, source_partition=message.partition,
                                        source_offset=message.offset)
                continue
            rows.append(ObservedOutcome(outcome, message.partition, message.offset, message.key,
                                        message.value or b""))
            if outcome.observed_at > latest:
                latest = outcome.observed_at
        self._outcome_time = latest
        self.joiner.add_outcomes(rows)
        return len(messages)

    def _read_dead_letters(self, messages: list[InputMessage]) -> None:
        """The scorers' dead letters: the predict-stage ones count against the version that failed."""
        health, reader = self.health_stats, self.dead_letter_reader
        assert health is not None and reader is not None
        for message in messages:
            health.add_dead_letter(message.headers, message.timestamp)
        health.dead_letter_offsets = dict(reader.next_offsets)

    def _write_dead_letters(self) -> None:
        for dead in self.joiner.take_dead_letters():
            self.dead_lettered[dead.reason] += 1
            self.writer.dead_letter(key=dead.key, value=dead.value, reason=dead.reason, message=dead.message,
                                    stage=STAGE_JOIN, source_partition=dead.partition, source_offset=dead.offset)

    def checkpoint(self) -> None:
        """Commit the dead letters so far with the checkpoint and the snapshot; update the metrics."""
        predictions, outcomes = self.joiner.pending_offsets()
        if self._resume.restores_left:
            for side, pending in (("predictions", predictions), ("outcomes", outcomes)):
                for partition, offsets in self._resume.not_read_back(side).items():
                    pending[partition] = sorted(pending.get(partition, []) + offsets)
        checkpoint = Checkpoint(
            evaluator_id=self.settings.evaluation.evaluator_id, written_at=now_ms(), watermark=self.joiner.watermark,
            topics=self.topics(),
            next_offsets={side: dict(reader.next_offsets) for side, reader in self.readers.items()},
            pending={"predictions": predictions, "outcomes": outcomes}, stats=self.stats.to_state(),
            counts=[(k, v, r, n) for (k, v, r), n in sorted(self.joiner.counts.items())],
            matched=self.joiner.matched, dead_lettered=dict(self.dead_lettered), bad_predictions=self.bad_predictions,
            health=self._health_state())
        snapshot = build_snapshot(self.joiner, evaluator_id=checkpoint.evaluator_id, at_ms=checkpoint.written_at,
                                  dead_lettered=self.dead_lettered, bad_predictions=self.bad_predictions,
                                  unread_pending=self.unread_pending())
        encoded = checkpoint.encode()
        for topic, key, value in self.decider.outputs(snapshot, self._canary_health) \
                if self.decider is not None else ():
            self.writer.produce(topic, key, value)
        self.writer.commit(encoded, json.dumps(snapshot, separators=(",", ":")).encode())
        if self.decider is not None:
            self.decider.committed()
        self.snapshot = snapshot
        self.metrics.checkpoints.inc()
        lag = {reader.topic: reader.lag() for reader in self.readers.values()}
        self.metrics.update(snapshot, lag=lag, checkpoint_bytes=len(encoded))

    def _health_state(self) -> dict[str, Any]:
        if self.health_stats is None:
            return {}
        self.health_stats.prune(self.joiner.watermark)
        return self.health_stats.to_state()

    def _canary_health(self, canary_version: str, champion_version: str) -> Health:
        assert self.health_stats is not None
        return self.health_stats.health(canary_version, champion_version, self.joiner.watermark)

    def unread_pending(self) -> dict[str, int]:
        """side -> rows pending at the resumed checkpoint not read back yet (still pending: they count)."""
        return {side: self._resume.unread(side) for side in SIDES}

    def health(self) -> dict[str, Any]:
        unread = self.unread_pending()
        return {"status": "healthy" if self.snapshot is not None else "starting",
                "evaluator_id": self.settings.evaluation.evaluator_id,
                "uptime_seconds": round(time.monotonic() - self.started_at, 1),
                "watermark": self.joiner.watermark, "matched": self.joiner.matched,
                "pending": {"predictions": len(self.joiner.predictions) + unread["predictions"],
                            "outcomes": len(self.joiner.outcomes) + unread["outcomes"]}}

    def close(self) -> None:
        if self._mlflow is not None and self._mlflow.is_alive():
            self._mlflow.stop()
        if self._http is not None:
            self._http.close()
        for reader in getattr(self, "readers", {}).values():
            reader.close()
        if self.dead_letter_reader is not None:
            self.dead_letter_reader.close()
        if hasattr(self, "writer"):
            self.writer.close()


def _registry_client(settings: Settings) -> Any:
    """The decider's MLflow client (made on first use, on the evaluator's thread)."""
    from mlflow.tracking import MlflowClient  # deferred: only an evaluator that decides talks to the registry

    uri = settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)

"""Announce a promotion on ``housing.model-updates`` so every running scorer switches to it within seconds.

Training succeeds whether or not anyone hears the announcement: a scorer that misses it (Kafka down, no
scorer running) still picks the new champion up at its next registry poll. So an unreachable broker is a
warning, not a failure. Every promotion is also written to the audit trail (``admin_api.audit``: the
``housing.audit`` log, ``AUDIT_LOG_PATH`` and an ``audit.<time>`` tag on the version), announced or not.
"""

from __future__ import annotations

import getpass
import logging

from confluent_kafka import KafkaException, Producer

from admin_api.audit import AuditLog, AuditRecord, mlflow_tagger, utc_stamp
from config.mlflow import configure_mlflow_client, mlflow_answers
from config.settings import Settings
from consumer.errors import ControlPublishError
from consumer.kafka.control import publish_model_update
from schemas.control import ModelUpdateEvent
from training.results import TrainingResult
from training.tracking import CHAMPION_ALIAS, PRODUCTION

logger = logging.getLogger(__name__)

SOURCE = "training"


def kafka_answers(settings: Settings, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request within ``timeout`` seconds."""
    producer = Producer({**settings.kafka.client_config(), "socket.connection.setup.timeout.ms": 3000,
                         "log_level": 0})
    try:
        producer.list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def announce_promotion(settings: Settings, result: TrainingResult, *,
                       timeout: float = 10.0) -> ModelUpdateEvent | None:
    """Publish a ``promoted`` ModelUpdateEvent for a promoted training result.

    :returns: the event published, or None when there was nothing to announce (not promoted) or Kafka could
        not take it (logged as a warning; the scorers' registry poll will catch the promotion).
    """
    if not result.promoted:
        logger.info("version %s was not promoted: nothing to announce", result.version)
        return None
    where = f"{settings.topics.model_updates} at {settings.kafka.bootstrap_servers}"
    if not kafka_answers(settings):
        logger.warning("Kafka does not answer: promotion of %s v%s not announced on %s (running scorers will "
                       "pick it up at their next registry poll)", result.model_name, result.version, where)
        audit_promotion(settings, result, None, "not announced: Kafka does not answer")
        return None
    try:
        event = publish_model_update(settings, type="promoted", model_name=result.model_name,
                                     version=result.version, alias=CHAMPION_ALIAS, stage=PRODUCTION,
                                     model_uri=result.model_uri, source=SOURCE, timeout=timeout)
    except ControlPublishError as exc:
        logger.warning("promotion of %s v%s not announced on %s: %s", result.model_name, result.version, where,
                       exc)
        audit_promotion(settings, result, None, f"not announced: {exc}")
        return None
    logger.info("announced %s v%s on %s (event %s)", result.model_name, result.version, where,
                event.event_id)
    audit_promotion(settings, result, event, f"announced on {settings.topics.model_updates}")
    return event


def _who() -> str:
    try:
        return f"{SOURCE}:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in a bare container
        return SOURCE


def audit_promotion(settings: Settings, result: TrainingResult, event: ModelUpdateEvent | None,
                    detail: str) -> None:
    """Record the promotion in the audit trail; tag the version when its registry answers (never raises)."""
    record = AuditRecord(at=utc_stamp(), who=_who(), action="promote", model_name=result.model_name,
                         version=result.version, alias=CHAMPION_ALIAS, stage=PRODUCTION, detail=detail,
                         source=SOURCE, event_id=event.event_id if event else None)
    tagger = None
    if settings.mlflow.enabled and mlflow_answers(result.tracking_uri, 2.0, local_store_answers=True):
        configure_mlflow_client()
        from mlflow.tracking import MlflowClient  # deferred on purpose: importing mlflow takes seconds

        tagger = mlflow_tagger(MlflowClient(tracking_uri=result.tracking_uri, registry_uri=result.tracking_uri))
    AuditLog(settings.admin.audit_log_path, tagger).record(record)

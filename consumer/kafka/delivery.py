"""One acknowledged control-plane message: produce it, flush, and say why when the broker did not take it.

Shared by the model-update publisher (``consumer.kafka.control``) and the status publisher
(``consumer.kafka.status``); both flush every message before they return, so a caller knows it was taken.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from config.settings import Settings
from consumer.errors import ControlPublishError
from consumer.kafka.clients import control_producer_config

logger = logging.getLogger(__name__)


def control_producer(settings: Settings, timeout: float) -> Producer:
    """A producer for control-plane messages (``clients.control_producer_config``)."""
    return Producer(control_producer_config(settings, timeout))


def produce_and_flush(producer: Producer, topic: str, key: str, value: bytes | None, timeout: float,
                      bootstrap: str) -> None:
    """Send one message (``value`` None: a tombstone) and wait up to ``timeout`` seconds for its acknowledgement.

    :raises ControlPublishError: it could not be sent, the broker refused it, or it was not acknowledged.
    """
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error.str())

    try:
        producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
    except (KafkaException, BufferError) as exc:
        raise ControlPublishError(f"could not send to {topic}: {exc}") from exc
    remaining = producer.flush(timeout)
    if errors:
        raise ControlPublishError(f"{topic} refused the message: {errors[0]}")
    if remaining:
        raise ControlPublishError(f"{topic}: not acknowledged within {timeout:.0f}s (is Kafka at "
                                  f"{bootstrap} up?)")

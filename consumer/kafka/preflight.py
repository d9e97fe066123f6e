"""Broker preflight and the security diagnosis: before the scorer waits on Kafka, check that the broker answers,
accepts this client's credentials and has the scorer's topics; and say, from librdkafka's errors, which security
setting to fix when it refuses this client."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from config.settings import Settings
from consumer.errors import ScorerFatalError
from consumer.kafka.clients import admin_config

CREDENTIAL_SETTINGS = ("KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                       "(KAFKA_SSL_CA_LOCATION / KAFKA_SSL_CERTIFICATE_LOCATION / KAFKA_SSL_KEY_LOCATION for TLS)")
"""What to check when the broker refuses this client: named in every authentication error."""


def security_problem(errors: Sequence[KafkaError], *, accepts_connections: bool = False) -> str | None:
    """What the client errors say about a security misconfiguration (pure); None when they say nothing of it.

    librdkafka reports a refused login as ``_AUTHENTICATION`` / ``SASL_AUTHENTICATION_FAILED`` (and the
    metadata request then just times out), a TLS problem as ``_SSL``, and a client speaking the wrong protocol
    to a listener as a disconnect that mentions ``security.protocol``.

    :param accepts_connections: the metadata request failed, yet the broker's port accepts TCP connections: a
        SASL listener closes the connection of a client without SASL just like that, with no clearer error.
    """
    for error in errors:
        text = error.str()
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) or "SASL" in text:
            return f"authentication failed ({text})"
        if error.code() == KafkaError._SSL:
            return f"the TLS handshake failed ({text})"
        if "security.protocol" in text:
            return f"the listener and the client disagree on the security protocol ({text})"
    if accepts_connections:
        return ("its port accepts connections but it answers no Kafka request: a listener expecting SASL or TLS "
                "treats a client without them like that")
    return None


def _accepts_connections(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Some bootstrap server accepts a TCP connection."""
    import socket

    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().split("://")[-1].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def check_kafka_topics(settings: Settings, list_topics: Callable[..., Any] | None = None,
                       timeout: float = 10.0) -> None:
    """Fail fast, with what to fix, when the broker does not answer or refuses our credentials, or the scorer's
    topics do not exist.

    :param list_topics: the metadata call to use (tests); default: a throwaway AdminClient whose client errors
        are watched, so wrong credentials fail within about two seconds, naming the credential settings.
    """
    topics = settings.topics
    seen: list[KafkaError] = []
    if list_topics is None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(admin_config(settings, error_cb=seen.append))
        metadata = _metadata_or_fail(settings, admin, seen, timeout)
    else:
        try:
            metadata = list_topics(timeout=timeout)
        except KafkaException as exc:
            raise _unreachable(settings, exc, [exc.args[0]] if exc.args else []) from exc
    missing = [t for t in (topics.records, topics.predictions, topics.dead_letter) if t not in metadata.topics]
    if missing:
        raise ScorerFatalError(f"topic(s) {', '.join(missing)} do not exist on {settings.kafka.bootstrap_servers}: "
                               "create them (`housing-stack up` creates the five topics) or fix the topic settings")


def _metadata_or_fail(settings: Settings, admin: Any, seen: list[KafkaError], timeout: float) -> Any:
    # Short metadata attempts with the client's errors served in between: a refused login never makes the
    # metadata call fail by itself (it just waits), but it shows up as an error callback within a second.
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        except KafkaException as exc:
            admin.poll(0)  # serves error_cb
            error = exc.args[0] if exc.args else None
            errors = [*seen, *([error] if isinstance(error, KafkaError) else [])]
            if security_problem(errors) is not None or time.monotonic() >= deadline:
                raise _unreachable(settings, exc, errors) from exc


def _unreachable(settings: Settings, exc: KafkaException, errors: Sequence[KafkaError]) -> ScorerFatalError:
    where = f"Kafka at {settings.kafka.bootstrap_servers}"
    problem = security_problem(errors) or security_problem(
        errors, accepts_connections=_accepts_connections(settings.kafka.bootstrap_servers))
    if problem is not None:
        return ScorerFatalError(f"{where} refused this client: {problem}. Check {CREDENTIAL_SETTINGS}")
    return ScorerFatalError(
        f"{where} did not answer a metadata request ({exc}): check KAFKA_BOOTSTRAP_SERVERS and the security "
        "settings, or start it with `housing-stack up`")

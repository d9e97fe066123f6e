"""Publishing to Kafka: the producer's only Kafka import.

Owns the producer configuration, the broker reachability check, the paced produce loop (a token
bucket that sends in small bursts, so 10,000 records/s holds without a sleep per record), delivery
accounting (errors from the delivery callback are latched and counted, never lost) and the
``PublishReport``. ``publish`` takes ready-made ``OutgoingMessage``s; ``send_records`` is the
one-call version for the demo, benchmarks and tests (ids, bad-record injection, encoding, send).
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from tqdm import tqdm

from producer.outcomes import OutcomeSchedule
from producer.records import OutgoingMessage, Record, inject_bad, with_ids
from schemas.codecs import RecordEncoder, WireFormat, registry_client
from schemas.errors import RegistryUnavailableError
from schemas.examples import EXAMPLE_RECORD
from schemas.outcomes import Outcome, OutcomeEncoder
from schemas.topics import RECORDS

logger = logging.getLogger(__name__)
librdkafka_logger = logging.getLogger("producer.librdkafka")

Encoder = Callable[[Record], bytes]

# acks=all + idempotence: no duplicates or reordering on retries. linger 5 ms batches well at high
# rates without adding visible latency at low ones. lz4 costs little CPU (see the report's numbers).
# The local queue holds a few seconds at full speed; when it is full, produce() raises BufferError
# and the loop polls until there is room.
DEFAULT_PRODUCER_CONFIG: Mapping[str, Any] = {
    "linger.ms": 5,
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    # A message not delivered within a minute is reported failed, rather than the default 5 min hang.
    "message.timeout.ms": 60_000,
    # Room for the corpus's deliberately oversized records (1 MiB); compressed, the broker takes them.
    "message.max.bytes": 2 * 1024 * 1024,
    "log.connection.close": False,
}
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_FLUSH_TIMEOUT = 90.0
_UNPACED_BURST = 1000  # messages between polls when --rate is 0
_BUCKET_SECONDS = 0.1  # the bucket holds at most this much of the rate (catch-up after a stall)
_MIN_BURST_SECONDS = 0.002  # wait until at least this much is due, so sleeps are >= ~2 ms


class PublishError(Exception):
    """Publishing could not start or could not go on; the message says why."""


class BrokerUnavailableError(PublishError):
    """No broker answered a metadata request within the timeout."""


@dataclass(frozen=True)
class PublishReport:
    """What a publish run did."""

    sent: int
    """Messages taken from the source and attempted (good and bad)."""
    delivered: int
    """Messages the broker acknowledged."""
    failed: int
    """Messages not delivered: delivery errors, still queued at the flush deadline, or unencodable."""
    errors: Mapping[str, int]
    """Why messages failed: error text -> count."""
    elapsed: float
    """Seconds from the first produce to the end of the final flush."""
    bad: int = 0
    """How many of ``sent`` were malformed on purpose (``bad-<kind>-<n>`` keys)."""
    interrupted: bool = False
    """Stopped early by Ctrl-C; what was sent was still flushed."""
    stopped_on_error: bool = False
    """Stopped sending after the first delivery failure (``stop_on_error``); what was sent was flushed."""
    topic: str = ""

    @property
    def rate(self) -> float:
        """Delivered messages per second over the whole run."""
        return self.delivered / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Everything that was attempted got delivered."""
        return self.failed == 0 and self.delivered == self.sent

    def summary(self) -> str:
        """The one-line summary the CLI prints."""
        line = (
            f"sent={self.sent} delivered={self.delivered} failed={self.failed} bad={self.bad} "
            f"elapsed={self.elapsed:.2f}s rate={self.rate:,.0f}/s topic={self.topic}"
        )
        if self.interrupted:
            line += " (interrupted)"
        if self.stopped_on_error:
            line += " (stopped at the first delivery failure)"
        return line

    def failure_message(self) -> str:
        """Why the run is not ok: how many were not delivered and the most common reasons."""
        reasons = "; ".join(f"{count} x {why}" for why, count in Counter(self.errors).most_common(5))
        return f"{self.sent - self.delivered} of {self.sent} messages were not delivered: {reasons or 'unknown'}"


class _Deliveries:
    """Delivery-callback state: counts and the latched errors (the callback must not raise)."""

    __slots__ = ("delivered", "failed", "errors", "last_client_error")

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.last_client_error: str | None = None

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        self.errors[err.str()] += 1
        if self.failed == 1:
            logger.error("delivery failed: %s (key=%r)", err.str(), msg.key())

    def on_error(self, err: KafkaError) -> None:
        # Client-level errors (broker down, auth); delivery failures still come per message.
        # "all brokers down" follows the real cause (refused, DNS, TLS); keep the cause.
        if err.code() != KafkaError._ALL_BROKERS_DOWN or self.last_client_error is None:
            self.last_client_error = err.str()
        if err.fatal():
            logger.error("fatal producer error: %s", err.str())
        else:
            logger.debug("producer error: %s", err.str())


def producer_config(client_config: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """DEFAULT_PRODUCER_CONFIG < ``client_config`` (bootstrap and security settings) < ``overrides``.

    Override keys may use underscores for dots: ``producer_config(c, linger_ms=0)``.
    """
    config = {**DEFAULT_PRODUCER_CONFIG, **client_config}
    config.update({key.replace("_", "."): value for key, value in overrides.items()})
    return config


def check_broker(producer: Producer, topic: str, timeout: float, last_error: Callable[[], str | None]) -> None:
    """Ask for cluster metadata; raise BrokerUnavailableError naming the servers and the cause.

    A missing topic is only logged: the broker may create it on first produce.
    """
    try:
        metadata = producer.list_topics(timeout=timeout)
    except KafkaException as exc:
        producer.poll(0)  # serve the error callback, which knows the cause (refused, DNS, TLS, auth)
        cause = last_error() or str(exc.args[0].str() if exc.args else exc)
        raise BrokerUnavailableError(f"no answer within {timeout:g}s ({cause})") from None
    found = metadata.topics.get(topic)
    if found is None:
        logger.warning("topic %s does not exist; it is created on first produce if the broker allows", topic)
    elif found.error is not None and found.error.code() != KafkaError.LEADER_NOT_AVAILABLE:
        raise PublishError(f"topic {topic}: {found.error.str()}")
    logger.info("broker reachable: %d broker(s), topic %s %s", len(metadata.brokers), topic,
                f"with {len(found.partitions)} partitions" if found is not None else "to be created")


def make_encoder(
    fmt: WireFormat | str = WireFormat.JSON,
    *,
    schema_registry_url: str | None = None,
    registry_config: Mapping[str, Any] | None = None,
) -> Encoder:
    """Record -> bytes for one wire format, built once per run.

    ``avro`` picks the Confluent wire format when a registry URL is given and single-object
    encoding otherwise; the explicit WireFormat values are honoured as they are.
    """
    wire = _wire_format(fmt, schema_registry_url)
    registry = registry_client(schema_registry_url, registry_config) if wire is WireFormat.AVRO_CONFLUENT else None
    if wire is WireFormat.AVRO_CONFLUENT and registry is None:
        raise PublishError("the Confluent wire format needs a schema registry URL (--schema-registry-url)")
    encoder = RecordEncoder(registry)
    encode = encoder.encode
    if wire is WireFormat.AVRO_CONFLUENT:
        # Register the schema now, so an unreachable registry fails before anything is sent.
        try:
            encode(dict(EXAMPLE_RECORD), wire)
        except RegistryUnavailableError as exc:
            raise PublishError(f"schema registry at {schema_registry_url}: {exc}") from exc

    def encode_record(record: Record) -> bytes:
        return encode(record, wire)

    return encode_record


def make_outcome_encoder(fmt: WireFormat | str = WireFormat.JSON, *, schema_registry_url: str | None = None,
                         registry_config: Mapping[str, Any] | None = None) -> Callable[[Outcome], bytes]:
    """Outcome -> bytes in the records' wire format (``make_encoder``'s rules), subject ``housing.outcomes-value``."""
    wire = _wire_format(fmt, schema_registry_url)
    registry = registry_client(schema_registry_url, registry_config) if wire is WireFormat.AVRO_CONFLUENT else None
    encoder = OutcomeEncoder(registry)

    def encode_outcome(outcome: Outcome) -> bytes:
        return encoder.encode(outcome, wire)

    return encode_outcome


def _wire_format(fmt: WireFormat | str, schema_registry_url: str | None) -> WireFormat:
    if isinstance(fmt, WireFormat):
        return fmt
    if fmt == "avro":
        return WireFormat.AVRO_CONFLUENT if schema_registry_url else WireFormat.AVRO_SINGLE_OBJECT
    try:
        return WireFormat(fmt)
    except ValueError:
        raise PublishError(f"unknown format {fmt!r}: use json or avro") from None


def publish(
    messages: Iterable[OutgoingMessage],
    *,
    config: Mapping[str, Any],
    topic: str = RECORDS.name,
    rate: float = 0.0,
    count: int | None = None,
    progress: bool = False,
    encode: Encoder | None = None,
    stamp_event_time: bool = True,
    stop_on_error: bool = True,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
    outcomes: OutcomeSchedule | None = None,
) -> PublishReport:
    """Send messages to ``topic`` at ``rate`` and wait for every delivery report.

    :param messages: good records (encoded here, once) and pre-encoded bad values.
    :param config: full confluent-kafka producer config (see ``producer_config``).
    :param rate: messages per second; 0 sends as fast as the client takes them.
    :param count: stop after this many messages (None: when ``messages`` ends).
    :param progress: show a tqdm bar on stderr.
    :param encode: record -> bytes (default: JSON).
    :param stamp_event_time: set each record's ``event_time`` to now (ms) just before encoding,
        so produce-to-prediction latency can be measured.
    :param stop_on_error: stop sending once a delivery has failed (a broker outage would otherwise
        keep an endless source failing forever); False sends everything and counts the failures.
    :param connect_timeout: seconds to wait for the broker's metadata answer before giving up.
    :param flush_timeout: seconds to wait for outstanding deliveries at the end.
    :param outcomes: the records' outcomes (``producer.outcomes``), emitted between bursts as they come due; at
        the end the publisher waits for the last ones (Ctrl-C stops the wait, the rest are counted not sent).
    :raises BrokerUnavailableError: the broker did not answer (nothing was sent).
    :raises PublishError: the schema registry could not register the schema, or the topic is unusable.
    """
    if rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    encode = encode or make_encoder(WireFormat.JSON)
    deliveries = _Deliveries()
    producer = Producer({
        **config,
        "on_delivery": deliveries.on_delivery,
        "error_cb": deliveries.on_error,
        "logger": librdkafka_logger,
    })
    try:
        check_broker(producer, topic, connect_timeout, lambda: deliveries.last_client_error)
    except PublishError:
        producer.purge()
        raise
    source = iter(messages) if count is None else itertools.islice(messages, count)
    bar = tqdm(total=count, unit="rec", unit_scale=True, disable=not progress, file=sys.stderr,
               mininterval=0.5, smoothing=0.3, desc=topic)
    should_stop = (lambda: deliveries.failed > 0) if stop_on_error else (lambda: False)
    loop = SendLoop(producer, topic, encode, stamp_event_time, bar, should_stop)
    if outcomes is not None:
        loop.tick = lambda: outcomes.emit_due(producer)
    start = time.monotonic()
    interrupted = False
    try:
        if rate > 0:
            loop.run_paced(source, rate)
        else:
            loop.run_unpaced(source)
        if outcomes is not None and not loop.stopped_on_error:
            outcomes.drain(producer, should_stop)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: flushing %d messages already sent", len(producer))
    except RegistryUnavailableError as exc:
        raise PublishError(f"schema registry: {exc}") from exc
    finally:
        bar.close()
        remaining = producer.flush(flush_timeout)
        if remaining:
            # Purging fires the delivery callbacks with _PURGE_* errors, so the count stays exact.
            producer.purge()
            producer.flush(5.0)
            logger.error("%d messages still undelivered after %gs", remaining, flush_timeout)
    elapsed = time.monotonic() - start
    errors = Counter(deliveries.errors)
    errors.update(loop.not_sent)
    not_sent = sum(loop.not_sent.values())
    # After flush (and purge) every produced message has had its callback, so the callbacks' total is
    # exact even if an interrupt landed between produce() and the loop's own count.
    handed = max(loop.sent, deliveries.delivered + deliveries.failed)
    undelivered = handed - deliveries.delivered
    if undelivered > deliveries.failed:
        errors["no delivery report before the flush deadline"] += undelivered - deliveries.failed
    return PublishReport(
        sent=handed + not_sent,
        delivered=deliveries.delivered,
        failed=undelivered + not_sent,
        errors=dict(errors),
        elapsed=elapsed,
        bad=loop.bad,
        interrupted=interrupted,
        stopped_on_error=loop.stopped_on_error,
        topic=topic,
    )


def send_records(
    records: Iterable[Record],
    *,
    bootstrap_servers: str | None = None,
    client_config: Mapping[str, Any] | None = None,
    topic: str = RECORDS.name,
    fmt: WireFormat | str = WireFormat.JSON,
    schema_registry_url: str | None = None,
    rate: float = 0.0,
    count: int | None = None,
    bad_fraction: float = 0.0,
    seed: int | None = 0,
    start_id: int = 0,
    progress: bool = False,
    stop_on_error: bool = True,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    **producer_overrides: Any,
) -> PublishReport:
    """Give records ids, mix in bad ones, encode and send them: the library form of ``housing-produce``.

    :param records: feature dicts, e.g. ``csv_records()`` or ``synthetic_records(seed)``.
    :param bootstrap_servers: used when ``client_config`` is not given.
    :param client_config: settings' ``kafka.client_config()`` (bootstrap and security).
    :param fmt: ``json``, ``avro`` (Confluent framing with a registry, single-object without) or a WireFormat.
    :param bad_fraction: share of malformed messages from BAD_RECORDS, placed by ``seed``.
    :param start_id: first ``rec-<n>`` number (and first ``bad-<kind>-<n>`` number).
    :param producer_overrides: extra producer settings, underscores for dots (``linger_ms=0``).
    """
    if client_config is None:
        if not bootstrap_servers:
            raise ValueError("give bootstrap_servers or client_config")
        client_config = {"bootstrap.servers": bootstrap_servers}
    encode = make_encoder(fmt, schema_registry_url=schema_registry_url)
    messages = inject_bad(with_ids(records, start_id), bad_fraction, seed, first_bad_id=start_id)
    return publish(
        messages,
        config=producer_config(client_config, **producer_overrides),
        topic=topic,
        rate=rate,
        count=count,
        progress=progress,
        encode=encode,
        stop_on_error=stop_on_error,
        connect_timeout=connect_timeout,
    )


@dataclass
class SendLoop:
    """The produce loop's state; bursts are plain for-loops over local names (the hot path)."""

    producer: Producer
    topic: str
    encode: Encoder
    stamp_event_time: bool
    bar: Any
    should_stop: Callable[[], bool] = lambda: False
    """Checked after every burst: a latched delivery failure ends the loop (see ``stop_on_error``)."""
    tick: Callable[[], object] = lambda: None
    """Called between bursts (the outcomes that came due go out there)."""
    stopped_on_error: bool = False
    sent: int = 0
    bad: int = 0
    not_sent: Counter[str] = field(default_factory=Counter)
    """Messages that never reached the producer's queue (unencodable, refused), by reason."""

    def run_unpaced(self, source: Iterable[OutgoingMessage]) -> None:
        it = iter(source)
        while self.burst(it, _UNPACED_BURST):
            self.producer.poll(0)
            self.tick()
            if self._failed():
                return

    def run_paced(self, source: Iterable[OutgoingMessage], rate: float) -> None:
        # Token bucket: tokens accrue at `rate`; we send whole tokens in a burst, then wait (serving
        # delivery callbacks) until at least a few ms worth is due. Capacity caps catch-up bursts.
        it = iter(source)
        capacity = max(1.0, rate * _BUCKET_SECONDS)
        min_burst = max(1.0, rate * _MIN_BURST_SECONDS)
        tokens = 1.0
        last = time.monotonic()
        poll = self.producer.poll
        while True:
            now = time.monotonic()
            tokens = min(capacity, tokens + (now - last) * rate)
            last = now
            if tokens < min_burst and tokens < capacity:
                # librdkafka counts the wait in whole ms: a shorter one is poll(0), which would spin
                poll(min(1.0, max(0.001, (min_burst - tokens) / rate)))
                self.tick()
                continue
            n = int(tokens)
            tokens -= n
            if not self.burst(it, n):
                return
            poll(0)
            self.tick()
            if self._failed():
                return

    def burst(self, it: Iterable[OutgoingMessage], n: int) -> bool:
        """Send up to ``n`` messages; False once the source is exhausted."""
        produce, topic, encode, stamp = self.producer.produce, self.topic, self.encode, self.stamp_event_time
        time_ns = time.time_ns
        pulled = sent = bad = 0
        try:
            for message in itertools.islice(it, n):
                pulled += 1
                record = message.record
                if record is None:
                    value = message.value
                    bad += 1
                else:
                    if stamp:
                        record["event_time"] = time_ns() // 1_000_000
                    try:
                        value = encode(record)
                    except (ValueError, TypeError) as exc:
                        self._not_sent(message, f"cannot encode record: {exc}")
                        continue
                try:
                    produce(topic, value, message.key)
                except BufferError:
                    self._produce_when_room(value, message.key)
                except KafkaException as exc:  # refused locally (e.g. too large): count it, go on
                    self._not_sent(message, f"produce refused: {exc.args[0].str() if exc.args else exc}")
                    continue
                sent += 1
        finally:  # counted even when Ctrl-C lands mid-burst
            self.sent += sent
            self.bad += bad
            self.bar.update(sent)
        return pulled == n

    def _failed(self) -> bool:
        if self.should_stop():
            self.stopped_on_error = True
            logger.error("stopping: a message could not be delivered (--keep-going sends the rest anyway)")
        return self.stopped_on_error

    def _produce_when_room(self, value: bytes | None, key: bytes) -> None:
        # The local queue is full: serve delivery reports until the broker drains it.
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(self.topic, value, key)
                return
            except BufferError:
                continue

    def _not_sent(self, message: OutgoingMessage, reason: str) -> None:
        if not self.not_sent:
            logger.error("message %r not sent: %s", message.key, reason)
        self.not_sent[reason[:200]] += 1

"""Security: a scorer on a SASL/PLAIN listener, wrong credentials failing fast and clearly, and the admin API on TLS.

A dedicated broker (free ports, this module's tmp dir) gets a second listener, ``SASL_PLAINTEXT`` with PLAIN and
one user ``scorer``; topics are created through its plain listener. The scorer subprocess is configured only by
environment variables (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``) and serves a fallback model file (MLflow
off), so nothing here needs the MLflow server.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import pickle
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from config.settings import Settings, load_settings
from consumer.kafka.control import publish_model_update
from consumer.kafka.preflight import CREDENTIAL_SETTINGS, security_problem
from consumer.kafka.topic_reader import read_fleet, read_model_updates
from stack.kafka import LocalKafka, ensure_topics
from stack.processes import free_port
from tests.e2e.conftest import ScorerFactory
from tests.helpers import committed_total, keys_of, produce_records, read_to_end, start_retrying_busy_ports, wait_for

USER, PASSWORD = "scorer", "scorer-secret"
JAAS = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'


class SaslBroker:
    def __init__(self, kafka: LocalKafka, sasl_port: int) -> None:
        self.kafka = kafka
        self.plain = kafka.bootstrap_servers
        self.sasl = f"127.0.0.1:{sasl_port}"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    def start_broker() -> tuple[LocalKafka, int]:  # on other free ports if one was taken before the bind
        sasl_port = free_port()
        kafka = LocalKafka(tmp_path_factory.mktemp("sasl-kafka"), port=free_port(), controller_port=free_port(),
                           heap="-Xmx512m -Xms128m", extra_properties={
                               "listeners.extra": f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
                               "sasl.enabled.mechanisms": "PLAIN",
                               "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
                           })
        kafka.start(timeout=180)
        return kafka, sasl_port

    kafka, sasl_port = start_retrying_busy_ports(start_broker)
    try:
        yield SaslBroker(kafka, sasl_port)
    finally:
        kafka.stop()


@pytest.fixture(scope="module")
def fallback_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small linear model pickled as the scorer's fallback file."""
    from training.data import features_frame, load_housing, sample_rows
    from training.pipeline import build_pipeline

    frame = sample_rows(load_housing(), 1000)
    model = build_pipeline("linear_regression").fit(features_frame(frame), frame["median_house_value"])
    path = tmp_path_factory.mktemp("sasl-model") / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    path.with_suffix(".json").write_text(json.dumps({"name": "sasl_model", "version": "1"}))
    return path


def sasl_settings(broker: SaslBroker, model: Path, password: str = PASSWORD) -> Settings:
    """Settings for the SASL listener, on fresh topics (created through the plain listener)."""
    suffix = uuid.uuid4().hex[:8]
    topics = {"records": f"sec-records-{suffix}", "predictions": f"sec-predictions-{suffix}",
              "dead_letter": f"sec-dlq-{suffix}", "model_updates": f"sec-updates-{suffix}",
              "scorer_status": f"sec-status-{suffix}"}
    ensure_topics({"bootstrap.servers": broker.plain},
                  {name: (1, {"cleanup.policy": "compact"} if key == "scorer_status" else {})
                   for key, name in topics.items()})
    return load_settings({
        "kafka.bootstrap_servers": broker.sasl, "kafka.security_protocol": "SASL_PLAINTEXT",
        "kafka.sasl_mechanism": "PLAIN", "kafka.sasl_username": USER, "kafka.sasl_password": password,
        "mlflow.enabled": False, "model.fallback_path": str(model), "model.name": "sasl_model",
        "scorer.group_id": f"sec-group-{suffix}", "scorer.batch_max_wait_ms": 50,
        **{f"topics.{key}": name for key, name in topics.items()},
    }, env={})


@pytest.mark.e2e
def test_scorer_works_through_the_sasl_listener(sasl_broker: SaslBroker, fallback_model: Path,
                                               scorer_process: ScorerFactory) -> None:
    settings = sasl_settings(sasl_broker, fallback_model)
    scorer = scorer_process(settings, instance_id="sasl-ok")
    produced = produce_records(settings, 200, bad_every=50)  # through SASL, as the producer would
    bootstrap, credentials = settings.kafka.bootstrap_servers, settings.kafka.client_config()
    # Every input committed (with its output, in one transaction): what is on the topics now is all there is.
    assert wait_for(lambda: committed_total(bootstrap, settings.scorer.group_id, settings.topics.records, 1,
                                            client_config=credentials) >= 200, 60), scorer.tail()
    predictions = read_to_end(bootstrap, settings.topics.predictions, client_config=credentials)
    dead = read_to_end(bootstrap, settings.topics.dead_letter, client_config=credentials)
    assert sorted(keys_of(predictions)) == sorted(produced.good_keys), scorer.tail()
    assert sorted(keys_of(dead)) == sorted(produced.bad_keys)
    # The control plane goes through the same listener: the scorer's status, an announcement, the history.
    assert wait_for(lambda: "sasl-ok" in read_fleet(settings, 10.0), 30), scorer.tail()
    event = publish_model_update(settings, type="reload", model_name="sasl_model", source="test")
    assert [e.event_id for e in read_model_updates(settings, 10.0)] == [event.event_id]
    assert scorer.alive()


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["wrong_password", "no_sasl"])
def test_wrong_credentials_fail_fast_naming_the_settings(sasl_broker: SaslBroker, fallback_model: Path,
                                                        scorer_process: ScorerFactory, case: str) -> None:
    settings = sasl_settings(sasl_broker, fallback_model, password="not-the-password")
    env: dict[str, str] = {}
    if case == "no_sasl":  # a plain client talking to the SASL listener
        env = {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "KAFKA_SASL_MECHANISM": "", "KAFKA_SASL_USERNAME": "",
               "KAFKA_SASL_PASSWORD": ""}
    started = time.monotonic()
    scorer = scorer_process(settings, instance_id=f"sasl-{case}", env=env, wait=False)
    code = scorer.wait(60)
    elapsed = time.monotonic() - started
    log = scorer.log()
    assert code != 0, log
    assert elapsed < 60
    assert "refused this client" in log, log[-3000:]
    assert "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in log
    if case == "wrong_password":
        assert "authentication failed" in log.lower(), log[-3000:]
        assert "not-the-password" not in log  # the secret itself is never printed


def test_security_problem_names_what_librdkafka_reported() -> None:
    auth = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed: Invalid "
                      "username or password")
    transport = KafkaError(KafkaError._TRANSPORT, "Disconnected while requesting ApiVersion: might be caused by "
                           "incorrect security.protocol configuration")
    assert security_problem([KafkaError(KafkaError._TRANSPORT, "Connection refused"), auth]) == (
        f"authentication failed ({auth.str()})")
    assert (security_problem([transport]) or "").startswith("the listener and the client disagree")
    assert security_problem([KafkaError(KafkaError._SSL, "certificate verify failed")]) == (
        "the TLS handshake failed (certificate verify failed)")
    down = KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
    assert security_problem([down]) is None
    # What a SASL listener does to a plain client: accept, then close without a word.
    assert "listener expecting SASL or TLS" in (security_problem([down], accepts_connections=True) or "")
    assert "KAFKA_SASL_PASSWORD" in CREDENTIAL_SETTINGS and "KAFKA_SSL_CA_LOCATION" in CREDENTIAL_SETTINGS


# --- the admin API over TLS ------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 / localhost and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "housing-admin-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "admin.crt", directory / "admin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.e2e
async def test_admin_api_serves_https_with_the_configured_certificate(tmp_path: Path,
                                                                     fallback_model: Path) -> None:
    import asyncio

    from aiohttp import web

    from admin_api.app import create_app, ssl_context
    from consumer.models.loader import load_fallback
    from consumer.state import ScorerState

    cert, key = self_signed(tmp_path)
    settings = load_settings({"mlflow.enabled": False, "admin.tls_cert": str(cert), "admin.tls_key": str(key),
                              "admin.port": 0, "model.fallback_path": str(fallback_model)}, env={})
    state = ScorerState(settings)
    state.on_model_loaded(load_fallback(fallback_model, "sasl_model"))
    runner = web.AppRunner(create_app(settings, state=state))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context(settings)).start()
    (port,) = {address[1] for address in runner.addresses}  # bound by the server itself: no free_port() race
    try:
        def get(url: str, context: ssl.SSLContext | None) -> tuple[int, Any]:
            with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310
                return response.status, json.loads(response.read())

        trusted = ssl.create_default_context(cafile=str(cert))
        status, body = await asyncio.to_thread(get, f"https://127.0.0.1:{port}/health", trusted)
        assert status == 200 and body["model_loaded"] is True
        # The certificate really is the one configured: without it as CA the client refuses the server ...
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            await asyncio.to_thread(get, f"https://127.0.0.1:{port}/health", ssl.create_default_context())
        # ... and plain HTTP gets no answer from a TLS socket.
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            await asyncio.to_thread(get, f"http://127.0.0.1:{port}/health", None)
    finally:
        await runner.cleanup()

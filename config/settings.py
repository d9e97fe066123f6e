"""Settings: the only module that reads the product's settings from the environment, and the typed Settings it builds.

Layers, lowest first: built-in defaults < ``config/mlflow_config.yaml`` (the original API's layout) <
environment variables (the original names, plus the new ones) < command-line flags. Every setting is
declared once in ``config.spec.SETTINGS`` with its type, default, YAML path, environment name and flag, and a bad
value fails at start-up with a ``SettingsError`` that names the setting and what is accepted.
"""

from __future__ import annotations

import argparse
import difflib
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from config.spec import BY_KEY, SETTINGS, SettingsError, SettingSpec, parse_bool

ProcessingGuarantee = Literal["exactly_once", "at_least_once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
GroupProtocol = Literal["auto", "consumer", "classic", "classic-eager"]
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "mlflow_config.yaml"
CONFIG_PATH_ENV = "HOUSING_CONFIG"




@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    group_protocol: GroupProtocol = "auto"
    """The scorer group's rebalance protocol (``consumer.kafka.clients.group_protocol_config``); not in
    ``client_config``: only the scoring consumer joins a group."""

    def client_config(self) -> dict[str, Any]:
        """The confluent-kafka settings every client (consumer, producer, admin) starts from."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            config["security.protocol"] = self.security_protocol
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        return config


@dataclass(frozen=True)
class TopicSettings:
    records: str
    predictions: str
    dead_letter: str
    model_updates: str
    scorer_status: str
    partitions: int = 6
    outcomes: str = "housing.outcomes"
    outcomes_dead_letter: str = "housing.outcomes.dlq"
    evaluation: str = "housing.evaluation"
    evaluator_checkpoints: str = "housing.evaluator-checkpoints"


@dataclass(frozen=True)
class MlflowSettings:
    enabled: bool
    tracking_uri: str


@dataclass(frozen=True)
class ModelSettings:
    name: str
    stage: str | None
    alias: str | None
    version: str | None
    fallback_path: str
    reload_interval: float


@dataclass(frozen=True)
class ExperimentSettings:
    name: str
    training_name: str
    batch_size: int
    min_seconds: float = 5.0
    """A summary is logged once it holds ``batch_size`` predictions and spans at least this many seconds: at a
    high rate it holds more, so the MLflow calls per scorer stay bounded (each costs the scorer ~3 ms of CPU)."""


@dataclass(frozen=True)
class MonitoringSettings:
    track_drift: bool
    alert_thresholds: dict[str, float]
    drift_window: int


@dataclass(frozen=True)
class ScorerSettings:
    group_id: str
    instance_id: str
    processing_guarantee: ProcessingGuarantee
    batch_max_records: int
    batch_max_wait_ms: int
    model_threads: int
    shadow_enabled: bool
    shadow_alias: str
    shutdown_timeout: float
    max_message_bytes: int
    dlq_max_value_bytes: int
    heartbeat_seconds: float = 30.0
    """Seconds between two heartbeats of this instance's status (``consumer.kafka.status.StatusHeartbeat``)."""
    compiled_trees: bool = True
    """Predict tree ensembles with compiled code once checked (``consumer.core.compiled_trees``)."""
    compiled_trees_cache: str = "~/.cache/housing-stream-scorer/compiled-trees"


@dataclass(frozen=True)
class EvaluationSettings:
    """housing-evaluate: the join of outcomes to predictions (``consumer.evaluation``)."""

    evaluator_id: str = "housing-evaluator"
    window_seconds: float = 600.0
    bucket_seconds: float = 10.0
    max_pending: int = 1_000_000
    checkpoint_seconds: float = 5.0
    start: Literal["earliest", "latest"] = "earliest"
    mlflow_seconds: float = 60.0
    host: str = "127.0.0.1"
    port: int = 5003


@dataclass(frozen=True)
class CanarySettings:
    """The canary (scorers) and its promotion gate (housing-evaluate decides): README "Canary"."""

    alias: str = "challenger"
    fraction: float = 0.0
    auto_promote: bool = False
    dry_run: bool = False
    min_matched: int = 2000
    min_minutes: float = 10.0
    promote_margin: float = 0.02
    rollback_margin: float = 0.02
    max_error_rate: float = 0.01
    max_non_finite: int = 0
    max_drift_psi: float = 1.0
    health_min_records: int = 200
    decide_seconds: float = 30.0


@dataclass(frozen=True)
class AdminSettings:
    enabled: bool
    host: str
    port: int
    api_key: str | None
    protect_reads: bool
    webhook_secret: str | None
    tls_cert: str | None
    tls_key: str | None
    api_keys: str | None = None
    audit_log_path: str | None = None
    audit_log_max_bytes: int = 10_000_000
    """AUDIT_LOG_PATH is rotated (``.1`` ... ``.N``) before it would reach this size."""
    audit_log_backups: int = 5
    predict_rate_limit: int = 60
    """POST /api/predict calls per client per minute without the admin key (0: no limit)."""
    fleet_stale_after: float = 90.0
    """/api/fleet: an instance whose last status or heartbeat is older than this many seconds is ``stale``."""

    def named_keys(self) -> dict[str, str]:
        """Every accepted admin key by name: ``ADMIN_API_KEYS`` pairs, plus ``ADMIN_API_KEY`` as ``admin``."""
        keys: dict[str, str] = {}
        if self.api_key:
            keys["admin"] = self.api_key
        for item in (self.api_keys or "").split(","):
            name, _, key = item.strip().partition(":")
            if name.strip() and key.strip():
                keys[name.strip()] = key.strip()
        return keys


@dataclass(frozen=True)
class Settings:
    """Everything a process of this product is configured with; built once at start-up."""

    kafka: KafkaSettings
    topics: TopicSettings
    mlflow: MlflowSettings
    model: ModelSettings
    experiment: ExperimentSettings
    monitoring: MonitoringSettings
    scorer: ScorerSettings
    admin: AdminSettings
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)
    schema_registry_url: str | None = None
    log_level: str = "INFO"
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Which layer each setting came from (default, file, env, flag): shown by --show-config."""

    def replace(self, **flat: Any) -> Settings:
        """A copy with some settings changed, by flat key (``{"topics.records": "t1"}``); values are parsed."""
        values = {key: _get(self, key) for key in BY_KEY}
        for key, raw in flat.items():
            spec = _spec(key)
            values[key] = _parse(spec, raw, "override")
        return _build(values, dict(self.sources, **{k: "override" for k in flat}))

    def as_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """Flat view for logs and --show-config; secrets are redacted."""
        out = {}
        for key in BY_KEY:
            value = _get(self, key)
            if redact and value is not None and any(s in key for s in ("password", "api_key", "secret")):
                value = "***"
            out[key] = value
        return out


def _spec(key: str) -> SettingSpec:
    try:
        return BY_KEY[key]
    except KeyError:
        raise SettingsError(f"unknown setting {key!r}") from None


def _get(settings: Settings, key: str) -> Any:
    if key in {"schema_registry_url", "log_level"}:
        return getattr(settings, key)
    section, name = key.split(".", 1)
    return getattr(getattr(settings, section), name)


def _parse(spec: SettingSpec, raw: Any, layer: str) -> Any:
    try:
        return spec.parse(raw)
    except (TypeError, ValueError) as exc:
        where = {"env": "environment variable", "flag": "flag", "file": "config file key"}.get(layer, "setting")
        name = {"env": spec.env, "flag": spec.flag, "file": spec.yaml_path}.get(layer) or spec.label
        raise SettingsError(f"{where} {name}: {exc} (got {raw!r})") from None


def _yaml_lookup(document: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _read_config_file(path: Path) -> Mapping[str, Any]:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path}: not valid YAML ({exc})") from None
    if not isinstance(document, Mapping):
        raise SettingsError(f"config file {path}: expected a mapping at the top level")
    _refuse_unknown_keys(path, document)
    return document


def _refuse_unknown_keys(path: Path, document: Mapping[str, Any]) -> None:
    """A misspelt key would otherwise be ignored and its setting left at the default without a word."""
    known = {spec.yaml_path for spec in SETTINGS if spec.yaml_path}
    sections = {prefix for dotted in known for prefix in _prefixes(dotted)}

    def unknown(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
        for name, value in node.items():
            dotted = f"{prefix}.{name}" if prefix else str(name)
            if dotted in known:
                continue
            if dotted in sections and isinstance(value, Mapping):
                yield from unknown(value, dotted)
            elif dotted in sections and value is None:
                continue  # an empty section, e.g. a key with all its settings commented out
            else:
                yield dotted

    wrong = list(unknown(document, ""))
    if wrong:
        hints = []
        for dotted in wrong:
            close = difflib.get_close_matches(dotted, sorted(known), n=1)
            hints.append(f"{dotted!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SettingsError(f"config file {path}: unknown key{'s' if len(wrong) > 1 else ''} " + ", ".join(hints)
                            + "; the keys are listed in README, Configuration")


def _prefixes(dotted: str) -> Iterator[str]:
    parts = dotted.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def load_settings(
    argv_overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> Settings:
    """Build the settings: defaults < config file < environment < overrides (flags).

    :param argv_overrides: flat key -> raw value, from command-line flags (see ``overrides_from_args``).
    :param env: the environment to read (default ``os.environ``).
    :param config_path: the YAML file; default ``$HOUSING_CONFIG`` or ``config/mlflow_config.yaml``;
        a missing default file is fine, a missing named file is an error.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {spec.key: spec.default for spec in SETTINGS}
    sources = {spec.key: "default" for spec in SETTINGS}

    named = config_path or env.get(CONFIG_PATH_ENV)
    path = Path(named) if named else DEFAULT_CONFIG_PATH
    if path.exists():
        document = _read_config_file(path)
        for spec in SETTINGS:
            if spec.yaml_path:
                found, raw = _yaml_lookup(document, spec.yaml_path)
                if found and raw is not None:
                    values[spec.key] = _parse(spec, raw, "file")
                    sources[spec.key] = "file"
    elif named:
        raise SettingsError(f"config file {path} does not exist (set {CONFIG_PATH_ENV} or --config)")

    for spec in SETTINGS:
        if spec.env and env.get(spec.env) not in (None, ""):
            values[spec.key] = _parse(spec, env[spec.env], "env")
            sources[spec.key] = "env"

    for key, raw in (argv_overrides or {}).items():
        if raw is None:
            continue
        spec = _spec(key)
        values[key] = _parse(spec, raw, "flag")
        sources[key] = "flag"
    return _build(values, sources)


def _build(values: Mapping[str, Any], sources: dict[str, str]) -> Settings:
    def section(prefix: str) -> dict[str, Any]:
        return {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(prefix + ".")}

    scorer = section("scorer")
    scorer["instance_id"] = scorer["instance_id"] or f"{socket.gethostname()}-{os.getpid()}"
    settings = Settings(
        kafka=KafkaSettings(**section("kafka")),
        topics=TopicSettings(**section("topics")),
        mlflow=MlflowSettings(**section("mlflow")),
        model=ModelSettings(**section("model")),
        experiment=ExperimentSettings(**section("experiment")),
        monitoring=MonitoringSettings(**section("monitoring")),
        scorer=ScorerSettings(**scorer),
        admin=AdminSettings(**section("admin")),
        evaluation=EvaluationSettings(**section("evaluation")),
        canary=CanarySettings(**section("canary")),
        schema_registry_url=values["schema_registry_url"],
        log_level=values["log_level"],
        sources=sources,
    )
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    kafka = settings.kafka
    if kafka.security_protocol.startswith("SASL") and not (
        kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password
    ):
        raise SettingsError(
            f"KAFKA_SECURITY_PROTOCOL={kafka.security_protocol} needs KAFKA_SASL_MECHANISM, "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if bool(settings.admin.tls_cert) != bool(settings.admin.tls_key):
        raise SettingsError("ADMIN_TLS_CERT and ADMIN_TLS_KEY must be set together")
    _check_topics_apart(settings.topics)
    if settings.admin.fleet_stale_after <= settings.scorer.heartbeat_seconds:
        raise SettingsError(
            f"FLEET_STALE_AFTER_SECONDS={settings.admin.fleet_stale_after:g} must be more than "
            f"SCORER_HEARTBEAT_SECONDS={settings.scorer.heartbeat_seconds:g}: a live instance would look stale "
            "between two heartbeats (use about 3 heartbeats)")


_TOPIC_KEYS = ("topics.records", "topics.predictions", "topics.dead_letter", "topics.model_updates",
               "topics.scorer_status")
_LOOP_WHY = {
    "topics.predictions": "the scorer would read its own predictions back as input and dead-letter each one",
    "topics.dead_letter": "the scorer would read its own dead letters back and dead-letter them again, forever",
    "topics.model_updates": "the scorer would consume the fleet's model-update events as records (and dead-letter "
                            "them)",
    "topics.scorer_status": "the scorer would consume the fleet's statuses as records (and dead-letter them)",
}


def _check_topics_apart(topics: TopicSettings) -> None:
    """Every topic setting names its own topic: a shared one feeds the scorer's output back into itself (input =
    output / DLQ / control / status is a loop) or mixes two contracts on one topic."""
    seen: dict[str, str] = {}
    for key in _TOPIC_KEYS:
        name = getattr(topics, key.split(".", 1)[1])
        first = seen.setdefault(name, key)
        if first == key:
            continue
        why = _LOOP_WHY[key] if first == "topics.records" else "one topic would carry two different contracts"
        raise SettingsError(f"{_setting_label(first)} and {_setting_label(key)} are both {name!r}: {why}; give "
                            "each its own topic")


def _setting_label(key: str) -> str:
    spec = BY_KEY[key]
    return f"{spec.env} ({spec.flag})" if spec.env and spec.flag else spec.label


def add_settings_arguments(parser: argparse.ArgumentParser, keys: Sequence[str] | None = None) -> None:
    """Add the flags of the given settings (default: all that have one) to a CLI parser.

    Flags default to None so that only what the user typed overrides the lower layers.
    """
    parser.add_argument(
        "--config",
        dest="config_path",
        default=None,
        help=f"YAML config file (default: ${CONFIG_PATH_ENV} or config/mlflow_config.yaml)",
    )
    for spec in SETTINGS:
        if spec.flag and (keys is None or spec.key in keys):
            dest = "setting__" + spec.key.replace(".", "__")
            if spec.parse is parse_bool:
                parser.add_argument(
                    spec.flag,
                    dest=dest,
                    action="store_const",
                    const="true",
                    default=None,
                    help=spec.help or f"(env {spec.env})",
                )
            else:
                parser.add_argument(
                    spec.flag,
                    dest=dest,
                    default=None,
                    metavar=spec.key.rsplit(".", 1)[-1].upper(),
                    help=(spec.help + " " if spec.help else "") + f"(env {spec.env})",
                )


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings for a CLI: the parsed flags (from ``add_settings_arguments``) over env, file and defaults."""
    overrides = {
        name[len("setting__") :].replace("__", "."): value
        for name, value in vars(args).items()
        if name.startswith("setting__") and value is not None
    }
    return load_settings(overrides, env=env, config_path=getattr(args, "config_path", None))

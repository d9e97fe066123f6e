"""The settings table: every setting declared once, with its default, parser, environment name, YAML path, flag
and help. ``config.settings`` builds the typed Settings from it; scripts/settings_table.py renders it for the
README."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting and the fix."""


# --- value parsers: each takes the raw value (str from env/flags, typed from YAML) -------------------


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected an integer")
    if isinstance(raw, int):
        return raw
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


def _parse_str(raw: Any) -> str:
    return str(raw).strip()


def _parse_optional_str(raw: Any) -> str | None:
    if raw is None:
        return None
    text = str(raw).strip()
    return text or None


def _choice(*allowed: str, upper: bool = False) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip()
        text = text.upper() if upper else text.lower()
        if text not in allowed:
            raise ValueError("expected one of " + ", ".join(allowed))
        return text

    return parse


def _optional_choice(*allowed: str) -> Callable[[Any], str | None]:
    def parse(raw: Any) -> str | None:
        if raw is None or str(raw).strip() in {"", "None", "none", "null"}:
            return None
        text = str(raw).strip()
        matches = [a for a in allowed if a.lower() == text.lower()]
        if not matches:
            raise ValueError("expected one of " + ", ".join(allowed) + " or empty")
        return matches[0]

    return parse


def _positive(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(raw: Any) -> Any:
        value = parse(raw)
        if value <= 0:
            raise ValueError("expected a value > 0")
        return value

    return checked


def _non_negative(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(raw: Any) -> Any:
        value = parse(raw)
        if value < 0:
            raise ValueError("expected a value >= 0")
        return value

    return checked


def _at_least(minimum: int, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(raw: Any) -> Any:
        value = parse(raw)
        if value < minimum:
            raise ValueError(f"expected a value >= {minimum}")
        return value

    return checked


def _fraction(raw: Any) -> float:
    value = _parse_float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a share 0..1")
    return value


def _port(raw: Any) -> int:
    value = _parse_int(raw)
    if not 0 < value < 65536:
        raise ValueError("expected a TCP port 1-65535")
    return value


def _listen_port(raw: Any) -> int:
    """A port to listen on: 0 asks the system for a free one (the process logs the one it got)."""
    value = _parse_int(raw)
    if not 0 <= value < 65536:
        raise ValueError("expected a TCP port 1-65535, or 0 for any free port")
    return value


def _parse_api_keys(raw: Any) -> str | None:
    """``name1:key1,name2:key2``: checked here, kept as text (``AdminSettings.named_keys`` splits it)."""
    text = _parse_optional_str(raw)
    if text is None:
        return None
    names: set[str] = set()
    for item in text.split(","):
        name, sep, key = item.strip().partition(":")
        if not sep or not name.strip() or not key.strip():
            raise ValueError("expected name:key pairs separated by commas")
        if name.strip() in names:
            raise ValueError(f"key name {name.strip()!r} appears twice")
        names.add(name.strip())
    return text


def _thresholds(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping of name: number")
    return {str(k): _parse_float(v) for k, v in raw.items()}


@dataclass(frozen=True)
class SettingSpec:
    """One setting: where it lives in each layer and how its value is parsed."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    env: str | None = None
    yaml_path: str | None = None
    flag: str | None = None
    help: str = ""

    @property
    def label(self) -> str:
        """The name an operator would recognise, for error messages."""
        return self.env or self.flag or self.yaml_path or self.key


# One entry per setting, positional in SettingSpec's field order: key, default, parse; then environment variable,
# config-file (YAML) path, flag (None: none) and help. Kept compact by hand: ruff format would give each 8 lines.
# fmt: off
SETTINGS: tuple[SettingSpec, ...] = (
    # Kafka and its client security (reaches every client the product creates).
    SettingSpec("kafka.bootstrap_servers", "127.0.0.1:9092", _parse_str,
                "KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers", "--bootstrap-servers", "Kafka bootstrap servers"),
    SettingSpec("kafka.security_protocol", "PLAINTEXT",
                _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", upper=True),
                "KAFKA_SECURITY_PROTOCOL", "kafka.security_protocol", None, "security.protocol"),
    SettingSpec("kafka.sasl_mechanism", None, _optional_choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
                "KAFKA_SASL_MECHANISM", "kafka.sasl_mechanism", None, "sasl.mechanism"),
    SettingSpec("kafka.sasl_username", None, _parse_optional_str,
                "KAFKA_SASL_USERNAME", "kafka.sasl_username", None, "SASL user name"),
    SettingSpec("kafka.sasl_password", None, _parse_optional_str,
                "KAFKA_SASL_PASSWORD", "kafka.sasl_password", None, "SASL password"),
    SettingSpec("kafka.ssl_ca_location", None, _parse_optional_str,
                "KAFKA_SSL_CA_LOCATION", "kafka.ssl_ca_location", None, "CA certificate file for TLS"),
    SettingSpec("kafka.ssl_certificate_location", None, _parse_optional_str,
                "KAFKA_SSL_CERTIFICATE_LOCATION", "kafka.ssl_certificate_location", None, "client certificate (mTLS)"),
    SettingSpec("kafka.ssl_key_location", None, _parse_optional_str,
                "KAFKA_SSL_KEY_LOCATION", "kafka.ssl_key_location", None, "client key (mTLS)"),
    SettingSpec("kafka.group_protocol", "auto", _choice("auto", "consumer", "classic", "classic-eager"),
                "KAFKA_GROUP_PROTOCOL", "kafka.group_protocol", None,
                "scorer group rebalancing: auto (the consumer protocol, KIP-848, where the broker supports it, else "
                "classic), consumer, classic (cooperative-sticky) or classic-eager (range: every member stops)"),
    SettingSpec("schema_registry_url", None, _parse_optional_str,
                "SCHEMA_REGISTRY_URL", "kafka.schema_registry_url", "--schema-registry-url",
                "Confluent Schema Registry for Confluent-framed Avro (mock:// for tests)"),
    # Topics (tests use per-test names).
    SettingSpec("topics.records", "housing.records", _parse_str,
                "TOPIC_RECORDS", "topics.records", "--input-topic", "input topic"),
    SettingSpec("topics.predictions", "housing.predictions", _parse_str,
                "TOPIC_PREDICTIONS", "topics.predictions", "--output-topic", "output topic"),
    SettingSpec("topics.dead_letter", "housing.records.dlq", _parse_str,
                "TOPIC_DEAD_LETTER", "topics.dead_letter", "--dlq-topic", "dead-letter topic"),
    SettingSpec("topics.model_updates", "housing.model-updates", _parse_str,
                "TOPIC_MODEL_UPDATES", "topics.model_updates", "--control-topic",
                "control topic (model-update events)"),
    SettingSpec("topics.scorer_status", "housing.scorer-status", _parse_str,
                "TOPIC_SCORER_STATUS", "topics.scorer_status", "--status-topic", "fleet status topic (compacted)"),
    SettingSpec("topics.outcomes", "housing.outcomes", _parse_str,
                "TOPIC_OUTCOMES", "topics.outcomes", "--outcomes-topic",
                "outcomes topic (observed values, joined to predictions by housing-evaluate)"),
    SettingSpec("topics.outcomes_dead_letter", "housing.outcomes.dlq", _parse_str,
                "TOPIC_OUTCOMES_DLQ", "topics.outcomes_dead_letter", "--outcomes-dlq-topic",
                "dead-letter topic of outcomes (malformed, negative, non-finite, unknown record id)"),
    SettingSpec("topics.evaluation", "housing.evaluation", _parse_str,
                "TOPIC_EVALUATION", "topics.evaluation", None,
                "live-accuracy snapshots of housing-evaluate (compacted; GET /api/model/performance reads it)"),
    SettingSpec("topics.evaluator_checkpoints", "housing.evaluator-checkpoints", _parse_str,
                "TOPIC_EVALUATOR_CHECKPOINTS", "topics.evaluator_checkpoints", None,
                "checkpoints of housing-evaluate (compacted): stats, positions, pending offsets"),
    SettingSpec("topics.partitions", 6, _positive(_parse_int),
                "TOPIC_PARTITIONS", "topics.partitions", None,
                "partitions for records, predictions and DLQ when the stack creates them"),
    # MLflow (the original layout).
    SettingSpec("mlflow.enabled", True, parse_bool,
                "MLFLOW_ENABLED", "mlflow.enabled", None, "load from the registry (false: fallback file only)"),
    SettingSpec("mlflow.tracking_uri", "http://127.0.0.1:5000", _parse_str,
                "MLFLOW_TRACKING_URI", "mlflow.tracking_uri", "--tracking-uri", "MLflow tracking server and registry"),
    SettingSpec("model.name", "california_housing_best_model", _parse_str,
                "MLFLOW_MODEL_NAME", "mlflow.model.name", "--model-name", "registered model name"),
    SettingSpec("model.stage", None, _optional_choice("None", "Staging", "Production", "Archived"),
                "MLFLOW_MODEL_STAGE", "mlflow.model.stage", "--model-stage",
                "load the version in this stage (when no alias/version)"),
    SettingSpec("model.alias", "champion", _parse_optional_str,
                "MLFLOW_MODEL_ALIAS", "mlflow.model.alias", "--model-alias", "load the version with this alias"),
    SettingSpec("model.version", None, _parse_optional_str,
                "MLFLOW_MODEL_VERSION", "mlflow.model.version", "--model-version",
                "pin one version (wins over alias and stage)"),
    SettingSpec("model.fallback_path", "models/model.pkl", _parse_str,
                "MODEL_PATH", "mlflow.model.fallback_path", "--model-path",
                "local model file used when the registry cannot be reached"),
    SettingSpec("model.reload_interval", 30.0, _positive(_parse_float),
                "MLFLOW_RELOAD_INTERVAL", "mlflow.model.reload_interval", None, "seconds between registry polls"),
    SettingSpec("experiment.name", "california_housing_api", _parse_str,
                "MLFLOW_EXPERIMENT_NAME", "mlflow.experiment.name", None,
                "experiment for prediction-logging summaries"),
    SettingSpec("experiment.training_name", "california_housing", _parse_str,
                "MLFLOW_TRAINING_EXPERIMENT", "mlflow.experiment.training_name", None,
                "experiment housing-train logs to"),
    SettingSpec("experiment.batch_size", 5000, _positive(_parse_int),
                "MLFLOW_BATCH_SIZE", "mlflow.experiment.batch_size", None, "predictions per summary logged to MLflow"),
    SettingSpec("experiment.min_seconds", 5.0, _non_negative(_parse_float),
                "MLFLOW_LOG_MIN_SECONDS", "mlflow.experiment.min_seconds", None,
                "a summary spans at least this long (at most one MLflow call per interval at any rate)"),
    SettingSpec("monitoring.track_drift", True, parse_bool,
                "TRACK_DRIFT", "mlflow.monitoring.track_drift", None, "compute PSI drift against the training profile"),
    SettingSpec("monitoring.alert_thresholds",
                {"response_time_ms": 1000.0, "error_rate_percent": 5.0, "drift_psi": 0.25}, _thresholds,
                None, "mlflow.monitoring.alert_thresholds", None, "thresholds that make /health degraded"),
    SettingSpec("monitoring.drift_window", 5000, _positive(_parse_int),
                "DRIFT_WINDOW", "mlflow.monitoring.drift_window", None, "records in the drift sliding window"),
    # Scorer.
    SettingSpec("scorer.group_id", "housing-scorer", _parse_str,
                "SCORER_GROUP_ID", "scorer.group_id", "--group-id", "consumer group of the scorers"),
    SettingSpec("scorer.instance_id", None, _parse_optional_str,
                "SCORER_INSTANCE_ID", "scorer.instance_id", "--instance-id",
                "stable id of this instance (default: hostname-pid)"),
    SettingSpec("scorer.heartbeat_seconds", 30.0, _positive(_parse_float),
                "SCORER_HEARTBEAT_SECONDS", "scorer.heartbeat_seconds", None,
                "seconds between two heartbeats of this instance's status (its liveness in /api/fleet)"),
    SettingSpec("scorer.processing_guarantee", "exactly_once", _choice("exactly_once", "at_least_once"),
                "PROCESSING_GUARANTEE", "scorer.processing_guarantee", "--processing-guarantee",
                "exactly_once or at_least_once"),
    SettingSpec("scorer.batch_max_records", 1000, _positive(_parse_int),
                "BATCH_MAX_RECORDS", "scorer.batch_max_records", "--batch-max-records", "records per batch at most"),
    SettingSpec("scorer.batch_max_wait_ms", 5, _non_negative(_parse_int),
                "BATCH_MAX_WAIT_MS", "scorer.batch_max_wait_ms", "--batch-max-wait-ms",
                "a batch gathers records until this long after the previous batch was cut (0: take what has arrived)"),
    SettingSpec("scorer.model_threads", 1, _positive(_parse_int),
                "MODEL_THREADS", "scorer.model_threads", "--model-threads", "OpenMP/BLAS threads for the model"),
    SettingSpec("scorer.compiled_trees", True, parse_bool,
                "MODEL_COMPILED_TREES", "scorer.compiled_trees", "--compiled-trees",
                "predict a HistGradientBoosting model's trees as compiled code (TL2cgen + the C compiler) once it "
                "matched the model on check rows"),
    SettingSpec("scorer.compiled_trees_cache", "~/.cache/housing-stream-scorer/compiled-trees", _parse_str,
                "MODEL_COMPILED_TREES_CACHE", "scorer.compiled_trees_cache", None,
                "directory of the compiled tree libraries, one per model content"),
    SettingSpec("scorer.shadow_enabled", False, parse_bool,
                "SHADOW_SCORING", "scorer.shadow_enabled", "--shadow",
                "also score with the shadow alias (shadow_prediction)"),
    SettingSpec("scorer.shadow_alias", "challenger", _parse_str,
                "SHADOW_ALIAS", "scorer.shadow_alias", None, "alias of the shadow model"),
    SettingSpec("scorer.shutdown_timeout", 10.0, _positive(_parse_float),
                "SHUTDOWN_TIMEOUT_SECONDS", "scorer.shutdown_timeout", None,
                "seconds to finish the batch in flight on SIGTERM"),
    SettingSpec("scorer.max_message_bytes", 1_000_000, _positive(_parse_int),
                "MAX_MESSAGE_BYTES", "scorer.max_message_bytes", None,
                "larger input records are dead-lettered as too_large"),
    SettingSpec("scorer.dlq_max_value_bytes", 8_000_000, _positive(_parse_int),
                "DLQ_MAX_VALUE_BYTES", "scorer.dlq_max_value_bytes", None,
                "dead letters above this are truncated (header dlq.truncated_from) so they fit the DLQ topic"),
    # Admin API.
    SettingSpec("admin.enabled", True, parse_bool,
                "ADMIN_API_ENABLED", "admin.enabled", None, "run the admin API in the scorer process"),
    SettingSpec("admin.host", "127.0.0.1", _parse_str, "HOST", "admin.host", "--host", "admin API bind address"),
    SettingSpec("admin.port", 5001, _listen_port, "PORT", "admin.port", "--port",
                "admin API port (0: any free port, logged as `admin API on ...`)"),
    SettingSpec("admin.api_key", None, _parse_optional_str,
                "ADMIN_API_KEY", "admin.api_key", None, "key required by mutating endpoints (unset: they answer 403)"),
    SettingSpec("admin.api_keys", None, _parse_api_keys,
                "ADMIN_API_KEYS", "admin.api_keys", None,
                "named admin keys 'name1:key1,name2:key2' (the audit log records the name; ADMIN_API_KEY is 'admin')"),
    SettingSpec("admin.audit_log_path", None, _parse_optional_str,
                "AUDIT_LOG_PATH", "admin.audit_log_path", None,
                "also append the admin audit log (JSON lines) to this file"),
    SettingSpec("admin.audit_log_max_bytes", 10_000_000, _at_least(65_536, _parse_int),
                "AUDIT_LOG_MAX_BYTES", "admin.audit_log_max_bytes", None,
                "AUDIT_LOG_PATH is rotated before it would reach this size"),
    SettingSpec("admin.audit_log_backups", 5, _positive(_parse_int),
                "AUDIT_LOG_BACKUPS", "admin.audit_log_backups", None,
                "rotated audit files kept (AUDIT_LOG_PATH.1 ... .N); older ones are deleted"),
    SettingSpec("admin.fleet_stale_after", 90.0, _positive(_parse_float),
                "FLEET_STALE_AFTER_SECONDS", "admin.fleet_stale_after", None,
                "/api/fleet: an instance whose last status or heartbeat is older is stale (3 heartbeats)"),
    SettingSpec("admin.protect_reads", False, parse_bool,
                "ADMIN_PROTECT_READS", "admin.protect_reads", None, "require the key on read-only endpoints too"),
    SettingSpec("admin.predict_rate_limit", 60, _non_negative(_parse_int),
                "ADMIN_PREDICT_RATE_LIMIT", "admin.predict_rate_limit", None,
                "POST /api/predict calls per client per minute without the admin key (429 beyond; 0: no limit)"),
    SettingSpec("admin.webhook_secret", None, _parse_optional_str,
                "MLFLOW_WEBHOOK_SECRET", "admin.webhook_secret", None, "HMAC secret of MLflow registry webhooks"),
    SettingSpec("admin.tls_cert", None, _parse_optional_str,
                "ADMIN_TLS_CERT", "admin.tls_cert", None, "serve the admin API over TLS with this certificate"),
    SettingSpec("admin.tls_key", None, _parse_optional_str, "ADMIN_TLS_KEY", "admin.tls_key", None, "TLS private key"),
    # Live accuracy (housing-evaluate).
    SettingSpec("evaluation.evaluator_id", "housing-evaluator", _parse_str,
                "EVALUATOR_ID", "evaluation.evaluator_id", "--evaluator-id",
                "stable id of the evaluator: its checkpoint key and transactional id (one live instance per id)"),
    SettingSpec("evaluation.window_seconds", 600.0, _positive(_parse_float),
                "EVALUATION_WINDOW_SECONDS", "evaluation.window_seconds", "--evaluation-window",
                "join window: a prediction waits this long for its outcome (and an outcome for its prediction); "
                "also the sliding window of the live metrics"),
    SettingSpec("evaluation.bucket_seconds", 10.0, _positive(_parse_float),
                "EVALUATION_BUCKET_SECONDS", "evaluation.bucket_seconds", None,
                "granularity of the sliding window (matched pairs are summed per bucket)"),
    SettingSpec("evaluation.max_pending", 1_000_000, _positive(_parse_int),
                "EVALUATION_MAX_PENDING", "evaluation.max_pending", None,
                "rows held waiting for their other half, per side (predictions, outcomes); the oldest beyond it "
                "are counted (and outcomes dead-lettered as pending_limit)"),
    SettingSpec("evaluation.checkpoint_seconds", 5.0, _positive(_parse_float),
                "EVALUATION_CHECKPOINT_SECONDS", "evaluation.checkpoint_seconds", None,
                "seconds between two checkpoints (one transaction: dead letters, checkpoint, snapshot)"),
    SettingSpec("evaluation.start", "earliest", _choice("earliest", "latest"),
                "EVALUATION_START", "evaluation.start", None,
                "where an evaluator without a checkpoint starts reading predictions and outcomes"),
    SettingSpec("evaluation.mlflow_seconds", 60.0, _non_negative(_parse_float),
                "EVALUATION_MLFLOW_SECONDS", "evaluation.mlflow_seconds", None,
                "seconds between two logs of the live metrics to each version's run in MLflow (0: off)"),
    SettingSpec("evaluation.host", "127.0.0.1", _parse_str,
                "EVALUATOR_HOST", "evaluation.host", None, "bind address of the evaluator's /metrics"),
    SettingSpec("evaluation.port", 5003, _listen_port,
                "EVALUATOR_PORT", "evaluation.port", "--evaluator-port",
                "port of the evaluator's /metrics, /health and /performance (0: any free port, logged as "
                "`evaluator metrics on ...`)"),
    # Canary and its promotion gate (README "Canary").
    SettingSpec("canary.alias", "challenger", _parse_str,
                "CANARY_ALIAS", "canary.alias", "--canary-alias",
                "alias of the canary: the version that serves a share of the keys instead of the champion"),
    SettingSpec("canary.fraction", 0.0, _fraction,
                "CANARY_FRACTION", "canary.fraction", "--canary-fraction",
                "share of record keys (by key hash) the canary scores, 0..1 (0: off); PUT /api/canary sets it for "
                "the fleet (a registry tag that then wins)"),
    SettingSpec("canary.auto_promote", False, parse_bool,
                "AUTO_PROMOTE", "canary.auto_promote", "--auto-promote",
                "housing-evaluate decides: promote or roll back the canary by the gate below"),
    SettingSpec("canary.dry_run", False, parse_bool,
                "CANARY_DRY_RUN", "canary.dry_run", "--canary-dry-run",
                "housing-evaluate logs the decision the gate would take and takes none"),
    SettingSpec("canary.min_matched", 2000, _positive(_parse_int),
                "CANARY_MIN_MATCHED", "canary.min_matched", None,
                "matched outcomes the canary (and the champion) need in the window before the gate decides"),
    SettingSpec("canary.min_minutes", 10.0, _non_negative(_parse_float),
                "CANARY_MIN_MINUTES", "canary.min_minutes", None,
                "minutes since the canary's first matched pair before the gate decides"),
    SettingSpec("canary.promote_margin", 0.02, _non_negative(_parse_float),
                "CANARY_PROMOTE_MARGIN", "canary.promote_margin", None,
                "promote when the canary's window RMSE is below the champion's by this share (0.02: 2 %)"),
    SettingSpec("canary.rollback_margin", 0.02, _non_negative(_parse_float),
                "CANARY_ROLLBACK_MARGIN", "canary.rollback_margin", None,
                "roll back when the canary's window RMSE is above the champion's by this share"),
    SettingSpec("canary.max_error_rate", 0.01, _fraction,
                "CANARY_MAX_ERROR_RATE", "canary.max_error_rate", None,
                "roll back when this share of the canary's records in the window fail (its predict-stage dead "
                "letters on the records DLQ: predict_failed, non_finite_prediction)"),
    SettingSpec("canary.max_non_finite", 0, _non_negative(_parse_int),
                "CANARY_MAX_NON_FINITE", "canary.max_non_finite", None,
                "roll back when the canary predicted more non-finite values than this in the window "
                "(non_finite_prediction dead letters naming its version)"),
    SettingSpec("canary.max_drift_psi", 1.0, _positive(_parse_float),
                "CANARY_MAX_DRIFT_PSI", "canary.max_drift_psi", None,
                "roll back when the population stability index of the canary's predictions against the "
                "champion's (same window) exceeds this; higher than the usual 0.25 of input drift: a truly "
                "better model predicts differently (0.36 for gradient boosting against linear regression), a "
                "broken one (near-constant, shifted) scores 2 and more"),
    SettingSpec("canary.health_min_records", 200, _positive(_parse_int),
                "CANARY_HEALTH_MIN_RECORDS", "canary.health_min_records", None,
                "records the canary (for the drift, the champion too) needs in the window before its failure rate "
                "and prediction drift can roll it back (non-finite predictions count from the first)"),
    SettingSpec("canary.decide_seconds", 30.0, _positive(_parse_float),
                "CANARY_DECIDE_SECONDS", "canary.decide_seconds", None,
                "seconds between two evaluations of the gate by housing-evaluate"),
    SettingSpec("log_level", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
                "LOG_LEVEL", "log_level", "--log-level", "DEBUG, INFO, WARNING, ERROR"),
)
# fmt: on
BY_KEY = {spec.key: spec for spec in SETTINGS}

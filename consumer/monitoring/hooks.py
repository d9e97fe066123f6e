"""The monitoring batch hooks a scorer (or a standalone admin API) starts: drift and prediction logging."""

from __future__ import annotations

from config.settings import Settings
from consumer.monitoring.drift import DriftMonitor
from consumer.monitoring.prediction_log import PredictionLogger
from consumer.state import ScorerState


def build_monitoring_hooks(settings: Settings, state: ScorerState) -> list[DriftMonitor | PredictionLogger]:
    """The drift monitor (if ``TRACK_DRIFT``) and the prediction logger (if ``MLFLOW_ENABLED``), started.

    Each is a BatchHook with ``stop()``; they are also set as ``state.drift_monitor`` and
    ``state.prediction_logger`` so the admin API can show them and feed its own predictions to them.
    """
    hooks: list[DriftMonitor | PredictionLogger] = []
    if settings.monitoring.track_drift:
        drift = DriftMonitor(settings, state)
        state.drift_monitor = drift
        hooks.append(drift)
    if settings.mlflow.enabled:
        prediction_logger = PredictionLogger(settings, state)
        state.prediction_logger = prediction_logger
        hooks.append(prediction_logger)
    return hooks

"""What a training run is asked to do and what it reports: ``TrainingConfig`` in, ``TrainingResult`` out.

Also the failures the ``housing-train`` CLI reports in one line (``TrainingError`` and its subclass for an
unreachable tracking server). No I/O here: ``training.register`` runs the sequence, ``training.tracking``
talks to MLflow, ``training.fallback`` writes the local files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from training import data as training_data
from training.pipeline import MODEL_KINDS, normalize_kind

if TYPE_CHECKING:
    from config.settings import Settings

UNREACHABLE_HINT = "start it with `housing-stack up` or set MLFLOW_TRACKING_URI"


class TrainingError(RuntimeError):
    """Training could not complete; the message is meant for the operator, one line."""


class TrackingServerUnreachable(TrainingError):
    """The MLflow tracking server did not answer its health check."""

    def __init__(self, uri: str, detail: str = "") -> None:
        self.uri = uri
        self.detail = detail
        super().__init__(f"MLflow tracking server at {uri} is not reachable: {UNREACHABLE_HINT}")


@dataclass(frozen=True)
class TrainingConfig:
    """What one training run does; ``from_settings`` builds it from the product settings."""

    tracking_uri: str = "http://127.0.0.1:5000"
    experiment: str = "california_housing"
    """Training experiment (not the API's prediction-logging ``california_housing_api``)."""
    model_name: str = "california_housing_best_model"
    data_path: str = training_data.DEFAULT_DATA_PATH
    models: tuple[str, ...] = MODEL_KINDS
    """Model kinds to train (a subset of MODEL_KINDS)."""
    promote: bool = False
    """Also give the new version alias ``champion`` and stage ``Production``."""
    fallback_path: str = "models/model.pkl"
    output_dir: str | None = None
    """Directory for the fallback files; overrides the directory of ``fallback_path``."""
    sample: int | None = None
    """Train on a seeded sample of this many rows (fast runs and tests)."""
    seed: int = 42
    threads: int = 1
    """OpenMP/BLAS threads while fitting (threadpoolctl); 1 is fastest when anything else runs."""
    progress: bool = True
    """Show a tqdm progress bar on stderr."""
    health_timeout: float = 5.0
    """Seconds to wait for the tracking server's health check."""

    def __post_init__(self) -> None:
        kinds = tuple(normalize_kind(k) for k in self.models)
        if not kinds:
            raise ValueError("no model kinds to train")
        object.__setattr__(self, "models", tuple(dict.fromkeys(kinds)))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainingConfig:
        """Config from the product settings (tracking URI, model name, fallback path, experiment).

        :param settings: from ``config.settings.load_settings()``.
        :param overrides: any TrainingConfig field; None values are ignored.
        """
        base = cls(
            tracking_uri=settings.mlflow.tracking_uri,
            experiment=settings.experiment.training_name,
            model_name=settings.model.name,
            fallback_path=settings.model.fallback_path,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def model_file(self) -> Path:
        """Where the fallback pickle goes."""
        path = Path(self.fallback_path)
        return Path(self.output_dir) / path.name if self.output_dir else path


class ModelResult(NamedTuple):
    """One trained model kind: its nested run and its test metrics."""

    kind: str
    run_id: str
    """The nested run holding params, metrics, plots, profile and the model."""
    model_uri: str
    """The logged model, ``models:/m-<model id>`` (MLflow 3 keeps models outside the run's artifacts)."""
    metrics: dict[str, float]
    """``rmse``, ``mae``, ``r2`` on the held-out split."""
    fit_seconds: float


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of ``train_and_register``: what was registered, where, and how every model did."""

    model_name: str
    version: str
    """The registered version, as a string ("3")."""
    model_uri: str
    """``models:/<name>/<version>``: pins exactly this version (aliases move)."""
    run_id: str
    """Run of the registered version (where ``reference_profile.json`` and the model live)."""
    best_kind: str
    metrics: dict[str, float]
    """Metrics of the registered model."""
    aliases: tuple[str, ...]
    """Aliases set on the version by this run (``challenger``, and ``champion`` if promoted)."""
    stage: str
    promoted: bool
    """True when ``champion``/``Production`` now point at this version: the cue to announce it."""
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    results: tuple[ModelResult, ...]
    fallback_path: str
    metadata_path: str
    profile_path: str
    trained_at: str
    """ISO 8601 UTC."""
    seconds: float
    """Wall time of the whole call."""
    n_train: int = 0
    n_test: int = 0
    archived_versions: tuple[str, ...] = field(default=())
    """Versions moved out of Production by the promotion."""

    @property
    def metrics_by_model(self) -> dict[str, dict[str, float]]:
        """Model kind -> its test metrics."""
        return {r.kind: dict(r.metrics) for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for logs, the demo, an announcement)."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
            "best_kind": self.best_kind,
            "metrics": self.metrics,
            "aliases": list(self.aliases),
            "stage": self.stage,
            "promoted": self.promoted,
            "parent_run_id": self.parent_run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": self.tracking_uri,
            "models": {
                r.kind: {"run_id": r.run_id, "fit_seconds": round(r.fit_seconds, 3), **r.metrics}
                for r in self.results
            },
            "fallback_path": self.fallback_path,
            "metadata_path": self.metadata_path,
            "profile_path": self.profile_path,
            "trained_at": self.trained_at,
            "seconds": round(self.seconds, 3),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "archived_versions": list(self.archived_versions),
        }

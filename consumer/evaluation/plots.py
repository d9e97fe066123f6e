"""Live RMSE per model version over time, as a PNG (``make demo`` draws it; any run can).

The points come from MLflow: each version's serving run holds ``live_<role>_rmse`` logged by the evaluator
(``mlflow_log``) with its timestamps, so ``live_rmse_history`` reads them back and ``plot_live_rmse`` draws one
line per version and role. Built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no display).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from consumer.evaluation.stats import ROLES

logger = logging.getLogger(__name__)

Series = Mapping[str, Sequence[tuple[int, float]]]
"""label ("version 3 (champion)") -> (epoch ms, RMSE) points."""


def live_rmse_history(client: MlflowClient, model_name: str, versions: Iterable[str],
                      roles: Sequence[str] = ROLES) -> dict[str, list[tuple[int, float]]]:
    """Each version's logged live RMSE per role, from its serving run (versions without any are left out)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for version in versions:
        run_id = client.get_model_version(model_name, version).run_id
        if not run_id:
            continue
        for role in roles:
            history = client.get_metric_history(run_id, f"live_{role}_rmse")
            if history:
                out[f"version {version} ({role})"] = sorted((m.timestamp, m.value) for m in history)
    return out


def plot_live_rmse(series: Series, path: str | Path, *, title: str = "Live RMSE per model version") -> Path:
    """Write the lines to ``path`` (PNG); the x axis is minutes since the first point."""
    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    starts = [points[0][0] for points in series.values() if points]
    origin = min(starts) if starts else 0
    for label, points in sorted(series.items()):
        if not points:
            continue
        ax.plot([(t - origin) / 60_000 for t, _ in points], [v for _, v in points], marker=".", label=label)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RMSE over the sliding window ($)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize="small")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    logger.info("live RMSE plot written to %s", out)
    return out

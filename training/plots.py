"""The training plots: model comparison, predicted vs actual, residuals.

Figures are built with ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot), so there is
no global figure state, no GUI backend and nothing to close; ``mlflow.log_figure`` saves them as PNG.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

METRIC_LABELS: dict[str, str] = {
    "rmse": "RMSE ($, lower is better)",
    "mae": "MAE ($, lower is better)",
    "r2": "R² (higher is better)",
}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas so savefig needs no backend selection
    return fig


def comparison_chart(metrics: Mapping[str, Mapping[str, float]], best: str | None = None) -> Figure:
    """Bar chart of RMSE, MAE and R² per model (one panel per metric, since scales differ).

    :param metrics: model kind -> {"rmse": ..., "mae": ..., "r2": ...}.
    :param best: kind to highlight (the one registered), if any.
    """
    kinds = list(metrics)
    fig = _figure(4.2 * len(METRIC_LABELS), 4.2)
    axes = fig.subplots(1, len(METRIC_LABELS))
    colors = ["tab:orange" if kind == best else "tab:blue" for kind in kinds]
    for ax, (key, label) in zip(np.atleast_1d(axes), METRIC_LABELS.items(), strict=True):
        values = [float(metrics[kind][key]) for kind in kinds]
        bars = ax.bar(range(len(kinds)), values, color=colors)
        ax.set_xticks(range(len(kinds)), [k.replace("_", "\n") for k in kinds], fontsize=8)
        ax.set_title(label, fontsize=10)
        fmt = "{:.3f}" if key == "r2" else "{:,.0f}"
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
        ax.margins(y=0.15)
    fig.suptitle("Model comparison on the held-out split" + (f" (best: {best})" if best else ""))
    return fig


def predicted_vs_actual(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray,
                        title: str) -> Figure:
    """Scatter of predictions against the true values, with the y = x line.

    :param y_true: held-out targets.
    :param y_pred: the model's predictions for them.
    :param title: figure title (the model kind).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    fig = _figure(6, 6)
    ax = fig.subplots()
    ax.scatter(t, p, s=4, alpha=0.3)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="tab:red", linewidth=1, label="perfect prediction")
    ax.set_xlabel("actual median_house_value ($)")
    ax.set_ylabel("predicted ($)")
    ax.set_title(f"{title}: predicted vs actual")
    ax.legend(loc="upper left")
    return fig


def residuals_plot(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray,
                   title: str) -> Figure:
    """Residuals (actual - predicted) against predictions, and their histogram.

    :param y_true: held-out targets.
    :param y_pred: the model's predictions for them.
    :param title: figure title (the model kind).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    residuals = t - p
    fig = _figure(11, 4.5)
    scatter_ax, hist_ax = fig.subplots(1, 2)
    scatter_ax.scatter(p, residuals, s=4, alpha=0.3)
    scatter_ax.axhline(0.0, color="tab:red", linewidth=1)
    scatter_ax.set_xlabel("predicted ($)")
    scatter_ax.set_ylabel("residual: actual - predicted ($)")
    hist_ax.hist(residuals, bins=50)
    hist_ax.set_xlabel("residual ($)")
    hist_ax.set_ylabel("count")
    fig.suptitle(f"{title}: residuals (mean {residuals.mean():,.0f}, sd {residuals.std():,.0f})")
    return fig

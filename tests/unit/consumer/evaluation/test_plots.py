"""consumer.evaluation.plots: a PNG with one line per version and role."""

from __future__ import annotations

from pathlib import Path

from consumer.evaluation.plots import plot_live_rmse


def test_writes_a_png(tmp_path: Path) -> None:
    out = plot_live_rmse({"version 1 (champion)": [(0, 50_000.0), (60_000, 48_000.0)],
                          "version 2 (canary)": [(30_000, 45_000.0)], "empty": []}, tmp_path / "sub" / "live.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_live_rmse({}, tmp_path / "none.png").stat().st_size > 0

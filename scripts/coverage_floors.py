"""Enforce coverage floors per package set (pytest-cov's --cov-fail-under is one global number).

Reads coverage.py's JSON report (``pytest --cov-branch --cov-report=json:coverage.json``) and the committed table
``scripts/coverage_floors.toml``; prints line and branch coverage of each set and exits 1 naming every set
under its floor.

Usage: python scripts/coverage_floors.py [coverage.json] [--floors scripts/coverage_floors.toml]
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FLOORS = ROOT / "scripts" / "coverage_floors.toml"
HEADROOM = 3.0
"""A set this many points over its floor gets a note to raise the floor (not a failure)."""


@dataclass(frozen=True)
class Floor:
    name: str
    paths: tuple[str, ...]
    lines: float
    branches: float


@dataclass(frozen=True)
class Reached:
    files: int
    statements: int
    covered_lines: int
    branches: int
    covered_branches: int

    @property
    def line_percent(self) -> float:
        return 100.0 * self.covered_lines / self.statements if self.statements else 100.0

    @property
    def branch_percent(self) -> float:
        return 100.0 * self.covered_branches / self.branches if self.branches else 100.0


def load_floors(path: Path) -> list[Floor]:
    with open(path, "rb") as fh:
        table = tomllib.load(fh)
    return [
        Floor(name, tuple(entry["paths"]), float(entry["lines"]), float(entry["branches"]))
        for name, entry in table.get("sets", {}).items()
    ]


def _relative(file_name: str) -> str:
    path = Path(file_name)
    if path.is_absolute():
        try:
            path = path.relative_to(ROOT)
        except ValueError:
            return file_name
    return path.as_posix()


def reached(report: Mapping[str, Any], paths: Sequence[str]) -> Reached:
    """Line and branch counts summed over the report's files under any of ``paths``."""
    totals = [0, 0, 0, 0, 0]
    for file_name, data in report.get("files", {}).items():
        if not _relative(file_name).startswith(tuple(paths)):
            continue
        summary = data["summary"]
        for index, value in enumerate((1, summary["num_statements"], summary["covered_lines"],
                                       summary.get("num_branches", 0), summary.get("covered_branches", 0))):
            totals[index] += value
    return Reached(*totals)


def check(report: Mapping[str, Any], floors: Sequence[Floor]) -> tuple[list[str], list[str]]:
    """(table lines to print, failure messages)."""
    lines = [f"{'package set':<24} {'lines':>7} {'floor':>6} {'branches':>9} {'floor':>6}  files"]
    failures: list[str] = []
    for floor in floors:
        got = reached(report, floor.paths)
        paths = ", ".join(floor.paths)
        if not got.files:
            failures.append(f"{floor.name} ({paths}): no measured file (was the suite run with --cov for it?)")
            continue
        lines.append(f"{floor.name:<24} {got.line_percent:6.1f}% {floor.lines:5.1f}% {got.branch_percent:8.1f}% "
                     f"{floor.branches:5.1f}%  {got.files} ({paths})")
        for kind, percent, minimum in (("line", got.line_percent, floor.lines),
                                       ("branch", got.branch_percent, floor.branches)):
            if percent < minimum:
                failures.append(f"{floor.name} ({paths}): {kind} coverage {percent:.1f}% is under its floor "
                                f"{minimum:.0f}%")
            elif percent >= minimum + HEADROOM:
                lines.append(f"  note: {floor.name} {kind} coverage {percent:.1f}% is {percent - minimum:.1f} points "
                             "over its floor; consider raising it in scripts/coverage_floors.toml")
    return lines, failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("report", nargs="?", default="coverage.json", type=Path, help="coverage.py JSON report")
    parser.add_argument("--floors", default=DEFAULT_FLOORS, type=Path, help="the table of floors (TOML)")
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"coverage floors: cannot read the coverage report {args.report}: {exc}", file=sys.stderr)
        return 2
    table, failures = check(report, load_floors(args.floors))
    print("\n".join(table))
    for failure in failures:
        print(f"coverage floors: FAILED {failure}", file=sys.stderr)
    if not failures:
        print("coverage floors: all met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

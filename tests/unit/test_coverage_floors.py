"""scripts/coverage_floors.py: sums a coverage.py JSON report per package set and fails naming the set, what it
reached and its floor."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coverage_floors_script", PROJECT_ROOT / "scripts" /
                                                  "coverage_floors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


floors = _load()


def _file(statements: int, covered: int, branches: int, covered_branches: int) -> dict:
    return {"summary": {"num_statements": statements, "covered_lines": covered, "num_branches": branches,
                        "covered_branches": covered_branches}}


REPORT = {"files": {
    "schemas/a.py": _file(100, 95, 10, 9),
    "schemas/b.py": _file(100, 85, 10, 8),   # schemas: 90.0 % lines, 85.0 % branches
    "consumer/core/c.py": _file(10, 10, 0, 0),
    str(PROJECT_ROOT / "consumer/kafka/d.py"): _file(50, 30, 4, 1),  # absolute paths count too
}}


def test_sets_sum_their_files() -> None:
    got = floors.reached(REPORT, ["schemas/"])
    assert (got.files, got.line_percent, got.branch_percent) == (2, 90.0, 85.0)
    kafka = floors.reached(REPORT, ["consumer/kafka/", "consumer/models/"])
    assert (kafka.files, kafka.line_percent, kafka.branch_percent) == (1, 60.0, 25.0)
    assert floors.reached(REPORT, ["consumer/core/"]).branch_percent == 100.0  # no branch: nothing missed


def test_a_set_under_its_floor_fails_naming_it() -> None:
    table, failures = floors.check(REPORT, [floors.Floor("schemas", ("schemas/",), 90.0, 86.0)])
    assert failures == ["schemas (schemas/): branch coverage 85.0% is under its floor 86%"]
    assert any(line.startswith("schemas") and "90.0%" in line for line in table)
    _, failures = floors.check(REPORT, [floors.Floor("schemas", ("schemas/",), 90.0, 85.0)])
    assert failures == []  # exactly at the floor passes


def test_a_set_without_measured_files_fails() -> None:
    _, failures = floors.check(REPORT, [floors.Floor("x", ("nowhere/",), 1.0, 1.0)])
    assert failures and "no measured file" in failures[0]


def test_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "coverage.json"
    report.write_text(json.dumps(REPORT))
    table = tmp_path / "floors.toml"
    table.write_text('[sets.schemas]\npaths = ["schemas/"]\nlines = 95\nbranches = 80\n')
    assert floors.main([str(report), "--floors", str(table)]) == 1
    assert "schemas (schemas/): line coverage 90.0% is under its floor 95%" in capsys.readouterr().err
    table.write_text('[sets.schemas]\npaths = ["schemas/"]\nlines = 89\nbranches = 80\n')
    assert floors.main([str(report), "--floors", str(table)]) == 0
    assert floors.main([str(tmp_path / "missing.json"), "--floors", str(table)]) == 2


def test_the_committed_floors_meet_the_issue() -> None:
    committed = {floor.name: floor for floor in floors.load_floors(floors.DEFAULT_FLOORS)}
    assert committed["schemas"].lines >= 90 and committed["scoring-core"].lines >= 90
    assert committed["kafka-loop-and-reload"].lines >= 80

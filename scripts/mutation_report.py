"""Turn mutmut's results (mutants/**/*.meta) into docs/mutation-report.md: the score, per file and in all, and every
surviving mutant with its diff and the reason it survives.

Reasons are committed in docs/mutation-reasons.toml: ``[[reason]]`` entries of mutant-name glob patterns (and/or
a regular expression over the mutant's changed lines) with a reason; the first that matches explains a survivor.
A survivor no reason matches is listed as "unexplained: write a test".

Usage: python scripts/mutation_report.py [--rerun-survivors] [--max-children N] [--output docs/mutation-report.md]
       [--note "how this run was made"]

``--rerun-survivors`` first runs mutmut again on the survivors (and the mutants without tests) of the cached
results: mutmut keeps a verdict until the mutated function changes, so a survivor that a new test kills is only
seen as killed when re-run.
Run from the repository root after ``mutmut run`` (``make mutate`` does both).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
REASONS = ROOT / "docs" / "mutation-reasons.toml"
REPORT = ROOT / "docs" / "mutation-report.md"

# mutmut's exit codes per verdict (mutmut/stats.py); anything else is "suspicious".
STATUS_BY_EXIT_CODE: Mapping[int | None, str] = {
    1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 2: "interrupted", None: "not checked",
    34: "skipped", 35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
    37: "caught by type check", -11: "segfault", -9: "segfault",
}
KILLED = {"killed", "timeout", "caught by type check"}
"""Verdicts where the mutant did not pass the tests (mutmut's own score counts timeouts as kills too). A
"segfault" is usually a worker killed from outside (an interrupted run), so it is not counted as a kill."""


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    status: str

    @property
    def function(self) -> str:
        return self.name.rsplit("__mutmut_", 1)[0]


@dataclass(frozen=True)
class Reason:
    patterns: tuple[str, ...]
    changed: re.Pattern[str] | None
    why: str

    def explains(self, mutant: Mutant, diff: str) -> bool:
        if self.patterns and not any(fnmatch.fnmatchcase(mutant.name, p) for p in self.patterns):
            return False
        if self.changed is not None:
            return self.changed.search("\n".join(changed_lines(diff))) is not None
        return bool(self.patterns)


def status(exit_code: int | None) -> str:
    return STATUS_BY_EXIT_CODE.get(exit_code, "suspicious")


def load_mutants(mutants_dir: Path) -> list[Mutant]:
    found: list[Mutant] = []
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        relative = meta.relative_to(mutants_dir).as_posix()[: -len(".meta")]
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, exit_code in data.get("exit_code_by_key", {}).items():
            found.append(Mutant(name, relative, status(exit_code)))
    return found


def load_reasons(path: Path) -> list[Reason]:
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        table = tomllib.load(fh)
    return [Reason(tuple(entry.get("mutants", ())),
                   re.compile(entry["changed"], re.MULTILINE) if "changed" in entry else None, entry["why"])
            for entry in table.get("reason", [])]


def mutant_diff(mutant: Mutant) -> str:
    """The unified diff of one mutant against the original function (mutmut's own renderer), or ''."""
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        return str(get_diff_for_mutant(mutant.name, path=mutant.path))
    except Exception as exc:  # a renderer that changed between mutmut versions: the report still lists it
        return f"(diff unavailable: {type(exc).__name__}: {exc})"


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def score(mutants: Iterable[Mutant]) -> tuple[int, int]:
    """(killed, counted): mutants not checked or skipped do not count."""
    counted = [m for m in mutants if m.status not in ("not checked", "skipped", "interrupted")]
    return sum(m.status in KILLED for m in counted), len(counted)


def percent(killed: int, counted: int) -> str:
    return f"{100.0 * killed / counted:.1f} %" if counted else "n/a"


def render(mutants: Sequence[Mutant], reasons: Sequence[Reason], commit: str = "",
           note: str = "") -> tuple[str, int]:
    """(the markdown report, number of unexplained survivors)."""
    killed, counted = score(mutants)
    by_status = Counter(m.status for m in mutants)
    survivors = [m for m in mutants if m.status in ("survived", "no tests", "suspicious", "segfault")]
    explained: list[tuple[Mutant, str, str]] = []
    unexplained: list[tuple[Mutant, str]] = []
    for mutant in survivors:
        diff = mutant_diff(mutant)
        reason = next((r.why for r in reasons if r.explains(mutant, diff)), None)
        if reason is None:
            unexplained.append((mutant, diff))
        else:
            explained.append((mutant, diff, reason))
    equivalent = len(explained)
    lines = [
        "# Mutation testing report",
        "",
        "Generated by `make mutate` (mutmut over `schemas/` and `consumer/core/`, each mutant run against the unit",
        "tests that reach it; configuration in pyproject.toml `[tool.mutmut]`). Do not edit by hand: add a test, or",
        "a reason in `docs/mutation-reasons.toml`, and run `make mutate` again.",
        "",
        "Mutated: every module of `schemas/` and `consumer/core/` but the packages' `__init__.py` (the globs take",
        "new modules in: `batch_decode`, `batch_validation`, `routing` and `compiled_trees` are). `compiled_trees`",
        "stays in although two of its unit tests compile a model's trees with the machine's C compiler (a few",
        "seconds per mutant that reaches them; without `cc`/`gcc` they skip and the faked-compiler tests remain).",
        "",
        *([f"Source and tests at commit `{commit}`.", ""] if commit else []),
        *([note, ""] if note else []),
        f"**Score: {killed} of {counted} mutants killed ({percent(killed, counted)}).** "
        f"Survivors explained (equivalent or not worth a test, reason below): {equivalent}; "
        f"unexplained: {len(unexplained)}. "
        f"Killed counting the explained ones as equivalent: {percent(killed, counted - equivalent)}.",
        "",
        "| verdict | mutants |",
        "|---|---:|",
        *(f"| {name} | {count} |" for name, count in sorted(by_status.items(), key=lambda kv: -kv[1])),
        "",
        "## Per file",
        "",
        "| file | killed | survived | no tests | score |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in sorted({m.path for m in mutants}):
        of_file = [m for m in mutants if m.path == path]
        file_killed, file_counted = score(of_file)
        lines.append(f"| `{path}` | {file_killed} | {sum(m.status == 'survived' for m in of_file)} "
                     f"| {sum(m.status == 'no tests' for m in of_file)} | {percent(file_killed, file_counted)} |")
    lines += ["", "## Unexplained survivors (a test to write)", ""]
    if not unexplained:
        lines.append("None.")
    for mutant, diff in unexplained:
        lines += [f"- `{mutant.name}` ({mutant.status}, `{mutant.path}`)", "", "  ```diff",
                  *(f"  {line}" for line in changed_lines(diff)), "  ```"]
    lines += ["", "## Explained survivors", ""]
    by_reason: dict[str, list[tuple[Mutant, str]]] = {}
    for mutant, diff, reason in explained:
        by_reason.setdefault(reason, []).append((mutant, diff))
    if not by_reason:
        lines.append("None.")
    for reason, entries in by_reason.items():
        lines += [f"### {reason}", ""]
        for mutant, diff in entries:
            change = " / ".join(line.strip() for line in changed_lines(diff))
            lines.append(f"- `{mutant.name}` ({mutant.status}): `{change[:220].replace('`', chr(39))}`")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n", len(unexplained)


def rerun_survivors(mutants: Sequence[Mutant], max_children: int) -> None:
    names = [m.name for m in mutants if m.status in ("survived", "suspicious", "no tests", "not checked", "segfault")]
    if not names:
        return
    print(f"mutation report: re-running {len(names)} survivors (new tests may kill them)", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("mutmut")), "run", "--max-children", str(max_children),
                    *names], cwd=ROOT, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rerun-survivors", action="store_true", help="run mutmut on the cached survivors first")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPORT)
    parser.add_argument("--reasons", type=Path, default=REASONS)
    parser.add_argument("--note", default="", help="a paragraph for the report's header: how the run was made")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # mutmut's diff renderer reads mutants/ and pyproject.toml from the working directory
    if not MUTANTS.is_dir():
        print("mutation report: no mutants/ directory: run `mutmut run` (or `make mutate`) first", file=sys.stderr)
        return 2
    if args.rerun_survivors:
        rerun_survivors(load_mutants(MUTANTS), args.max_children)
    mutants = load_mutants(MUTANTS)
    sys.path.insert(0, str(ROOT))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    report, unexplained = render(mutants, load_reasons(args.reasons), head.stdout.strip(), args.note)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    killed, counted = score(mutants)
    print(f"mutation report: {killed}/{counted} killed ({percent(killed, counted)}), {unexplained} unexplained "
          f"survivors; written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

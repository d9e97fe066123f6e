"""Imports point down only: between the top-level packages, and between the scorer's sub-packages.

Read from the source (ast), so a function-local import counts as much as one at the top of a module. The
layers are the README's code map; an arrow that points up, or a cycle, fails here with the modules named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT

PACKAGE_LAYERS = {"schemas": 0, "config": 1, "consumer": 2, "admin_api": 3, "training": 4, "producer": 5,
                  "stack": 5}
"""Lowest first: a package may import only packages of a lower layer (and itself)."""

CONSUMER_LAYERS = {"consumer.core": 0, "consumer.errors": 1, "consumer.workers": 1, "consumer.metrics": 1,
                   "consumer.state": 2, "consumer.models": 3, "consumer.monitoring": 4, "consumer.kafka": 5,
                   "consumer.service": 6, "consumer.replay": 6, "consumer.evaluation": 6,
                   "consumer.supervisor": 6}
"""Inside consumer/: the pure core at the bottom, the wiring (service) at the top."""

PURE_CORE_FORBIDS = ("confluent_kafka", "mlflow", "aiohttp")
"""Third-party packages the pure scoring core must not import."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGE_LAYERS:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def imported_names(path: Path, name: str) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, at function level) for each import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    # Imports under a module-level ``if TYPE_CHECKING:`` are module-level imports for typing: not hidden.
    typing_only = {id(inner) for node in tree.body
                   if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                   for inner in node.body}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        local = node.col_offset > 0 and id(node) not in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, local
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno, local


def project_target(imported: str) -> str | None:
    """The project module an import refers to (the longest known prefix), or None for third-party code."""
    parts = imported.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def layer_of(module: str, layers: dict[str, int]) -> tuple[str, int] | None:
    for prefix, layer in layers.items():
        if module == prefix or module.startswith(prefix + "."):
            return prefix, layer
    return None


def is_entry_point(module: str) -> bool:
    """``__main__`` modules are composition roots: they may import anything; nothing imports them."""
    return module.endswith(".__main__")


def edges() -> list[tuple[str, str, int, bool]]:
    found = []
    for name, path in MODULES.items():
        for imported, line, local in imported_names(path, name):
            target = project_target(imported)
            if target is not None and target != name:
                found.append((name, target, line, local))
    return found


EDGES = edges()


def upward(importer: str, target: str) -> str | None:
    """Why ``importer -> target`` points up (or sideways), or None when it points down."""
    if is_entry_point(importer):
        return None
    if is_entry_point(target):
        return "imports an entry point (__main__)"
    top_from, top_to = importer.split(".")[0], target.split(".")[0]
    if top_from != top_to:
        if PACKAGE_LAYERS[top_to] >= PACKAGE_LAYERS[top_from]:
            return f"package {top_from} (layer {PACKAGE_LAYERS[top_from]}) imports {top_to} " \
                   f"(layer {PACKAGE_LAYERS[top_to]})"
        return None
    if top_from == "consumer":
        source, goal = layer_of(importer, CONSUMER_LAYERS), layer_of(target, CONSUMER_LAYERS)
        if source is None or goal is None:
            return f"{importer if source is None else target} is in no consumer layer (add it to CONSUMER_LAYERS)"
        if source[0] != goal[0] and goal[1] >= source[1]:
            return f"{source[0]} (layer {source[1]}) imports {goal[0]} (layer {goal[1]})"
    return None


def test_every_import_between_packages_and_consumer_layers_points_down() -> None:
    problems = [f"{importer}:{line} -> {target}: {why}" for importer, target, line, _ in EDGES
                if (why := upward(importer, target)) is not None]
    assert not problems, "imports that point up:\n" + "\n".join(problems)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for importer, target, _, _ in EDGES:
        if not is_entry_point(importer):
            graph[importer].add(target)
    # A package's __init__ is imported on the way to any of its modules, so package -> own module is no cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_nothing_imports_the_service_but_the_entry_point() -> None:
    importers = sorted({importer for importer, target, _, _ in EDGES
                        if target == "consumer.service" and not is_entry_point(importer)})
    assert importers == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("consumer.core")))
def test_the_scoring_core_stays_pure(module: str) -> None:
    third_party = {imported.split(".")[0] for imported, _, _ in imported_names(MODULES[module], module)}
    assert not third_party & set(PURE_CORE_FORBIDS)
    targets = {project_target(imported) for imported, _, _ in imported_names(MODULES[module], module)}
    assert {t for t in targets if t and t.startswith("consumer.") and not t.startswith("consumer.core")} == set()


def test_confluent_kafka_is_imported_by_consumer_kafka_only() -> None:
    offenders = sorted(name for name, path in MODULES.items()
                       if name.startswith("consumer.") and not name.startswith("consumer.kafka")
                       and not is_entry_point(name)
                       and any(imported.split(".")[0] == "confluent_kafka"
                               for imported, _, _ in imported_names(path, name)))
    assert offenders == []


def deferred_on_purpose(path: Path, line: int) -> bool:
    """A function-local import is allowed when a comment says it is deferred: on its line, or above it and the
    imports right before it (one comment may stand for a block of deferred imports)."""
    lines = path.read_text().splitlines()
    index = line - 1
    while index >= 0:
        text = lines[index].strip()
        if "deferred" in text.lower() and "#" in text:
            return True
        if not (text.startswith(("from ", "import ", "#")) or index == line - 1):
            return False
        index -= 1
    return False


def test_no_function_local_imports_of_project_modules_unless_deferred_on_purpose() -> None:
    hidden = sorted(f"{importer}:{line} -> {target}" for importer, target, line, local in EDGES
                    if local and not deferred_on_purpose(MODULES[importer], line))
    assert not hidden, "function-local imports (lift them, or say why they are deferred):\n" + "\n".join(hidden)


def test_the_checker_sees_an_upward_import() -> None:
    """The rules above are not vacuous: known arrows of each kind are judged as they should be."""
    assert upward("schemas.codecs", "consumer.core.scoring") is not None
    assert upward("consumer.core.scoring", "consumer.kafka.loop") is not None
    assert upward("consumer.models.reloader", "consumer.monitoring.drift") is not None
    assert upward("consumer.kafka.loop", "consumer.core.scoring") is None
    assert upward("admin_api.views", "consumer.state") is None
    assert upward("consumer.__main__", "admin_api.app") is None
    assert len(EDGES) > 100


def test_tests_import_no_private_names_of_the_project() -> None:
    """Tests go through public functions: a private helper a test needs as a unit is made public."""
    offenders = []
    for path in sorted((PROJECT_ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGE_LAYERS:
                offenders += [f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.module}.{alias.name}"
                              for alias in node.names
                              if alias.name.startswith("_") and not alias.name.endswith("__")]
    assert not offenders, "tests importing private names:\n" + "\n".join(offenders)

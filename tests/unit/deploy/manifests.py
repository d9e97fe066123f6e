"""Render deploy/kubernetes with kustomize and check what it renders, offline (no cluster, no network).

Built-in kinds are validated against the Kubernetes JSON schemas bundled in the ``kubernetes-validate`` package
(strict: an unknown field is an error); the Prometheus Operator's kinds against the minimal local schemas in
schemas/ beside this file. The PromQL of the alerts is parsed with ``promql-parser``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[3]
KUSTOMIZATION = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSIONS = ("1.30", "1.37")
"""The oldest and newest Kubernetes releases the manifests are checked against."""

Document = dict[str, Any]


def kustomize_command() -> list[str]:
    """``kustomize build`` if installed (.ci/run may put it in .venv/bin), else ``kubectl kustomize``."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if found := shutil.which("kustomize", path=search):
        return [found, "build"]
    if found := shutil.which("kubectl", path=search):
        return [found, "kustomize"]
    raise RuntimeError("neither kustomize nor kubectl is installed: install kubectl, or "
                       "GOBIN=$PWD/.venv/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0")


def render(directory: Path = KUSTOMIZATION) -> list[Document]:
    """The documents ``kustomize build directory`` prints."""
    result = subprocess.run([*kustomize_command(), str(directory)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize failed on {directory}: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load_documents(path: Path) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def schema_errors(document: Document) -> list[str]:
    """Why ``document`` is not a valid object of its kind (empty: valid), for every checked Kubernetes release."""
    name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
    group, _, version = str(document.get("apiVersion")).rpartition("/")
    local = SCHEMAS / f"{str(document.get('kind')).lower()}-{group.split('.')[0]}-{version}.json"
    if local.exists():
        validator = jsonschema.Draft202012Validator(json.loads(local.read_text()))
        return [f"{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name} (Kubernetes {version}): {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: no schema: {exc.message}")
    return errors


def of_kind(documents: list[Document], kind: str) -> list[Document]:
    return [doc for doc in documents if doc["kind"] == kind]


def one(documents: list[Document], kind: str, name: str | None = None) -> Document:
    found = [doc for doc in of_kind(documents, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(documents: list[Document]) -> Iterator[Document]:
    """Every container (and init container) of every workload."""
    for doc in documents:
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def yaml_leaf_paths(document: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``("mlflow.model.name", value)`` for every leaf of a YAML mapping; a mapping's own path comes first."""
    if isinstance(document, dict):
        if prefix:
            yield prefix, document
        for key, value in document.items():
            yield from yaml_leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, document


def promql_selectors(expr: str) -> list[tuple[str, dict[str, str]]]:
    """``(metric name, {label: value})`` of every series selector in ``expr`` (raises ValueError if not PromQL)."""
    found: list[tuple[str, dict[str, str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name: m.value for m in node.matchers.matchers}
            found.append((node.name or labels.get("__name__", ""), labels))

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found

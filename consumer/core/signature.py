"""The signature is the contract: does a model version take the housing record and return one number per row?

Pure: no MLflow. ``Signature.from_mlmodel`` reads the signature as the MLmodel file stores it (``inputs`` and
``outputs`` as JSON lists of column or tensor specs), and ``input_plan`` answers with the columns (and dtypes) the
model is to be given, or raises ``SignatureMismatch`` naming every column and type that does not fit:

- every input column the model *requires* must be one of the record's nine features (``rooms_per_household``
  is not), with a type the record's value fits: ``double`` (or ``float``, which the model asked for) for the
  eight numbers, which may have a fraction and, for ``total_bedrooms``, be missing (NaN), so ``long`` /
  ``integer`` do not fit; ``string`` for ``ocean_proximity``;
- an input column the record does not have is fine only when the signature marks it optional (it has a
  default: the model is not given it); a model that wants fewer of the record's columns gets only those;
- tensor inputs (no column names) do not fit: the scorer hands models named columns;
- the output must be one number per row: one numeric column, or a numeric tensor of shape (-1,) or (-1, 1).

A version without an input signature is judged by its input example's columns (``example_plan``), and
without either it is given all nine columns; the loader then checks its predictions on that example and on
the built-in example record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from schemas.features import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_COLUMNS

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
"""Column types that count as "one number" in an output."""
INPUT_DTYPES: Mapping[str, str] = {"double": "float64", "float": "float32", "string": "object"}
"""The column types a record's value fits, and the dtype the model's frame gets for each."""
NUMERIC_TENSOR_KINDS = frozenset("fiub")
"""numpy dtype kinds of a numeric tensor (float, signed, unsigned, bool)."""

PlanSource = Literal["signature", "input_example", "all_features"]


class SignatureMismatch(ValueError):
    """The model's signature does not fit the housing record; ``problems`` has one line per column or output."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Spec:
    """One input or output of a signature: a named column (``type`` an MLflow data type) or a tensor."""

    name: str | None
    type: str
    """``double``, ``float``, ``long``, ``integer``, ``string``, ``boolean``, ``binary``, ``datetime``...; for a
    tensor, ``tensor``; for a nested type (array, object, map), its JSON."""
    required: bool = True
    """False: the column may be absent (the model has a default for it)."""
    dtype: str | None = None
    """A tensor's numpy dtype (``float64``)."""
    shape: tuple[int, ...] | None = None
    """A tensor's shape, -1 for any size."""

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Spec:
        kind = spec.get("type")
        if kind == "tensor":
            tensor = spec.get("tensor-spec") or {}
            return cls(spec.get("name"), "tensor", bool(spec.get("required", True)), str(tensor.get("dtype")),
                       tuple(int(n) for n in tensor.get("shape") or ()))
        type_ = kind if isinstance(kind, str) and set(spec) <= {"type", "name", "required"} \
            else json.dumps({k: v for k, v in spec.items() if k not in ("name", "required")}, sort_keys=True)
        return cls(spec.get("name"), type_, bool(spec.get("required", True)))

    @property
    def label(self) -> str:
        if self.type == "tensor":
            return f"tensor {self.dtype} {list(self.shape or ())}"
        return self.type


@dataclass(frozen=True)
class Signature:
    """A model version's signature; ``inputs`` / ``outputs`` None when it has no schema for them."""

    inputs: tuple[Spec, ...] | None = None
    outputs: tuple[Spec, ...] | None = None

    @classmethod
    def from_mlmodel(cls, signature: Mapping[str, Any] | None) -> Signature | None:
        """From the MLmodel file's ``signature`` entry (``inputs`` / ``outputs`` as JSON strings or lists);
        None without one."""
        if not signature:
            return None

        def specs(value: Any) -> tuple[Spec, ...] | None:
            if value is None:
                return None
            items = json.loads(value) if isinstance(value, str) else value
            return tuple(Spec.from_dict(item) for item in items or ())

        return cls(specs(signature.get("inputs")), specs(signature.get("outputs")))

    def describe(self) -> dict[str, Any]:
        """JSON-ready: ``{"inputs": ["longitude: double", ...], "outputs": [...]}`` (/api/model/info)."""
        def show(specs: tuple[Spec, ...] | None) -> list[str] | None:
            if specs is None:
                return None
            return [f"{s.name}: {s.label}" + ("" if s.required else " (optional)") if s.name else s.label
                    for s in specs]

        return {"inputs": show(self.inputs), "outputs": show(self.outputs)}


@dataclass(frozen=True)
class InputPlan:
    """What a model is given: these record columns, in this order, each with this dtype (for a DataFrame)."""

    columns: tuple[str, ...]
    dtypes: tuple[str, ...]
    """numpy dtype per column: ``float64``, ``float32`` or ``object``."""
    source: PlanSource

    @property
    def all_features(self) -> bool:
        """The nine columns in FEATURE_COLUMNS order as float64 / object: the record's own frame."""
        return self.columns == FEATURE_COLUMNS and self.dtypes == DEFAULT_PLAN.dtypes

    def describe(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "dtypes": dict(zip(self.columns, self.dtypes, strict=True)),
                "from": self.source}


DEFAULT_PLAN = InputPlan(FEATURE_COLUMNS, tuple("object" if c == CATEGORICAL_COLUMN else "float64"
                                                for c in FEATURE_COLUMNS), "all_features")
"""A model that says nothing about its input gets the record's nine columns."""


def _record_type(column: str) -> str:
    if column == CATEGORICAL_COLUMN:
        return "a string"
    if column == "total_bedrooms":
        return "a number, possibly missing (NaN),"
    return "a number (with a fraction)"


def _input_problems(specs: Sequence[Spec]) -> tuple[list[str], list[tuple[str, str]]]:
    problems: list[str] = []
    taken: list[tuple[str, str]] = []
    if any(spec.type == "tensor" or spec.name is None for spec in specs):
        labels = ", ".join(s.label if s.name is None else f"{s.name}: {s.label}" for s in specs)
        return [f"the input is unnamed ({labels}): the scorer gives a model the record's named columns"], []
    for spec in specs:
        assert spec.name is not None
        if spec.name not in FEATURE_COLUMNS:
            if spec.required:
                problems.append(f"input column {spec.name!r} ({spec.type}) is required but the housing record has "
                                f"no such column (it has {', '.join(FEATURE_COLUMNS)})")
            continue  # optional: the model has a default for it
        wanted = "string" if spec.name == CATEGORICAL_COLUMN else ("double", "float")
        if spec.type not in (wanted if isinstance(wanted, tuple) else (wanted,)):
            want = "string" if isinstance(wanted, str) else "double or float"
            problems.append(f"input column {spec.name!r} is typed {spec.type}, but the record's {spec.name} is "
                            f"{_record_type(spec.name)}: the signature must type it {want}")
            continue
        taken.append((spec.name, INPUT_DTYPES[spec.type]))
    if not problems and not taken:
        problems.append("the signature takes none of the housing record's columns")
    return problems, taken


def _output_problems(specs: Sequence[Spec]) -> list[str]:
    if len(specs) != 1:
        names = ", ".join(s.name or s.label for s in specs) or "nothing"
        return [f"the output must be one number per row, but the signature returns {len(specs)} columns ({names})"]
    spec = specs[0]
    if spec.type == "tensor":
        kind: str
        try:
            kind = np.dtype(spec.dtype).kind
        except TypeError:
            kind = "?"
        shape = spec.shape or ()
        if kind not in NUMERIC_TENSOR_KINDS:
            return [f"the output must be a number, but the signature returns a {spec.label}"]
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1) or len(shape) == 0:
            return [f"the output must be one number per row, but the signature returns a {spec.label}"]
        return []
    if spec.type not in NUMERIC_TYPES:
        return [f"the output must be a number, but the signature returns {spec.name or 'a column'}: {spec.type}"]
    return []


def input_plan(signature: Signature | None, example_dtypes: Mapping[str, str] | None = None) -> InputPlan:
    """The columns a model version is given, checked against its signature (or its input example).

    :param signature: the version's signature, or None when it has none.
    :param example_dtypes: the version's input example, as column -> numpy dtype string, used when the
        signature has no inputs; None when it has no example.
    :raises SignatureMismatch: naming every column and output that does not fit the housing record.
    """
    problems: list[str] = []
    if signature is not None and signature.outputs is not None:
        problems += _output_problems(signature.outputs)
    if signature is not None and signature.inputs is not None:
        input_problems, taken = _input_problems(signature.inputs)
        problems += input_problems
        if problems:
            raise SignatureMismatch(problems)
        return InputPlan(tuple(name for name, _ in taken), tuple(dtype for _, dtype in taken), "signature")
    if problems:
        raise SignatureMismatch(problems)
    if example_dtypes:
        return example_plan(example_dtypes)
    return DEFAULT_PLAN


def example_plan(example_dtypes: Mapping[str, str]) -> InputPlan:
    """The plan of a version without an input signature: its input example's columns, each of which must be a
    record column whose values fit (a number for the eight numbers, text for ``ocean_proximity``)."""
    problems: list[str] = []
    columns: list[str] = []
    for name, dtype in example_dtypes.items():
        if name not in FEATURE_COLUMNS:
            problems.append(f"input example column {name!r} ({dtype}) is not a column of the housing record")
            continue
        kind: str
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            kind = "O" if "str" in dtype.lower() else "?"
        fits = kind in "OSU" if name == CATEGORICAL_COLUMN else kind in "fiu"
        if not fits:
            problems.append(f"input example column {name!r} holds {dtype}, but the record's {name} is "
                            f"{_record_type(name)}")
            continue
        columns.append(name)
    if problems:
        raise SignatureMismatch(problems)
    if not columns:
        raise SignatureMismatch(["the input example has none of the housing record's columns"])
    ordered = tuple(columns)
    return InputPlan(ordered, tuple("object" if c == CATEGORICAL_COLUMN else "float64" for c in ordered),
                     "input_example")


def numeric_only(plan: InputPlan) -> bool:
    """Whether the plan's columns are all numbers (a LightGBM booster takes them as one float matrix)."""
    return all(column in NUMERIC_COLUMNS for column in plan.columns)

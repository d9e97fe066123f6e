"""Signature specs read from an MLmodel file field by field, and an input plan's description (mutation testing
found these shapes unpinned)."""

from __future__ import annotations

import json

import pytest

from consumer.core.signature import DEFAULT_PLAN, InputPlan, Spec


@pytest.mark.parametrize(("raw", "spec"), [
    ({"type": "double", "name": "latitude"}, Spec("latitude", "double", True)),
    ({"type": "double", "name": "x", "required": False}, Spec("x", "double", False)),
    ({"type": "tensor", "name": "t", "tensor-spec": {"dtype": "float64", "shape": [-1, 9]}},
     Spec("t", "tensor", True, "float64", (-1, 9))),
    ({"type": "tensor", "required": False, "tensor-spec": {"dtype": "float32"}},
     Spec(None, "tensor", False, "float32", ())),
    ({"type": "array", "items": {"type": "double"}, "name": "a", "required": True},
     Spec("a", json.dumps({"items": {"type": "double"}, "type": "array"}, sort_keys=True), True)),
    ({"type": "double", "name": "d", "extra": 1}, Spec("d", '{"extra": 1, "type": "double"}', True)),
], ids=["column", "optional", "tensor", "unnamed-tensor", "nested", "extra-keys"])
def test_spec_from_dict(raw: dict, spec: Spec) -> None:
    assert Spec.from_dict(raw) == spec


def test_spec_labels() -> None:
    assert Spec("t", "tensor", True, "float64", (-1, 9)).label == "tensor float64 [-1, 9]"
    assert Spec("x", "double").label == "double"


def test_input_plan_describe() -> None:
    plan = InputPlan(("latitude", "ocean_proximity"), ("float32", "object"), "signature")
    assert plan.describe() == {"columns": ["latitude", "ocean_proximity"],
                               "dtypes": {"latitude": "float32", "ocean_proximity": "object"}, "from": "signature"}
    assert not plan.all_features and DEFAULT_PLAN.all_features
    assert DEFAULT_PLAN.describe()["from"] == "all_features"

"""The signature contract: every way a signature (or an input example) can fail to fit the housing record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumer.core.signature import (
    DEFAULT_PLAN,
    Signature,
    SignatureMismatch,
    example_plan,
    input_plan,
)
from schemas.features import FEATURE_COLUMNS, NUMERIC_COLUMNS


def _col(name: str, type_: str = "double", required: bool = True) -> dict[str, Any]:
    return {"type": type_, "name": name, "required": required}


def _record_inputs() -> list[dict[str, Any]]:
    return [_col(c, "string" if c == "ocean_proximity" else "double") for c in FEATURE_COLUMNS]


ONE_NUMBER = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]


def _signature(inputs: list[dict[str, Any]] | None, outputs: list[dict[str, Any]] | None = ONE_NUMBER) -> Signature:
    # As the MLmodel file stores them: JSON strings.
    stored = {"inputs": None if inputs is None else json.dumps(inputs),
              "outputs": None if outputs is None else json.dumps(outputs)}
    signature = Signature.from_mlmodel(stored)
    assert signature is not None
    return signature


def _mismatch(signature: Signature | None, example: dict[str, str] | None = None) -> str:
    with pytest.raises(SignatureMismatch) as caught:
        input_plan(signature, example)
    return str(caught.value)


def test_the_training_signature_takes_all_nine_columns_as_the_record_has_them() -> None:
    plan = input_plan(_signature(_record_inputs()))
    assert plan.columns == FEATURE_COLUMNS
    assert plan.dtypes == DEFAULT_PLAN.dtypes
    assert plan.all_features and plan.source == "signature"


def test_a_model_wanting_fewer_columns_gets_only_its_own_in_its_order() -> None:
    inputs = [_col("median_income"), _col("latitude"), _col("ocean_proximity", "string")]
    plan = input_plan(_signature(inputs))
    assert plan.columns == ("median_income", "latitude", "ocean_proximity")
    assert plan.dtypes == ("float64", "float64", "object")
    assert not plan.all_features


def test_a_float_column_is_given_as_float32() -> None:
    plan = input_plan(_signature([_col("median_income", "float")]))
    assert plan.dtypes == ("float32",)


def test_a_required_column_the_record_does_not_have_is_a_mismatch_naming_it() -> None:
    message = _mismatch(_signature([*_record_inputs(), _col("rooms_per_household")]))
    assert "rooms_per_household" in message and "required" in message


def test_an_optional_column_the_record_does_not_have_is_not_given() -> None:
    plan = input_plan(_signature([*_record_inputs(), _col("rooms_per_household", required=False)]))
    assert plan.columns == FEATURE_COLUMNS


@pytest.mark.parametrize(("column", "type_"), [
    ("ocean_proximity", "double"),   # a category typed as a number
    ("ocean_proximity", "long"),
    ("median_income", "string"),     # a number typed as text
    ("total_rooms", "long"),         # the record's numbers may have a fraction
    ("total_bedrooms", "integer"),   # and total_bedrooms may be missing: no integer holds NaN
    ("latitude", "boolean"),
])
def test_a_wrongly_typed_column_is_a_mismatch_naming_column_and_type(column: str, type_: str) -> None:
    inputs = [_col(c["name"], type_) if c["name"] == column else c for c in _record_inputs()]
    message = _mismatch(_signature(inputs))
    assert repr(column) in message and f"typed {type_}" in message


def test_every_mismatching_column_is_named_at_once() -> None:
    inputs = [_col("ocean_proximity", "double"), _col("median_income", "string"), _col("rooms_per_household")]
    with pytest.raises(SignatureMismatch) as caught:
        input_plan(_signature(inputs))
    assert len(caught.value.problems) == 3


def test_tensor_inputs_are_a_mismatch() -> None:
    message = _mismatch(_signature([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 8]}}]))
    assert "unnamed" in message


def test_a_signature_taking_none_of_the_record_columns_is_a_mismatch() -> None:
    assert "none of" in _mismatch(_signature([_col("rooms_per_household", required=False)]))


@pytest.mark.parametrize("outputs", [
    [_col("low"), _col("high")],                                                     # two columns
    [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}],     # two values per row
    [_col("label", "string")],                                                       # not a number
    [{"type": "tensor", "tensor-spec": {"dtype": "object", "shape": [-1]}}],
])
def test_an_output_that_is_not_one_number_per_row_is_a_mismatch(outputs: list[dict[str, Any]]) -> None:
    assert "output" in _mismatch(_signature(_record_inputs(), outputs))


@pytest.mark.parametrize("outputs", [
    [_col("prediction")], [_col("prediction", "float")], [_col("n", "long")],
    [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}], None,
])
def test_one_number_per_row_fits(outputs: list[dict[str, Any]] | None) -> None:
    assert input_plan(_signature(_record_inputs(), outputs)).columns == FEATURE_COLUMNS


def test_a_two_column_output_is_named_with_a_wrong_input_in_one_message() -> None:
    inputs = [_col("ocean_proximity", "double")]
    message = _mismatch(_signature(inputs, [_col("low"), _col("high")]))
    assert "low, high" in message and "'ocean_proximity'" in message


def test_no_signature_and_no_example_gives_all_nine_columns() -> None:
    assert input_plan(None) == DEFAULT_PLAN
    assert input_plan(Signature.from_mlmodel(None)) == DEFAULT_PLAN


def test_no_signature_takes_the_input_example_columns() -> None:
    dtypes = {"median_income": "float64", "housing_median_age": "int64", "ocean_proximity": "object"}
    plan = input_plan(None, dtypes)
    assert plan.columns == ("median_income", "housing_median_age", "ocean_proximity")
    assert plan.dtypes == ("float64", "float64", "object")
    assert plan.source == "input_example"


def test_an_input_signature_wins_over_the_example() -> None:
    plan = input_plan(_signature([_col("latitude")]), {"median_income": "float64"})
    assert plan.columns == ("latitude",)


@pytest.mark.parametrize(("dtypes", "named"), [
    ({"rooms_per_household": "float64", "latitude": "float64"}, "rooms_per_household"),
    ({"ocean_proximity": "float64"}, "ocean_proximity"),
    ({"median_income": "object"}, "median_income"),
])
def test_an_example_that_does_not_fit_is_a_mismatch(dtypes: dict[str, str], named: str) -> None:
    assert named in _mismatch(None, dtypes)


def test_an_example_plan_of_numbers_only_is_numeric() -> None:
    plan = example_plan({c: "float64" for c in NUMERIC_COLUMNS})
    assert "ocean_proximity" not in plan.columns


def test_describe_lists_inputs_and_outputs() -> None:
    described = _signature([_col("latitude"), _col("x", required=False)]).describe()
    assert described == {"inputs": ["latitude: double", "x: double (optional)"],
                         "outputs": ["tensor float64 [-1]"]}

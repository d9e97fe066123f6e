"""The signature contract's exact messages: each mismatch names the column, its type and what would fit (the
text an operator reads in the refused version's log and /api/model/info), and every problem is named at once."""

from __future__ import annotations

import pytest

from consumer.core.signature import (
    InputPlan,
    Signature,
    SignatureMismatch,
    Spec,
    example_plan,
    input_plan,
)
from schemas.features import FEATURE_COLUMNS

ONE_NUMBER = (Spec(None, "tensor", True, "float64", (-1,)),)
ALL_COLUMNS = ", ".join(FEATURE_COLUMNS)


def _problems(signature: Signature | None, example: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(SignatureMismatch) as caught:
        input_plan(signature, example)
    return caught.value.problems


def _example_problems(example: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(SignatureMismatch) as caught:
        example_plan(example)
    return caught.value.problems


def test_the_message_joins_the_problems_with_semicolons() -> None:
    assert str(SignatureMismatch(["one", "two"])) == "one; two"


def test_inputs_stored_as_a_list_are_read_as_well_as_json_text() -> None:
    signature = Signature.from_mlmodel({"inputs": [{"type": "double", "name": "longitude"}], "outputs": None})
    assert signature == Signature(inputs=(Spec("longitude", "double"),), outputs=None)


def test_a_plan_whose_dtypes_do_not_match_its_columns_cannot_be_described() -> None:
    with pytest.raises(ValueError):
        InputPlan(("longitude", "latitude"), ("float64",), "signature").describe()


@pytest.mark.parametrize(("column", "type_", "message"), [
    ("ocean_proximity", "double",
     "input column 'ocean_proximity' is typed double, but the record's ocean_proximity is a string: "
     "the signature must type it string"),
    ("total_bedrooms", "long",
     "input column 'total_bedrooms' is typed long, but the record's total_bedrooms is a number, possibly missing "
     "(NaN),: the signature must type it double or float"),
    ("longitude", "integer",
     "input column 'longitude' is typed integer, but the record's longitude is a number (with a fraction): "
     "the signature must type it double or float"),
])
def test_a_wrongly_typed_column_says_what_the_record_holds_and_what_fits(column: str, type_: str,
                                                                         message: str) -> None:
    assert _problems(Signature(inputs=(Spec(column, type_),), outputs=ONE_NUMBER)) == (message,)


def test_a_type_that_is_only_part_of_string_does_not_fit_the_text_column() -> None:
    assert _problems(Signature(inputs=(Spec("ocean_proximity", "str"),))) == (
        "input column 'ocean_proximity' is typed str, but the record's ocean_proximity is a string: "
        "the signature must type it string",)


def test_a_named_tensor_input_is_unnamed_columns_to_the_scorer() -> None:
    assert _problems(Signature(inputs=(Spec("longitude", "tensor", True, "float64", (-1,)),))) == (
        "the input is unnamed (longitude: tensor float64 [-1]): the scorer gives a model the record's named "
        "columns",)


def test_an_unnamed_input_lists_every_input_with_its_name_when_it_has_one() -> None:
    inputs = (Spec(None, "tensor", True, "float64", (-1, 8)), Spec("longitude", "double"), Spec(None, "string"))
    assert _problems(Signature(inputs=inputs)) == (
        "the input is unnamed (tensor float64 [-1, 8], longitude: double, string): the scorer gives a model the "
        "record's named columns",)


def test_a_required_column_the_record_lacks_is_named_with_the_columns_it_has() -> None:
    assert _problems(Signature(inputs=(Spec("rooms_per_household", "double"),))) == (
        f"input column 'rooms_per_household' (double) is required but the housing record has no such column "
        f"(it has {ALL_COLUMNS})",)


def test_the_columns_after_an_optional_unknown_one_are_still_taken() -> None:
    plan = input_plan(Signature(inputs=(Spec("extra", "double", required=False), Spec("longitude", "double"),
                                        Spec("ocean_proximity", "string"))))
    assert plan == InputPlan(("longitude", "ocean_proximity"), ("float64", "object"), "signature")


def test_a_signature_of_optional_unknown_columns_only_takes_nothing() -> None:
    assert _problems(Signature(inputs=(Spec("extra", "double", required=False),))) == (
        "the signature takes none of the housing record's columns",)


def test_no_outputs_are_named_as_nothing() -> None:
    assert _problems(Signature(outputs=())) == (
        "the output must be one number per row, but the signature returns 0 columns (nothing)",)


def test_a_tensor_output_of_three_dimensions_is_not_one_number_per_row() -> None:
    assert _problems(Signature(outputs=(Spec(None, "tensor", True, "float64", (-1, 1, 1)),))) == (
        "the output must be one number per row, but the signature returns a tensor float64 [-1, 1, 1]",)


@pytest.mark.parametrize(("name", "shown"), [(None, "a column"), ("label", "label")])
def test_a_text_output_column_is_named_or_called_a_column(name: str | None, shown: str) -> None:
    assert _problems(Signature(outputs=(Spec(name, "string"),))) == (
        f"the output must be a number, but the signature returns {shown}: string",)


def test_a_bad_output_without_input_schema_is_a_mismatch_before_the_example_is_read() -> None:
    assert _problems(Signature(outputs=(Spec("label", "string"),)), {"longitude": "float64"}) == (
        "the output must be a number, but the signature returns label: string",)


def test_output_and_input_problems_are_named_together() -> None:
    assert _problems(Signature(inputs=(Spec("longitude", "long"),), outputs=(Spec("label", "string"),))) == (
        "the output must be a number, but the signature returns label: string",
        "input column 'longitude' is typed long, but the record's longitude is a number (with a fraction): "
        "the signature must type it double or float",
    )


def test_every_bad_example_column_is_named_after_an_unknown_one() -> None:
    assert _example_problems({"extra": "float64", "ocean_proximity": "float64", "longitude": "object"}) == (
        "input example column 'extra' (float64) is not a column of the housing record",
        "input example column 'ocean_proximity' holds float64, but the record's ocean_proximity is a string",
        "input example column 'longitude' holds object, but the record's longitude is a number (with a fraction)",
    )


def test_an_example_of_pandas_text_dtype_fits_the_text_column() -> None:
    plan = example_plan({"ocean_proximity": "string[python]", "longitude": "float64"})
    assert plan == InputPlan(("ocean_proximity", "longitude"), ("object", "float64"), "input_example")


def test_an_example_of_pandas_text_dtype_does_not_fit_a_number_column() -> None:
    assert _example_problems({"total_bedrooms": "String"}) == (
        "input example column 'total_bedrooms' holds String, but the record's total_bedrooms is a number, "
        "possibly missing (NaN),",)


def test_an_example_of_an_unknown_non_numpy_dtype_does_not_fit_the_text_column() -> None:
    assert _example_problems({"ocean_proximity": "Int64"}) == (
        "input example column 'ocean_proximity' holds Int64, but the record's ocean_proximity is a string",)


def test_an_empty_example_has_none_of_the_columns() -> None:
    assert _example_problems({}) == ("the input example has none of the housing record's columns",)

"""one_per_row's messages name the output's shape or its count against the rows (the text a refused model
version and a failed batch are logged with)."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.core.handle import OutputShapeError, one_per_row


def test_two_values_per_row_names_the_shape() -> None:
    with pytest.raises(OutputShapeError) as caught:
        one_per_row(np.ones((4, 2)))
    assert str(caught.value) == "the model returned an output of shape (4, 2): one number per row expected"


def test_a_scalar_output_names_its_empty_shape() -> None:
    with pytest.raises(OutputShapeError) as caught:
        one_per_row(3.0)
    assert str(caught.value) == "the model returned an output of shape (): one number per row expected"


def test_the_wrong_number_of_predictions_is_counted_against_the_rows() -> None:
    with pytest.raises(OutputShapeError) as caught:
        one_per_row([1.0, 2.0, 3.0], rows=4)
    assert str(caught.value) == "model returned 3 predictions for 4 rows"

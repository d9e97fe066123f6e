"""Registry validation (names, stages, aliases, versions) and MLflow errors mapped to HTTP statuses."""

from __future__ import annotations

from typing import Any

import pytest

from admin_api.registry import map_mlflow_error, validate_alias, validate_model_name, validate_stage, validate_version
from tests.unit.admin_api.api_errors import raises


# --- names ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["champion", "challenger", "blue-green_2", "A", "x" * 255, "v1a", "latest2"])
def test_good_aliases(alias: str) -> None:
    assert validate_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "latest", "LATEST", "v1", "V42", "a b", "a.b", "a/b", "é", "x" * 256, None, 3,
                                   ["a"]])
def test_bad_aliases(alias: Any) -> None:
    with raises("invalid_alias"):
        validate_alias(alias)


@pytest.mark.parametrize("stage", ["None", "Staging", "Production", "Archived"])
def test_good_stages(stage: str) -> None:
    assert validate_stage(stage) == stage


@pytest.mark.parametrize("stage", ["production", "PRODUCTION", "Prod", "", None, 1, "Development"])
def test_bad_stages(stage: Any) -> None:
    with raises("invalid_stage"):
        validate_stage(stage)


@pytest.mark.parametrize(("version", "expected"), [("3", "3"), (3, "3"), ("10", "10"), (9_999_999_999, "9999999999")])
def test_good_versions(version: Any, expected: str) -> None:
    assert validate_version(version) == expected


@pytest.mark.parametrize("version", ["0", 0, -1, "-1", "01", "3.0", 3.0, "three", True, None, "", "1 ", [1],
                                     10**10])
def test_bad_versions(version: Any) -> None:
    with raises("invalid_version"):
        validate_version(version)


@pytest.mark.parametrize("name", ["california_housing_best_model", "my model", "m-1.2"])
def test_good_model_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name", ["", "a'b", 'a"b', "a/b", "a\\b", "a\nb", "x" * 257])
def test_bad_model_names(name: str) -> None:
    with raises("invalid_model_name"):
        validate_model_name(name)


# --- errors from MLflow -----------------------------------------------------------------------------------
def test_mlflow_errors_map_to_statuses() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

    assert map_mlflow_error(MlflowException("x", RESOURCE_DOES_NOT_EXIST), "get").status_code == 404
    assert map_mlflow_error(MlflowException("x", INVALID_PARAMETER_VALUE), "get").status_code == 400
    down = MlflowException("API request failed: Max retries exceeded (Connection refused)", INTERNAL_ERROR)
    assert map_mlflow_error(down, "get").status_code == 503
    assert map_mlflow_error(ConnectionRefusedError("refused"), "get").status_code == 503
    answered = MlflowException("Max retries exceeded (too many 500 error responses)", INTERNAL_ERROR)
    assert map_mlflow_error(answered, "get").status_code == 502

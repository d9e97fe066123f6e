"""The OpenAPI document: every reference resolves, every mutating operation lists its auth errors."""

from __future__ import annotations

from typing import Any

from admin_api.openapi import openapi_document


# --- the OpenAPI document ---------------------------------------------------------------------------------
def test_openapi_document_is_self_consistent() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        assert ref.split("/")[-1] in schemas, ref
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (method, path)
            if method in {"post", "put", "delete"} and path != "/api/webhooks/mlflow":
                assert {"400", "401", "403"} <= set(operation["responses"]), (method, path)
    record = schemas["HousingRecord"]
    assert record["additionalProperties"] is False and "total_bedrooms" not in record["required"]


def test_the_rate_limit_and_replay_refusals_are_documented() -> None:
    paths = openapi_document()["paths"]
    limited = paths["/api/predict"]["post"]["responses"]["429"]
    assert "Retry-After" in limited["headers"] and "ADMIN_PREDICT_RATE_LIMIT" in limited["description"]
    assert "409" in paths["/api/webhooks/mlflow"]["post"]["responses"]
    info = openapi_document()["components"]["schemas"]["ModelInfo"]["properties"]["model_info"]["properties"]
    assert info["alias_stage"]["properties"]["source_of_truth"]["enum"] == ["version", "alias", "stage"]

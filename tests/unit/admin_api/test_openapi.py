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

"""API-key authentication: which requests need the key, and how a presented key is judged."""

from __future__ import annotations

from admin_api.auth import check_key, key_matches, needs_key
from tests.unit.admin_api.api_errors import raises


# --- auth --------------------------------------------------------------------------------------------------
def test_which_requests_need_the_key() -> None:
    assert not needs_key("POST", "/api/predict", protect_reads=False)  # changes nothing: open like the original
    assert needs_key("POST", "/api/predict", protect_reads=True)
    assert needs_key("POST", "/api/model/reload", protect_reads=False)
    assert needs_key("DELETE", "/api/mlflow/models/{name}/aliases/{alias}", protect_reads=False)
    assert not needs_key("GET", "/api/model/info", protect_reads=False)
    assert needs_key("GET", "/api/model/info", protect_reads=True)
    assert not needs_key("GET", "/health", protect_reads=True)
    assert not needs_key("POST", "/api/webhooks/mlflow", protect_reads=True)  # signed instead


def test_key_checks() -> None:
    with raises("forbidden", 403):
        check_key(None, "anything", mutating=True)
    with raises("unauthorized", 401):
        check_key("secret", None, mutating=True)
    with raises("unauthorized", 401):
        check_key("secret", "secreT", mutating=True)
    check_key("secret", "secret", mutating=True)
    assert key_matches("sécret", "sécret") and not key_matches("secret", "s\udcffcret")

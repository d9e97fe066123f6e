"""schemas.registry: the registry client helper (resolution and registration are tested through the codecs
in test_codecs.py)."""

from __future__ import annotations

from schemas.registry import registry_client


def test_registry_client_helper() -> None:
    assert registry_client(None) is None
    assert registry_client("") is None
    assert registry_client("mock://x") is not None

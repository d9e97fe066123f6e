"""A check shared by the admin API's unit tests: the ApiError a call raised, by status and code."""

from __future__ import annotations

from typing import Any

from admin_api.errors import ApiError


def raises(error: str, status: int = 400) -> Any:
    class Check:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
            assert isinstance(exc, ApiError), f"expected ApiError {error}, got {exc!r}"
            assert (exc.status_code, exc.error) == (status, error), (exc.status_code, exc.error, exc.message)
            assert exc.message
            return True

    return Check()

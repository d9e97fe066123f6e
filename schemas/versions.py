"""Model versions as the messages carry them: strings (``"7"``), ordered by their number."""

from __future__ import annotations

import re

_MODEL_URI_VERSION = re.compile(r"^models:/[^/@]+/(\d+)$")


def version_number(version: str | None) -> int:
    """``"7"`` -> 7, for ordering (stale-event checks, the version gauge); 0 when absent or not numeric."""
    try:
        return int(version) if version is not None else 0
    except (TypeError, ValueError):
        return 0


def version_from_uri(model_uri: str | None) -> str | None:
    """``models:/name/7`` -> ``"7"``; anything else (aliases, runs:/) -> None."""
    match = _MODEL_URI_VERSION.match(model_uri or "")
    return match.group(1) if match else None

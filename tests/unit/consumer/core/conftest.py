"""Fixtures shared by the scoring core's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.core import compiled_trees


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """Compiled trees on, cached in a directory of this test's own; off again afterwards."""
    compiled_trees.configure(enabled=True, cache_dir=tmp_path)
    yield tmp_path
    compiled_trees.configure(enabled=False, cache_dir=None)

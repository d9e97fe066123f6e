"""Model handles for unit tests: a constant model per version, so a prediction says which version made it."""

from __future__ import annotations

from typing import Any

import numpy as np

from consumer.core.handle import ModelHandle


class Constant:
    """Predicts ``value`` for every row."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, frame: Any) -> np.ndarray:
        return np.full(len(frame), self.value)


def handle(version: str, source: str = "registry") -> ModelHandle:
    """Version ``version`` of model ``m`` under ``@champion``; it predicts float(version)."""
    return ModelHandle(model=Constant(float(version)), name="m", version=version, alias="champion",
                       source=source)  # type: ignore[arg-type]

"""What the admin API needs of the scorer process it runs in.

A Protocol, not ``consumer.service.ScorerService`` itself: nothing but the entry point (``consumer/__main__.py``,
which hands the service to ``create_app``) imports the service. ``ScorerService`` has this shape; None stands
for the API running without a scoring loop.
"""

from __future__ import annotations

from typing import Protocol

from consumer.models.reloader import Reloader


class ScoringService(Protocol):
    """The running scorer, as the admin API sees it."""

    @property
    def reloader(self) -> Reloader | None:
        """The hot-reload worker that serves /api/model/reload (None until the service has started it)."""
        ...

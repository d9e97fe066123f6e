"""``python -m admin_api``: the admin API lives inside the scorer, so this runs ``housing-scorer``."""

from __future__ import annotations

import logging

from consumer.__main__ import main

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    raise SystemExit(main())

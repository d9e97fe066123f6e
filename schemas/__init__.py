"""The contracts shared by every component: Avro schemas and wire framing (``wire``, ``registry``), topics and
headers, the data-plane codecs (``codecs``), the control-plane messages (``control``), errors.

Imports nothing from consumer/, producer/, admin_api/ or training/. Import the submodules directly
(``from schemas.codecs import RecordDecoder``); this package module stays empty so importing
``schemas.topics`` does not pull in fastavro or the registry client.
"""

from __future__ import annotations

from pathlib import Path

AVRO_DIR = Path(__file__).resolve().parent / "avro"
"""Folder of the ``*.avsc`` files."""

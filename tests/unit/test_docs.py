"""The README stays in step with the code: every setting documented, the top commands present."""

from __future__ import annotations

from pathlib import Path

from config.settings import SETTINGS
from schemas.errors import REASONS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:400]
    assert "make demo" in head and "make test" in head


def test_every_environment_variable_is_documented() -> None:
    missing = [spec.env for spec in SETTINGS if spec.env and f"`{spec.env}`" not in README]
    assert not missing, f"README lacks {missing}: run python scripts/settings_table.py --update"


def test_every_dead_letter_reason_is_documented() -> None:
    missing = [reason for reason in REASONS if f"`{reason}`" not in README]
    assert not missing, f"README validation table lacks {missing}"


def test_the_code_map_names_every_package_and_consumer_sub_package() -> None:
    code_map = README[README.index("## Code map"):README.index("## Tests")]
    root = Path(__file__).resolve().parents[2]
    packages = ["schemas", "config", "consumer", "admin_api", "training", "producer", "stack"]
    sub_packages = [f"consumer/{p.name}" for p in (root / "consumer").iterdir() if (p / "__init__.py").exists()]
    missing = [name for name in [*packages, *sub_packages] if f"`{name}/" not in code_map]
    assert not missing, f"README's code map lacks {missing}"
    assert len(sub_packages) >= 4

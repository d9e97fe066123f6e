"""Print the configuration table of README.md from config/spec.py (one source of truth).

Usage: python scripts/settings_table.py            # print the table
       python scripts/settings_table.py --update   # rewrite it in README.md between the markers
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.spec import SETTINGS  # noqa: E402

BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def table() -> str:
    rows = ["| environment | config file key | flag | default | what |", "|---|---|---|---|---|"]
    for spec in SETTINGS:
        default = "" if spec.default is None else f"`{spec.default}`"
        rows.append(f"| `{spec.env or ''}` | `{spec.yaml_path or ''}` | {f'`{spec.flag}`' if spec.flag else ''} "
                    f"| {default} | {spec.help} |")
    return "\n".join(rows)


def main() -> int:
    text = table()
    if "--update" not in sys.argv:
        print(text)
        return 0
    readme = Path(__file__).resolve().parent.parent / "README.md"
    content = readme.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    readme.write_text(content[:start] + "\n" + text + "\n" + content[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the README's settings table (Markdown) from sam2web.settings.SETTINGS.

Usage: python scripts/settings_table.py > docs/SETTINGS_TABLE.md
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sam2web.settings import SETTINGS, Setting  # noqa: E402

EMPTY = "*(empty)*"


def format_default(default: str) -> str:
    """How a default is written in the table: in backticks, or *(empty)* when it is ''."""
    return f"`{default}`" if default else EMPTY


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_table(settings: tuple[Setting, ...] = SETTINGS) -> str:
    """The Markdown table: one row per setting, in declaration order."""
    lines = ["| Setting | Default | What it does |", "| --- | --- | --- |"]
    for s in settings:
        lines.append(f"| `{s.name}` | {_cell(format_default(s.default))} | {_cell(s.help)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_table())

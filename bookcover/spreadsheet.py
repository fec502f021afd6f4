"""CSV cells a spreadsheet shows as the text they hold: no formula runs, no control
character hides or reorders what follows."""

from __future__ import annotations

import re

# What a spreadsheet evaluates when a cell starts with it (OWASP's list, with the
# full-width forms some spreadsheets also accept), and the marker itself, so that
# text_of() gives back exactly what safe_cell() was handed.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
MARKER = "'"
_MARKED_STARTS = (*FORMULA_STARTS, MARKER)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def safe_cell(value: object) -> object:
    """Text as a cell that starts with MARKER when a spreadsheet would evaluate it, with
    control characters written as escapes (\\x1b); numbers pass unchanged."""
    if not isinstance(value, str):
        return value
    # Printable text holds no control character (the check costs a tenth of the search).
    text = value if value.isprintable() else CONTROL.sub(_escaped, value)
    return MARKER + text if text.startswith(_MARKED_STARTS) else text


def _escaped(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def safe_row(values) -> list:
    return [safe_cell(v) for v in values]


def text_of(cell: str) -> str:
    """The text a safe_cell() cell was made from (control characters aside)."""
    return cell[1:] if cell.startswith(MARKER) else cell

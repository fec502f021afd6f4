"""books_data.csv's list fields ("['Fiction']", "['Yu Huan Zhang', 'Ken Rose']"), read by a
parser of their own: a flat list of Python string literals, and nothing else.

The file was written by Python's repr of a list of str. `ast.literal_eval` would read
it too, but it hands the text to CPython's compiler, and on Python 3.10 a long flat
expression in one cell (`[1+1+...+1]`, 400 KB) overflows the compiler's C stack and
kills the process with a segfault. This parser is linear in the text, recurses
nowhere and evaluates nothing.
"""

from __future__ import annotations

import re

# Real fields hold a handful of items (authors, categories); more is junk.
MAX_LIST_ITEMS = 1000
_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\n": "",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
# The common case, read by two regular expressions in C: quoted items without backslashes
# (each item's class excludes its own quote, so matching is linear). Anything else goes
# to the parser below, which reads the same language; tests hold the two equal.
_SPACE = r"[ \t\r\n]*"
_ITEM = r"'([^'\\]*)'|\"([^\"\\]*)\""
_SIMPLE_LIST = re.compile(
    rf"{_SPACE}\[{_SPACE}(?:(?:{_ITEM})(?:{_SPACE},{_SPACE}(?:{_ITEM}))*{_SPACE},?)?{_SPACE}\]{_SPACE}"
)
_ITEMS = re.compile(_ITEM)


class ListFieldError(ValueError):
    """Text that is not a flat list of string literals; the message says where."""


def parse_string_list(text: str, max_items: int = MAX_LIST_ITEMS) -> list[str]:
    """The strings of "['a', "b's"]", as Python's repr writes a list of str: quotes of
    either kind, backslash escapes, a trailing comma. Linear in the text, no recursion,
    no eval; anything else raises ListFieldError."""
    if _SIMPLE_LIST.fullmatch(text):
        items = [single or double for single, double in _ITEMS.findall(text)]
        if len(items) <= max_items:
            return items
    return _parse(text, max_items)


def _parse(text: str, max_items: int) -> list[str]:
    items: list[str] = []
    n = len(text)
    i = _skip_space(text, 0)
    if i >= n or text[i] != "[":
        raise ListFieldError("does not start with [")
    i = _skip_space(text, i + 1)
    if i < n and text[i] == "]":
        return _end(text, i, items)
    while True:
        if i >= n or text[i] not in "'\"":
            raise ListFieldError(f"at {i}: expected a quoted string")
        item, i = _read_string(text, i)
        items.append(item)
        if len(items) > max_items:
            raise ListFieldError(f"more than {max_items} items")
        i = _skip_space(text, i)
        if i < n and text[i] == ",":
            i = _skip_space(text, i + 1)
            if i < n and text[i] == "]":
                return _end(text, i, items)
            continue
        if i < n and text[i] == "]":
            return _end(text, i, items)
        raise ListFieldError(f"at {i}: expected , or ]")


def _end(text: str, i: int, items: list[str]) -> list[str]:
    if _skip_space(text, i + 1) != len(text):
        raise ListFieldError(f"at {i + 1}: text after the closing ]")
    return items


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _read_string(text: str, i: int) -> tuple[str, int]:
    quote, start = text[i], i
    i += 1
    parts: list[str] = []
    closing = text.find(quote, i)
    while True:  # each character is looked at a bounded number of times: linear
        if closing < 0:
            raise ListFieldError(f"at {start}: a string that never closes")
        backslash = text.find("\\", i, closing)
        if backslash < 0:
            parts.append(text[i:closing])
            return "".join(parts), closing + 1
        parts.append(text[i:backslash])
        i = _read_escape(text, backslash + 1, parts)
        if i > closing:  # the escape was the quote's
            closing = text.find(quote, i)


def _read_escape(text: str, i: int, parts: list[str]) -> int:
    """Appends the character a backslash at i - 1 stands for; returns where text goes on."""
    if i >= len(text):
        raise ListFieldError("a backslash at the end")
    char = text[i]
    if char in _ESCAPES:
        parts.append(_ESCAPES[char])
        return i + 1
    if char in "01234567":  # up to three octal digits
        end = i + 1
        while end < min(i + 3, len(text)) and text[end] in "01234567":
            end += 1
        parts.append(chr(int(text[i:end], 8)))
        return end
    if char in _HEX_ESCAPES:
        digits = text[i + 1 : i + 1 + _HEX_ESCAPES[char]]
        try:
            if len(digits) != _HEX_ESCAPES[char]:
                raise ValueError
            parts.append(chr(int(digits, 16)))
        except ValueError:
            raise ListFieldError(f"at {i}: a bad \\{char} escape") from None
        return i + 1 + len(digits)
    parts.append("\\" + char)  # Python keeps an unknown escape as it is
    return i + 1

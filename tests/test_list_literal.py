"""The CSV's list fields, read by the project's own parser: what Python's repr writes is
read back exactly, anything else is a counted bad row, and no cell can crash, hang or
exhaust the process (it once could: ast.literal_eval on a long flat expression)."""

import csv
import io
import os
import subprocess
import sys
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components import books_csv, list_literal

HEADER = ["Title", "description", "authors", "image", "categories"]


@pytest.mark.parametrize(
    "text",
    [
        "['Fiction']",
        "['Yu Huan Zhang', 'Ken Rose']",
        "[]",
        "[ 'a' , ]",
        '["O\'Reilly"]',
        r"['a\\b', 'c\'d', '\x41\u00e9\n', '\101']",
    ],
)
def test_what_pythons_literal_syntax_says_is_read_alike(text):
    import ast

    assert list_literal.parse_string_list(text) == ast.literal_eval(text)


@given(st.lists(st.text(max_size=30), max_size=8))
@settings(max_examples=3000, deadline=None)
def test_every_list_of_strings_reads_back_from_its_repr(items):
    assert list_literal.parse_string_list(repr(items)) == items


def outcome(parse, text: str):
    try:
        return parse(text)
    except ValueError as e:
        return type(e)


LIST_PIECES = [
    "[",
    "]",
    "'",
    '"',
    ",",
    " ",
    "\t",
    "\n",
    "a",
    "\\",
    "\\n",
    "'x'",
    '"y\'s"',
    "['b'",
    "]]",
]


@st.composite
def list_like_text(draw) -> str:
    """A list as repr might write it (quotes of either kind, any spacing, a trailing
    comma), sometimes with one piece of junk put in somewhere."""
    items = draw(st.lists(st.text(alphabet="ab'\"\\ \n", max_size=4), max_size=4))
    space = draw(st.sampled_from(["", " ", "\t", "\n "]))
    written = [repr(item) if draw(st.booleans()) else f'"{item}"' for item in items]
    text = f"{space}[{space}{(space + ',' + space).join(written)}"
    text += draw(st.sampled_from(["", ",", " ,"])) + f"{space}]{space}"
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(LIST_PIECES)) + text[at:]
    return text


@given(
    st.one_of(st.lists(st.sampled_from(LIST_PIECES), max_size=12).map("".join), list_like_text())
)
@settings(max_examples=5000, deadline=None)
def test_the_fast_path_reads_what_the_parser_reads(text):
    """parse_string_list's regular expressions (the common case) and its character
    parser agree on every text, lists or not."""
    slow = outcome(lambda t: list_literal._parse(t, list_literal.MAX_LIST_ITEMS), text)
    assert outcome(list_literal.parse_string_list, text) == slow


@pytest.mark.parametrize(
    "text",
    [
        "[1]",
        "['a' 'b']",
        "['a'",
        "['a'] and more",
        "[['a']]",
        r"['\x4']",
        "[" + "1+" * 200_000 + "1]",  # the cell that made CPython's compiler segfault
        "[" + ", ".join(["'x'"] * (list_literal.MAX_LIST_ITEMS + 1)) + "]",
    ],
    ids=[
        "number",
        "no-comma",
        "unclosed",
        "trailing-text",
        "nested",
        "bad-escape",
        "flat-400KB",
        "too-many-items",
    ],
)
def test_anything_else_is_refused_with_a_value_error(text):
    with pytest.raises(ValueError):
        list_literal.parse_string_list(text)


def test_the_cell_that_segfaulted_the_interpreter_is_a_counted_row(tmp_path):
    """On Python 3.10, `[1+1+...+1]` of 400 KB in `categories` killed the process with
    signal 11 under ast.literal_eval; read in a process of its own, so that a crash
    fails this test instead of ending the suite."""
    path = tmp_path / "books.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerow(["Bomb", "", "['A']", "http://x/1.jpg", "[" + "1+" * 200_000 + "1]"])
        writer.writerow(["Good", "", "['B']", "http://x/2.jpg", "['Fiction']"])
    script = (
        "import sys; from components import books_csv; r = books_csv.read_books(sys.argv[1]); "
        "print(len(r.books), dict(r.skipped))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "1 {'bad_categories': 1}"


# No NUL (Python's csv writer cannot write one; rows holding one are test_books_csv's) and
# no lone surrogate (no file can hold one).
ANY_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
LIST_CELL = st.lists(st.text(ANY_CHAR, max_size=12), max_size=4)
JUNK_CELL = st.one_of(
    st.text(alphabet="[]'\",\\ x1+\n\té", max_size=40), st.text(ANY_CHAR, max_size=40)
)


@given(st.lists(st.tuples(JUNK_CELL, st.one_of(LIST_CELL, JUNK_CELL)), min_size=1, max_size=10))
@settings(max_examples=400, deadline=None)
def test_generated_rows_are_each_read_or_counted(rows):
    """Thousands of generated rows (400 files of up to 10): authors of any text, and
    categories either the repr of a list of strings or list-like junk. Every row is a
    book or a counted skip; a listed row's category is its first item not blank once
    control characters are spaces."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for i, (authors, categories) in enumerate(rows):
        cell = repr(categories) if isinstance(categories, list) else categories
        writer.writerow([f"t{i}", "", authors, f"http://x/{i}.jpg", cell])
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "books.csv")
        with open(path, "w", newline="") as f:
            f.write(out.getvalue())
        result = books_csv.read_books(path)
    assert result.rows_read == len(rows) == len(result.books) + sum(result.skipped.values())
    read = {book.row: book.category for book in result.books}
    for row, (_, categories) in enumerate(rows, start=1):
        if not isinstance(categories, list):
            continue
        listed = [books_csv.plain_text(c) for c in categories if books_csv.plain_text(c)]
        assert read.get(row) == (listed[0] if listed else None), (row, categories)

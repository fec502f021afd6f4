"""Reads books_data.csv, analyses its categories and samples a balanced selection."""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import itertools
import random
import re
import sys
from collections.abc import Iterable, Sequence

from tfx.dsl.io import fileio

from components import list_literal

TITLE_COLUMN = "Title"
AUTHORS_COLUMN = "authors"
IMAGE_COLUMN = "image"
CATEGORIES_COLUMN = "categories"
REQUIRED_COLUMNS = (TITLE_COLUMN, IMAGE_COLUMN, CATEGORIES_COLUMN)
# Real list fields are flat; one nested deeper than this is counted as
# `nested_too_deep`, any other nesting as a bad list (components/list_literal.py).
MAX_LIST_DEPTH = 4
# Real descriptions reach a few hundred KB; a field past this is a swallowed
# file (an unterminated quote) or junk, and is counted, not parsed.
MAX_FIELD_CHARS = 1_000_000
# NUL bytes make Python 3.10's csv module abort the whole file; they are
# swapped for this private-use character before parsing, and a row holding
# one is counted as `nul_byte`.
NUL_STANDIN = "\ue000"
BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


class CsvFormatError(ValueError):
    """The file cannot be read as books_data.csv; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Book:
    """One usable row of books_data.csv."""

    row: int  # 1-based line-independent record number, header excluded
    title: str
    authors: tuple[str, ...]
    image_url: str
    category: str


@dataclasses.dataclass
class ReadResult:
    books: list[Book]
    skipped: collections.Counter  # reason -> rows
    rows_read: int
    lines: int = 0  # physical lines after the header
    encoding: str = "utf-8"
    undecodable_bytes: int = 0  # replaced by U+FFFD; their rows are still read

    @property
    def lines_not_starting_a_row(self) -> int:
        """The file's data lines less the rows read: line breaks inside quoted fields
        (real descriptions have them) and blank lines."""
        return self.lines - self.rows_read


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def list_depth(text: str) -> int:
    """How deeply brackets nest in `text` (quotes are not special: a guard, not a parser)."""
    depth = deepest = 0
    for char in text:
        if char == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "]":
            depth -= 1
    return deepest


def parse_list_field(text: str) -> list[str]:
    """Parses a Python-list string such as "['Fiction']" (a flat list of string
    literals, components/list_literal.py); a bare string is one item. ValueError
    for anything else."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        if list_depth(text) > MAX_LIST_DEPTH:
            raise ValueError(f"lists nested deeper than {MAX_LIST_DEPTH}")
        return [v.strip() for v in list_literal.parse_string_list(text) if v.strip()]
    return [text]


def decode_csv(data: bytes) -> tuple[str, str, int]:
    """(text, encoding, undecodable bytes): a byte-order mark names the encoding
    (UTF-8, as spreadsheets save "CSV UTF-8", or UTF-16); without one, UTF-8."""
    encoding = "utf-8"
    for bom, declared in BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom) :], declared
            break
    text = data.decode(encoding, errors="replace")
    undecodable = text.count("\ufffd") - data.count("\ufffd".encode(encoding))
    return text, encoding, max(0, undecodable)


def read_books(path: str) -> ReadResult:
    """Reads every row; unusable rows are counted by reason, never raised.

    What cannot be counted stops the read with a CsvFormatError naming the file
    and the line: a missing column, or a quoted field that opens and never closes.
    """
    # Descriptions in the real file exceed csv's default 128 KiB field limit;
    # over-long fields are counted below instead.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    books: list[Book] = []
    skipped: collections.Counter = collections.Counter()
    rows_read = 0
    # fileio reads local paths and gs:// or s3:// alike (Kubeflow pipeline roots).
    with fileio.open(path, "rb") as f:
        text, encoding, undecodable = decode_csv(f.read())
    text = text.replace("\x00", NUL_STANDIN)
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CsvFormatError(
                f"{path}: missing required column(s) {', '.join(missing)}; "
                f"found {reader.fieldnames}"
            )
        header_lines = reader.line_num
        first_line = last_line = header_lines
        for rows_read, record in enumerate(reader, start=1):
            first_line, last_line = last_line + 1, reader.line_num
            book, reason = _parse_record(rows_read, record)
            if book is None:
                skipped[reason] += 1
            else:
                books.append(book)
    _check_quotes_closed(path, text, first_line, last_line)
    lines = sum(1 for _ in io.StringIO(text, newline="")) - header_lines
    return ReadResult(books, skipped, rows_read, lines, encoding, undecodable)


def _check_quotes_closed(path: str, text: str, first_line: int, last_line: int) -> None:
    """Stops the read when the last row ends inside a quoted field: the csv module
    then silently makes the rest of the file one field."""
    if last_line <= first_line:
        return
    # Lines as the csv reader counts them (\n, \r\n or \r), not as str.splitlines does;
    # only the last row's are joined, not the whole file's.
    rest = "".join(itertools.islice(io.StringIO(text, newline=""), first_line - 1, None))
    try:
        for _ in csv.reader(io.StringIO(rest, newline=""), strict=True):
            pass
    except csv.Error as e:
        if "unexpected end of data" not in str(e):
            return
        raise CsvFormatError(
            f"{path}: line {first_line}: a quoted field opens in this row and is never "
            f"closed, so the rest of the file (to line {last_line}) would be read as one "
            "field; close or remove the quote and rerun"
        ) from None


def _parse_record(row: int, record: dict) -> tuple[Book | None, str]:
    if None in record:  # more fields than the header: a broken row
        return None, "malformed_row"
    values = [v for v in record.values() if isinstance(v, str)]
    if any(NUL_STANDIN in v for v in values):
        return None, "nul_byte"
    if any(len(v) > MAX_FIELD_CHARS for v in values):
        return None, "field_too_long"
    image_url = (record.get(IMAGE_COLUMN) or "").strip()
    if not image_url:
        return None, "no_image"
    categories_text = record.get(CATEGORIES_COLUMN) or ""
    if list_depth(categories_text) > MAX_LIST_DEPTH:
        return None, "nested_too_deep"
    try:
        categories = parse_list_field(categories_text)
    except ValueError:
        return None, "bad_categories"
    category = next((c for c in map(plain_text, categories) if c), "")
    if not category:
        return None, "no_category"
    try:
        authors = tuple(parse_list_field(record.get(AUTHORS_COLUMN) or ""))
    except ValueError:
        authors = ()
    title = (record.get(TITLE_COLUMN) or "").strip()
    return Book(row, title, authors, image_url, category), ""


def plain_text(text: str) -> str:
    """Control characters (a line break, an escape sequence) as single spaces. A
    category is a vocabulary entry, a label on plots and a CSV cell: TFT leaves
    entries with line breaks out of its vocabulary file."""
    return " ".join(CONTROL_CHARACTERS.sub(" ", text).split())


@dataclasses.dataclass(frozen=True)
class CategoryCount:
    category: str
    count: int
    cumulative_share: float


def analyse_categories(books: Iterable[Book]) -> list[CategoryCount]:
    """Category frequencies, largest first (ties by name), with cumulative share."""
    counts = collections.Counter(b.category for b in books)
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    table, running = [], 0
    for category, count in ordered:
        running += count
        table.append(CategoryCount(category, count, running / total))
    return table


def categories_covering(table: Sequence[CategoryCount], share: float = 0.5) -> int:
    """How many of the largest categories it takes to cover `share` of the books."""
    for i, row in enumerate(table, start=1):
        if row.cumulative_share >= share:
            return i
    return len(table)


def select_categories(
    table: Sequence[CategoryCount], top_k: int | None = None, min_books: int | None = None
) -> list[str]:
    """The K largest categories, or all with at least `min_books` books."""
    if (top_k is None) == (min_books is None):
        raise ValueError("select categories either by top_k or by min_books, not both")
    if top_k is not None:
        if len(table) < top_k:
            raise ValueError(
                f"asked for the {top_k} largest categories but the data has only "
                f"{len(table)} usable ones: {[r.category for r in table]}"
            )
        return [r.category for r in table[:top_k]]
    chosen = [r.category for r in table if r.count >= min_books]
    if len(chosen) < 2:
        raise ValueError(f"fewer than 2 categories have at least {min_books} books")
    return chosen


def count_selected_categories(
    path: str, top_k: int | None = None, min_books: int | None = None
) -> int:
    """How many categories a selection keeps, read from the CSV itself.

    The pipeline needs the number before CoverExampleGen runs (labels have a
    fixed width); the selection is deterministic, so both agree.
    """
    table = analyse_categories(read_books(path).books)
    return len(select_categories(table, top_k, min_books))


def sample_balanced(
    books: Sequence[Book],
    categories: Sequence[str],
    per_class: int | None,
    seed: int,
    balance: bool = True,
) -> list[Book]:
    """N books per category, reproducibly.

    Balanced (the default), N is at most the smallest selected category's
    count; unbalanced, each category keeps up to `per_class` books (all of
    them with None), for training with class weights.
    """
    by_category: dict[str, list[Book]] = {c: [] for c in categories}
    for book in books:
        if book.category in by_category:
            by_category[book.category].append(book)
    rng = random.Random(seed)
    sample: list[Book] = []
    if balance:
        smallest = min(len(v) for v in by_category.values())
        n = smallest if per_class is None else min(per_class, smallest)
        for category in categories:
            sample.extend(rng.sample(by_category[category], n))
        return sample
    for category in categories:
        pool = by_category[category]
        n = len(pool) if per_class is None else min(per_class, len(pool))
        sample.extend(rng.sample(pool, n))
    return sample

"""Reads books_data.csv, analyses its categories and samples a balanced selection."""

from __future__ import annotations

import ast
import collections
import csv
import dataclasses
import io
import random
import sys
from collections.abc import Iterable, Sequence

from tfx.dsl.io import fileio

TITLE_COLUMN = "Title"
AUTHORS_COLUMN = "authors"
IMAGE_COLUMN = "image"
CATEGORIES_COLUMN = "categories"
REQUIRED_COLUMNS = (TITLE_COLUMN, IMAGE_COLUMN, CATEGORIES_COLUMN)


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


def parse_list_field(text: str) -> list[str]:
    """Parses a Python-list string such as "['Fiction']"; a bare string is one item."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        value = ast.literal_eval(text)  # raises ValueError / SyntaxError on junk
        if not isinstance(value, list):
            raise ValueError(f"not a list: {text!r}")
        return [str(v).strip() for v in value if str(v).strip()]
    return [text]


def read_books(path: str) -> ReadResult:
    """Reads every row; unusable rows are counted by reason, never raised."""
    # Descriptions in the real file exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    books: list[Book] = []
    skipped: collections.Counter = collections.Counter()
    rows_read = 0
    # fileio reads local paths and gs:// or s3:// alike (Kubeflow pipeline roots).
    with fileio.open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing required column(s) {', '.join(missing)}; "
                f"found {reader.fieldnames}"
            )
        for rows_read, record in enumerate(reader, start=1):
            book, reason = _parse_record(rows_read, record)
            if book is None:
                skipped[reason] += 1
            else:
                books.append(book)
    return ReadResult(books=books, skipped=skipped, rows_read=rows_read)


def _parse_record(row: int, record: dict) -> tuple[Book | None, str]:
    if None in record:  # more fields than the header: a broken row
        return None, "malformed_row"
    image_url = (record.get(IMAGE_COLUMN) or "").strip()
    if not image_url:
        return None, "no_image"
    try:
        categories = parse_list_field(record.get(CATEGORIES_COLUMN) or "")
    except (ValueError, SyntaxError):
        return None, "bad_categories"
    if not categories:
        return None, "no_category"
    try:
        authors = tuple(parse_list_field(record.get(AUTHORS_COLUMN) or ""))
    except (ValueError, SyntaxError):
        authors = ()
    title = (record.get(TITLE_COLUMN) or "").strip()
    return Book(row, title, authors, image_url, categories[0]), ""


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

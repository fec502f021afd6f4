"""Reads books_data.csv, analyses its categories and samples a balanced selection."""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import dataclasses
import hashlib
import heapq
import io
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence

from tfx.dsl.io import fileio

from bookcover import constants
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
    authors_field: str  # the authors column as written: see `authors`
    image_url: str
    category: str

    @property
    def authors(self) -> tuple[str, ...]:
        """The authors column's names; () where it is not a list of strings. Parsed when
        asked for: of a full file's rows, only the sampled books' authors are used."""
        try:
            return tuple(parse_list_field(self.authors_field))
        except ValueError:
            return ()


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
# The common categories field, "['Body, Mind & Spirit']": one single-quoted item of ASCII
# words and punctuation with single spaces between them, which is its own plain text
# (read_category; tests hold it equal to the general parse).
PLAIN_CATEGORY = re.compile(r"\['(\w[\w&,.()/+-]*(?: [\w&,.()/+-]+)*)'\]", re.ASCII)


def list_depth(text: str) -> int:
    """How deeply brackets nest in `text` (quotes are not special: a guard, not a parser)."""
    opened = text.count("[")
    if opened <= 1:  # nearly every real field: no need to walk it
        return opened
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


def _count_undecodable(error: UnicodeDecodeError) -> tuple[str, int]:
    """Decoding error handler: U+FFFD, as errors="replace" writes, counted for the reader
    decoding on this thread."""
    reader = _DECODING.reader
    if reader is not None:
        reader.undecodable_bytes += 1
    return "\ufffd", error.end


_DECODING = threading.local()
COUNT_UNDECODABLE = "bookcover-count-undecodable"
codecs.register_error(COUNT_UNDECODABLE, _count_undecodable)
READ_BUFFER_BYTES = 1 << 20


class _RawFile(io.RawIOBase):
    """A fileio file (local, gs:// or s3://) as the raw stream io's buffered readers take."""

    def __init__(self, f):
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class BookReader:
    """One streaming pass over a books_data.csv: iterating yields the usable books.

    Memory stays flat whatever the file's size: one buffered chunk and the row being
    read. Unusable rows are counted by reason, never raised; once the pass is done,
    the counts below are complete. What cannot be counted stops the pass with a
    CsvFormatError naming the file and the line: a missing column, or a quoted field
    that opens and never closes.
    """

    def __init__(self, path: str):
        self.path = path
        self.skipped: collections.Counter = collections.Counter()  # reason -> rows
        self.category_counts: collections.Counter = collections.Counter()  # usable rows
        self.rows_read = 0
        self.lines = 0  # physical lines after the header
        # A byte-order mark names the encoding (UTF-8, as spreadsheets save "CSV UTF-8",
        # or UTF-16); without one, UTF-8.
        self.encoding = "utf-8"
        self.undecodable_bytes = 0  # replaced by U+FFFD; their rows are still read
        self._nul_lines = 0  # lines that held a NUL byte, so far

    @property
    def usable_rows(self) -> int:
        return sum(self.category_counts.values())

    @property
    def lines_not_starting_a_row(self) -> int:
        """Line breaks inside quoted fields (real descriptions have them) and blank lines."""
        return self.lines - self.rows_read

    def __iter__(self) -> Iterator[Book]:
        for book, reason in self.every_row():
            if reason:
                self.skipped[reason] += 1
            else:
                self.category_counts[book.category] += 1
                yield book

    def every_row(self) -> Iterator[tuple[Book, str]]:
        """Every row with what could be read of it and why it is not a usable book
        ("" for one that is); the reasons are the caller's to count. The catalogue
        classifies the rows without a category."""
        with self._text() as text:
            yield from self._rows(text)

    def check_header(self) -> None:
        """Reads the header and at most the first row: a CsvFormatError (a missing
        column) or an OSError (no such file) now, before a pipeline is started."""
        with contextlib.closing(self.every_row()) as rows:
            next(rows, None)

    @contextlib.contextmanager
    def _text(self) -> Iterator[io.TextIOWrapper]:
        # Descriptions in the real file exceed csv's default 128 KiB field limit;
        # over-long fields are counted in _parse_record instead.
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        # fileio reads local paths and gs:// or s3:// alike (Kubeflow pipeline roots).
        with fileio.open(self.path, "rb") as f:
            stream = io.BufferedReader(_RawFile(f), READ_BUFFER_BYTES)
            start = stream.peek(3)[:3]
            for bom, declared in BOMS:
                if start.startswith(bom):
                    stream.read(len(bom))
                    self.encoding = declared
                    break
            yield io.TextIOWrapper(stream, self.encoding, COUNT_UNDECODABLE, newline="")

    def _lines(self, text: io.TextIOWrapper, record: list[str]) -> Iterator[str]:
        """The file's lines as the csv reader counts them (\n, \r\n or \r); each also
        goes to `record`, the lines of the row being read."""
        while True:
            _DECODING.reader = self  # the error handler counts for whoever decodes
            line = text.readline()
            _DECODING.reader = None
            if not line:
                return
            self.lines += 1
            if "\x00" in line:
                line = line.replace("\x00", NUL_STANDIN)
                self._nul_lines += 1
            record.append(line)
            yield line

    def _rows(self, text: io.TextIOWrapper) -> Iterator[tuple[Book, str]]:
        record: list[str] = []
        reader = csv.reader(self._lines(text, record))
        header = next(reader, None) or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CsvFormatError(
                f"{self.path}: missing required column(s) {', '.join(missing)}; "
                f"found {header or None}"
            )
        columns = _Columns(header)
        header_lines = reader.line_num
        first_line = last_line = header_lines
        last_record: list[str] = []
        record.clear()
        nul_lines = self._nul_lines
        for fields in reader:
            if not fields:  # a blank line is no row (csv.DictReader's rule)
                continue
            self.rows_read += 1
            first_line, last_line = last_line + 1, reader.line_num
            last_record = record[:]
            record.clear()
            nul_byte, nul_lines = self._nul_lines > nul_lines, self._nul_lines
            # No field is longer than the row's lines together: most rows need no
            # field-by-field look.
            long_row = sum(map(len, last_record)) > MAX_FIELD_CHARS
            yield _parse_record(self.rows_read, fields, columns, nul_byte, long_row)
        self.lines -= header_lines
        _check_quotes_closed(self.path, "".join(last_record + record), first_line, last_line)


class _Columns:
    """Where the columns read are in a row: for a name written twice, its last place (a
    csv.DictReader row keeps the last one's value)."""

    def __init__(self, header: list[str]):
        self.count = len(header)
        place = {name: i for i, name in enumerate(header)}
        self.title, self.authors, self.image, self.categories = (
            place.get(name)
            for name in (TITLE_COLUMN, AUTHORS_COLUMN, IMAGE_COLUMN, CATEGORIES_COLUMN)
        )

    @staticmethod
    def get(fields: list[str], place: int | None) -> str:
        """The field at `place`, "" where the row is shorter or the column missing."""
        return fields[place] if place is not None and place < len(fields) else ""


def read_books(path: str) -> ReadResult:
    """Every usable row in memory, with the counts of the rest (BookReader's pass)."""
    reader = BookReader(path)
    books = list(reader)
    return ReadResult(
        books,
        reader.skipped,
        reader.rows_read,
        reader.lines,
        reader.encoding,
        reader.undecodable_bytes,
    )


def _check_quotes_closed(path: str, rest: str, first_line: int, last_line: int) -> None:
    """Stops the read when the last row ends inside a quoted field: the csv module
    then silently makes the rest of the file one field. `rest` is the text from the
    last row's first line (`first_line`) to the end of the file."""
    if last_line <= first_line:
        return
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


def _parse_record(
    row: int, fields: list[str], columns: _Columns, nul_byte: bool, long_row: bool
) -> tuple[Book, str]:
    """The row as a Book (empty fields where it could not be read) and why it is not
    a usable one, or "". `nul_byte`: a line of the row held one; `long_row`: its lines
    are longer than MAX_FIELD_CHARS together, so that a field may be."""
    if len(fields) > columns.count:  # more fields than the header: a broken row
        return Book(row, "", "", "", ""), "malformed_row"
    if nul_byte:
        return Book(row, "", "", "", ""), "nul_byte"
    if long_row and any(len(v) > MAX_FIELD_CHARS for v in fields):
        return Book(row, "", "", "", ""), "field_too_long"
    image_url = columns.get(fields, columns.image).strip()
    category, category_problem = read_category(columns.get(fields, columns.categories))
    title = columns.get(fields, columns.title).strip()
    book = Book(row, title, columns.get(fields, columns.authors), image_url, category)
    if not image_url:
        return book, "no_image"
    if category_problem:
        return book, category_problem
    return book, "" if category else "no_category"


def read_category(text: str) -> tuple[str, str]:
    """A categories field's category (its first non-empty item, as plain text) and why
    it could not be read ("nested_too_deep", "bad_categories"), or ""."""
    plain = PLAIN_CATEGORY.fullmatch(text)
    if plain:  # most rows: a third of the read's time went to the general parse below
        return plain.group(1), ""
    if list_depth(text) > MAX_LIST_DEPTH:
        return "", "nested_too_deep"
    try:
        return next((c for c in map(plain_text, parse_list_field(text)) if c), ""), ""
    except ValueError:
        return "", "bad_categories"


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
    return category_table(collections.Counter(b.category for b in books))


def category_table(counts: collections.Counter) -> list[CategoryCount]:
    """The table of category -> usable books counts, largest first (ties by name)."""
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
    counted = count_categories(path)
    return len(select_categories(category_table(counted.category_counts), top_k, min_books))


def count_categories(path: str) -> BookReader:
    """One pass that keeps nothing but the counts: category_counts, skipped, lines."""
    reader = BookReader(path)
    for _ in reader:
        pass
    return reader


def quotas(
    counts: collections.Counter,
    categories: Sequence[str],
    per_class: int | None,
    balance: bool = True,
) -> dict[str, int]:
    """Books to sample per selected category.

    Balanced (the default), N is at most the smallest selected category's
    count; unbalanced, each category keeps up to `per_class` books (all of
    them with None), for training with class weights.
    """
    if balance:
        smallest = min(counts[c] for c in categories)
        n = smallest if per_class is None else min(per_class, smallest)
        return {c: n for c in categories}
    return {c: counts[c] if per_class is None else min(per_class, counts[c]) for c in categories}


def sample_key(seed: int, row: int) -> int:
    """A row's place in the sampling order: the rows with the smallest keys are taken."""
    digest = hashlib.blake2b(f"{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def sample_books(books: Iterable[Book], quota: dict[str, int], seed: int) -> list[Book]:
    """Per category (in `quota`'s order) its `quota[c]` books of smallest sample_key, by row.

    One pass that holds only the books it keeps, so `books` may be a BookReader over a
    file of any size; the same books come out whatever the order they go in.
    """
    kept: dict[str, list] = {c: [] for c in quota}
    for book in books:
        heap = kept.get(book.category)
        if heap is None or not quota[book.category]:
            continue
        item = (-sample_key(seed, book.row), book.row, book)  # a max-heap on the key
        if len(heap) < quota[book.category]:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    return [item[2] for c in quota for item in sorted(kept[c], key=lambda i: i[1])]


def sample_balanced(
    books: Sequence[Book],
    categories: Sequence[str],
    per_class: int | None,
    seed: int,
    balance: bool = True,
) -> list[Book]:
    """N books per category, reproducibly (quotas, sample_books)."""
    counts = collections.Counter(b.category for b in books)
    return sample_books(books, quotas(counts, categories, per_class, balance), seed)


def pretraining_quotas(
    table: Sequence[CategoryCount],
    selected: dict[str, int],
    per_class: int | None,
    min_books: int,
    max_categories: int,
) -> dict[str, int]:
    """Books per category for pretraining: of the `max_categories` largest categories with
    at least `min_books` books, the books the selection left, up to `per_class` each."""
    quota = {}
    for row in [r for r in table if r.count >= min_books][:max_categories]:
        left = row.count - selected.get(row.category, 0)
        n = left if per_class is None else min(per_class, left)
        if n > 0:
            quota[row.category] = n
    return quota


@dataclasses.dataclass(frozen=True)
class PretrainPool:
    """Which books beyond the selection CoverExampleGen keeps for pretraining."""

    min_books: int = constants.PRETRAIN_MIN_BOOKS
    max_categories: int = constants.PRETRAIN_MAX_CATEGORIES


@dataclasses.dataclass
class Selection:
    """What CoverExampleGen takes from a CSV: the category table, the selected
    categories and the sampled books, with the pass's counts (`reader`); with a
    PretrainPool, the books kept for pretraining too (never a selected one)."""

    reader: BookReader
    table: list[CategoryCount]
    categories: list[str]
    books: list[Book]
    pretrain_books: list[Book] = dataclasses.field(default_factory=list)


def select_books(
    path: str,
    top_k: int | None,
    min_books: int | None,
    per_class: int | None,
    seed: int,
    balance: bool = True,
    pretrain: PretrainPool | None = None,
) -> Selection:
    """Two streaming passes over the CSV: count the categories, then sample the selected
    ones (and the pretraining books, in the same pass). Memory holds the category
    counts and the sampled books, never the file."""
    reader = count_categories(path)
    table = category_table(reader.category_counts)
    if not table:
        raise ValueError(
            f"{path}: none of its {reader.rows_read} rows is usable; "
            f"skipped by reason: {dict(reader.skipped)}"
        )
    categories = select_categories(table, top_k, min_books)
    quota = quotas(reader.category_counts, categories, per_class, balance)
    extra = {}
    if pretrain is not None:
        extra = pretraining_quotas(
            table, quota, per_class, pretrain.min_books, pretrain.max_categories
        )
    # The selected categories first, in quota's order: the books as sample_books(quota).
    both = {c: quota.get(c, 0) + extra.get(c, 0) for c in [*quota, *extra]}
    second = BookReader(path)
    sampled = sample_books(second, both, seed)
    if second.category_counts != reader.category_counts:
        raise CsvFormatError(f"{path} changed while it was being read; rerun once it is written")
    # Of a category's sample, its quota's books of smallest keys are the selection's.
    books = sample_books(sampled, quota, seed)
    chosen = {book.row for book in books}
    pretrain_books = [book for book in sampled if book.row not in chosen]
    return Selection(reader, table, categories, books, pretrain_books)

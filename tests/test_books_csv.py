"""books_data.csv parsing, category analysis, selection and balanced sampling."""

import collections
import csv
import os
import tracemalloc

import pytest

from components import books_csv

DATA = os.path.join(os.path.dirname(__file__), "data")
SAMPLE = os.path.join(DATA, "books_data_sample.csv")
HEADER = (
    "Title,description,authors,image,previewLink,publisher,publishedDate,infoLink,"
    "categories,ratingsCount\n"
)


def test_real_sample_rows_parse_with_reasons_for_every_skipped_row():
    result = books_csv.read_books(SAMPLE)
    assert result.rows_read == 100
    assert len(result.books) == 64
    assert dict(result.skipped) == {"no_image": 29, "no_category": 7}
    for book in result.books:
        assert book.image_url.startswith("http")
        assert book.category and not book.category.startswith("[")
    assert result.books[0].title == "Building Wealth from the Ground Up"
    assert result.books[0].authors == ("Mikel Brown",)
    assert result.books[0].category == "Business & Economics"


def test_malformed_rows_are_counted_not_raised(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text(
        HEADER
        + "Good,\"multi\nline\",['A'],http://x/1.jpg,,,,,['Fiction'],\n"
        + "No image,,['A'],,,,,,['Fiction'],\n"
        + "No category,,['A'],http://x/2.jpg,,,,,,\n"
        + "Bad list,,['A'],http://x/3.jpg,,,,,['Fiction',\n"
        + "Too many,,['A'],http://x/4.jpg,,,,,['Fiction'],,extra,extra\n"
        + "Bare string,,A,http://x/5.jpg,,,,,History,\n"
    )
    result = books_csv.read_books(str(path))
    assert [b.title for b in result.books] == ["Good", "Bare string"]
    assert result.books[1].category == "History"
    assert result.books[1].authors == ("A",)
    assert dict(result.skipped) == {
        "no_image": 1,
        "no_category": 1,
        "bad_categories": 1,
        "malformed_row": 1,
    }


def test_missing_column_names_the_column_and_the_file(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text("Title,authors,image\nX,['A'],http://x/1.jpg\n")
    with pytest.raises(ValueError, match=r"books\.csv.*categories"):
        books_csv.read_books(str(path))


def _books(counts):
    books, row = [], 0
    for category, n in counts.items():
        for i in range(n):
            row += 1
            books.append(books_csv.Book(row, f"{category} {i}", "['A']", f"u{row}", category))
    return books


def test_analysis_orders_by_size_and_reports_half_coverage():
    table = books_csv.analyse_categories(_books({"a": 50, "b": 30, "c": 10, "d": 10}))
    assert [(r.category, r.count) for r in table] == [("a", 50), ("b", 30), ("c", 10), ("d", 10)]
    assert table[-1].cumulative_share == pytest.approx(1.0)
    assert books_csv.categories_covering(table, 0.5) == 1
    assert books_csv.categories_covering(table, 0.81) == 3


def test_selection_by_top_k_or_by_minimum():
    table = books_csv.analyse_categories(_books({"a": 50, "b": 30, "c": 10}))
    assert books_csv.select_categories(table, top_k=2) == ["a", "b"]
    assert books_csv.select_categories(table, min_books=30) == ["a", "b"]
    with pytest.raises(ValueError, match="only 3 usable"):
        books_csv.select_categories(table, top_k=4)


def test_balanced_sample_is_reproducible_and_capped_by_smallest_category():
    books = _books({"a": 50, "b": 30, "c": 10})
    first = books_csv.sample_balanced(books, ["a", "b"], per_class=40, seed=7)
    again = books_csv.sample_balanced(books, ["a", "b"], per_class=40, seed=7)
    other = books_csv.sample_balanced(books, ["a", "b"], per_class=40, seed=8)
    assert first == again and first != other
    assert [b.category for b in first].count("a") == 30
    assert [b.category for b in first].count("b") == 30


def test_unbalanced_sample_keeps_every_book_up_to_the_cap():
    books = _books({"a": 50, "b": 30, "c": 10})
    everything = books_csv.sample_balanced(books, ["a", "b"], None, seed=1, balance=False)
    assert sorted(b.category for b in everything) == ["a"] * 50 + ["b"] * 30
    capped = books_csv.sample_balanced(books, ["a", "b"], 40, seed=1, balance=False)
    assert [b.category for b in capped].count("a") == 40


def test_count_selected_categories_reads_the_csv(tmp_path):
    path = tmp_path / "books.csv"
    rows = [
        f"T{i},,['A'],http://x/{i}.jpg,,,,,['{c}'],\n"
        for i, c in enumerate(["a"] * 5 + ["b"] * 3 + ["c"])
    ]
    path.write_text(HEADER + "".join(rows))
    assert books_csv.count_selected_categories(str(path), min_books=3) == 2
    assert books_csv.count_selected_categories(str(path), top_k=3) == 3


GOOD_ROW = "Good {i},,['A'],http://x/{i}.jpg,,,,,['Fiction'],\n"


def test_a_spreadsheets_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "books.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + GOOD_ROW.format(i=1)).encode())
    result = books_csv.read_books(str(path))
    assert [b.title for b in result.books] == ["Good 1"]
    assert result.encoding == "utf-8"
    path.write_bytes(
        (HEADER + GOOD_ROW.format(i=2) + "Überbuch,,,http://x/ü.jpg,,,,,['Art'],\n").encode(
            "utf-16"
        )
    )
    result = books_csv.read_books(str(path))
    assert [b.title for b in result.books] == ["Good 2", "Überbuch"]
    assert result.encoding == "utf-16-le"


def test_hostile_rows_are_counted_by_reason_and_the_rest_still_read(tmp_path):
    path = tmp_path / "books.csv"
    deep = "[" * 3000 + "]" * 3000
    path.write_text(
        HEADER
        + GOOD_ROW.format(i=1)
        + "Nul\x00byte,,['A'],http://x/n.jpg,,,,,['Fiction'],\n"
        + f"Deep,,['A'],http://x/d.jpg,,,,,{deep},\n"
        + f"Long,\"{'x' * (books_csv.MAX_FIELD_CHARS + 1)}\",['A'],http://x/l.jpg,,,,,['Art'],\n"
        + "Deep authors,,"
        + deep
        + ",http://x/a.jpg,,,,,['Art'],\n"
        + "\n"
        + GOOD_ROW.format(i=2)
    )
    result = books_csv.read_books(str(path))
    assert [b.title for b in result.books] == ["Good 1", "Deep authors", "Good 2"]
    assert result.books[1].authors == ()
    assert dict(result.skipped) == {"nul_byte": 1, "nested_too_deep": 1, "field_too_long": 1}
    assert result.rows_read == 6
    assert result.lines == 7 and result.lines_not_starting_a_row == 1  # the blank line


def test_a_nul_byte_or_a_long_field_is_found_on_any_line_of_its_row_only(tmp_path):
    path = tmp_path / "books.csv"
    half = "y" * (books_csv.MAX_FIELD_CHARS // 2 + 1)
    path.write_text(
        HEADER
        + "Nul second line,\"first\nsecond \x00\",['A'],http://x/n.jpg,,,,,['Art'],\n"
        + GOOD_ROW.format(i=1)
        + f"Long second line,\"short\n{half}{half}\",['A'],http://x/l.jpg,,,,,['Art'],\n"
        # Longer than the limit together, no field of it is.
        + f"Long row,{half},['A'],http://x/r.jpg,,,,{half},['Art'],\n"
        + GOOD_ROW.format(i=2)
    )
    result = books_csv.read_books(str(path))
    assert [b.title for b in result.books] == ["Good 1", "Long row", "Good 2"]
    assert dict(result.skipped) == {"nul_byte": 1, "field_too_long": 1}


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    path = tmp_path / "books.csv"
    path.write_bytes(HEADER.encode() + b"Caf\xe9,,['A'],http://x/1.jpg,,,,,['Fiction'],\n")
    result = books_csv.read_books(str(path))
    assert result.books[0].title == "Caf\ufffd"
    assert result.undecodable_bytes == 1


def test_an_unterminated_quote_stops_with_the_file_and_line(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text(
        HEADER
        + GOOD_ROW.format(i=1)
        + "Broken,\"never closed,['A'],http://x/b.jpg,,,,,['Art'],\n"
        + GOOD_ROW.format(i=2)
        + GOOD_ROW.format(i=3)
    )
    with pytest.raises(books_csv.CsvFormatError, match=r"books\.csv: line 3: a quoted field"):
        books_csv.read_books(str(path))


def test_quoted_line_breaks_reconcile_lines_with_rows(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text(HEADER + "Multi,\"one\ntwo\nthree\",['A'],http://x/1.jpg,,,,,['Art'],\n")
    result = books_csv.read_books(str(path))
    assert (result.rows_read, result.lines, result.lines_not_starting_a_row) == (1, 3, 2)


def _write_rows(path, categories, filler=""):
    rows = [
        f"T{i},{filler},['A'],http://x/{i}.jpg,,,,,['{c}'],\n" for i, c in enumerate(categories)
    ]
    path.write_text(HEADER + "".join(rows))


def test_selecting_from_the_file_samples_as_from_the_books_in_memory(tmp_path):
    path = tmp_path / "books.csv"
    _write_rows(path, ["a", "b", "c", "a", "b", "a"] * 40 + ["d"] * 5)
    selection = books_csv.select_books(str(path), 3, None, 25, seed=3)
    books = books_csv.read_books(str(path)).books
    assert selection.categories == ["a", "b", "c"]
    assert selection.books == books_csv.sample_balanced(books, ["a", "b", "c"], 25, seed=3)
    assert selection.reader.usable_rows == len(books) == 245
    # The same books whatever order they are offered in: the sample is a property of rows.
    quota = {"a": 25, "b": 25, "c": 25}
    assert books_csv.sample_books(reversed(books), quota, 3) == selection.books


def test_a_pass_over_the_csv_holds_a_row_at_a_time_not_the_file(tmp_path):
    path = tmp_path / "books.csv"
    # 12,000 rows of ~700 bytes (the real file's mean): about 8 MB.
    _write_rows(path, ["a", "b", "c"] * 4000, filler="d" * 640)
    assert path.stat().st_size > 8_000_000
    tracemalloc.start()
    try:
        reader = books_csv.BookReader(str(path))
        usable = sum(1 for _ in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert usable == 12_000 and reader.lines == 12_000
    assert peak < 4_000_000  # the read buffer and one row; the whole file would be 8 MB+


def test_every_row_gives_each_row_what_was_read_of_it_and_the_same_reasons():
    """The catalogue's pass: every row, usable or not, in order, with the reason the
    counting pass counts; rows without a category keep their title and image URL."""
    counted = books_csv.read_books(SAMPLE)
    reader = books_csv.BookReader(SAMPLE)
    rows = list(reader.every_row())
    assert [book.row for book, _ in rows] == list(range(1, counted.rows_read + 1))
    reasons = collections.Counter(reason for _, reason in rows if reason)
    assert reasons == counted.skipped
    assert [book for book, reason in rows if not reason] == counted.books
    uncategorised = [book for book, reason in rows if reason == "no_category"]
    assert uncategorised and all(book.image_url and book.title for book in uncategorised)
    assert not any(book.category for book in uncategorised)


def _category_by_the_general_parse(text: str) -> tuple[str, str]:
    if books_csv.list_depth(text) > books_csv.MAX_LIST_DEPTH:
        return "", "nested_too_deep"
    try:
        items = books_csv.parse_list_field(text)
    except ValueError:
        return "", "bad_categories"
    return next((c for c in map(books_csv.plain_text, items) if c), ""), ""


@pytest.mark.parametrize(
    "text",
    [
        "['Fiction']", "['Body, Mind & Spirit']", "['Juvenile Fiction']", "['A.I. (theory)/2+']",
        "['Fiction', 'History']", "['  Fiction']", "['Fiction  Noir']", "['Fiction ']",
        "['Fic\\ntion']", "['Fic\x85tion']", "['Fic\u00a0tion']", "['Ficción']", '["Children\'s"]',
        "['']", "[]", "", "Fiction", "['Fiction'", "[['Fiction']]", "[[[[['x']]]]]", "['_x']",
        "[ 'Fiction' ]", "['Fiction',]", "['a\\'b']", "['x\x00y']",
    ],
)  # fmt: skip
def test_the_categories_fast_path_reads_as_the_general_parse(text):
    assert books_csv.read_category(text) == _category_by_the_general_parse(text)


def test_every_category_of_the_real_sample_reads_as_the_general_parse():
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        fields = [row["categories"] for row in csv.DictReader(f)]
    assert sum(bool(books_csv.PLAIN_CATEGORY.fullmatch(text)) for text in fields) >= 60
    for text in fields:
        assert books_csv.read_category(text) == _category_by_the_general_parse(text)


def test_rows_read_as_a_dict_reader_would_read_them(tmp_path):
    """Short rows have empty fields, a column named twice gives its last value, blank
    lines are no rows: csv.DictReader's reading, which the reader's own replaced."""
    path = tmp_path / "books.csv"
    path.write_text(
        "Title,image,categories,image\n"
        "Short,http://x/first.jpg\n"
        "\n"
        "Twice,http://x/ignored.jpg,['Art'],http://x/kept.jpg\n"
    )
    reader = books_csv.BookReader(str(path))
    rows = list(reader.every_row())
    assert reader.rows_read == 2 and reader.lines == 3
    (short, short_reason), (twice, twice_reason) = rows
    assert (short.row, short.title, short.image_url, short_reason) == (1, "Short", "", "no_image")
    assert (twice.row, twice.image_url, twice.category, twice_reason) == (
        2, "http://x/kept.jpg", "Art", "",
    )  # fmt: skip

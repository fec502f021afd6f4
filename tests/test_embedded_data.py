"""The generated default dataset: deterministic, in the books_data.csv format, selectable."""

import hashlib

from components import books_csv
from pipeline import embedded_data


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def test_generation_is_deterministic(tmp_path):
    first = embedded_data.generate(str(tmp_path / "a"), categories=3, per_category=5)
    second = embedded_data.generate(str(tmp_path / "b"), categories=3, per_category=5)
    a_cover = tmp_path / "a" / "covers" / "c01" / "0002.jpg"
    b_cover = tmp_path / "b" / "covers" / "c01" / "0002.jpg"
    assert digest(a_cover) == digest(b_cover)
    assert open(first).read().replace(str(tmp_path / "a"), "") == open(second).read().replace(
        str(tmp_path / "b"), ""
    )


def test_rows_parse_and_the_largest_categories_are_the_generated_ones(tmp_path):
    csv_path = embedded_data.generate(str(tmp_path), categories=4, per_category=8)
    result = books_csv.read_books(csv_path)
    assert dict(result.skipped) == {"no_image": 1, "no_category": 1}
    table = books_csv.analyse_categories(result.books)
    chosen = books_csv.select_categories(table, top_k=4)
    assert sorted(chosen) == sorted(embedded_data.CATEGORY_NAMES[:4])
    assert [r.count for r in table] == [8, 8, 8, 8, 2, 2]

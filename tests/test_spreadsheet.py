"""CSV cells that open as text in a spreadsheet, and read back as written."""

import pytest

from bookcover import spreadsheet
from components import books_csv


@pytest.mark.parametrize(
    "text",
    ["=1+1", "+33 1", "-2", "@SUM(A1)", "\tx", "\rx", "\uff1dHYPERLINK()", "'quoted", "'=x"],
)
def test_cells_a_spreadsheet_would_evaluate_start_with_the_marker_and_read_back(text):
    cell = spreadsheet.safe_cell(text)
    assert cell.startswith("'")
    if not any(c in text for c in "\t\r"):
        assert spreadsheet.text_of(cell) == text


def test_plain_text_and_numbers_are_unchanged_and_controls_are_escaped():
    assert spreadsheet.safe_cell("Fiction") == "Fiction"
    assert spreadsheet.safe_cell(-3) == -3 and spreadsheet.safe_cell(0.5) == 0.5
    assert spreadsheet.safe_cell("a\x1b[31mred\x00") == "a\\x1b[31mred\\x00"
    assert spreadsheet.safe_cell("two\nlines") == "two\nlines"  # csv quotes it


def test_category_control_characters_become_single_spaces():
    assert books_csv.plain_text("Sci\x1bFi\n\r\tction ") == "Sci Fi ction"
    assert books_csv.plain_text("\x00\x07") == ""

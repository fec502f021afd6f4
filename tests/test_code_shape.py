"""Functions a reader can hold in their head: none over 60 lines outside the argument tables."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 60
SKIPPED = {".venv", "outputs", "tests", ".git"}


def is_argument_table(node: ast.FunctionDef) -> bool:
    """argparse declarations: one add_argument after another, read as a table."""
    return node.name == "parse_args" or node.name.endswith("_flags")


def code_lines(node: ast.FunctionDef) -> int:
    """The function's lines, its docstring left out."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            lines -= first.end_lineno - first.lineno + 1
    return lines


def long_functions() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if SKIPPED & set(path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if not is_argument_table(node) and code_lines(node) > MAX_LINES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return found


def test_no_function_is_over_sixty_lines_of_code():
    assert long_functions() == []

"""The packages import bottom-up: no package imports one above it (README, "Layout")."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Each package and the project packages it may import (itself included). Runners
# (local_runner.py, kubeflow/), benchmarks/ and tests/ sit on top and may import any.
ALLOWED = {
    "bookcover": {"bookcover"},
    "components": {"bookcover", "components"},
    "models": {"bookcover", "models"},
    "reporting": {"bookcover", "components", "models", "reporting"},
    "pipeline": {"bookcover", "components", "models", "reporting", "pipeline"},
}
PROJECT = set(ALLOWED) | {"kubeflow", "benchmarks", "tests", "local_runner"}


def imported_packages(path: pathlib.Path) -> dict[str, int]:
    """Project package -> first line importing it, top-level and function-level imports alike."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT:
                found.setdefault(top, node.lineno)
    return found


def upward_imports() -> list[str]:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported, line in imported_packages(path).items():
                if imported not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return wrong


def test_no_package_imports_a_higher_one():
    assert upward_imports() == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\n\ndef f():\n    from pipeline import configs\n")
    assert imported_packages(module) == {"pipeline": 5}


def test_the_runner_reads_its_defaults_without_importing_tensorflow():
    """bookcover/constants.py, models/hyperparameters.py and pipeline/configs.py are plain
    constants: local_runner parses its flags before it sets TensorFlow's environment."""
    import subprocess
    import sys

    probe = (
        "import sys, local_runner; local_runner.parse_args([]); "
        "print(sorted(m for m in ('tensorflow', 'tfx', 'keras') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_every_package_is_installed_and_in_the_pipeline_image():
    """A package missing here imports in the checkout and fails in an install or on Kubeflow."""
    import re

    pyproject = (ROOT / "pyproject.toml").read_text()
    included = re.search(r"^include = \[(.*)\]$", pyproject, re.M).group(1)
    dockerfile = (ROOT / "kubeflow" / "Dockerfile").read_text()
    for package in [*ALLOWED, "kubeflow"]:
        assert f'"{package}*"' in included, package
        assert f"COPY {package} ./{package}" in dockerfile, package

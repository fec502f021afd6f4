"""Runs every benchmark in benchmarks/ (what `make bench` does)."""

from __future__ import annotations

import importlib

BENCHMARKS = (
    "benchmarks.e2e",
    "benchmarks.ingestion",
    "benchmarks.training",
    "benchmarks.serving",
    "benchmarks.quality",
)


def main() -> None:
    for name in BENCHMARKS:
        print(f"=== {name}")
        importlib.import_module(name).main()


if __name__ == "__main__":
    main()

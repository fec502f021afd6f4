"""Runs every CPU benchmark in benchmarks/ (what `make bench` does; several hours on 2 cores:
scale about 45 minutes, quality about 35, tuner about 25). gpu_precision and variants need
a GPU and are run on their own."""

from __future__ import annotations

import importlib

BENCHMARKS = (
    "benchmarks.e2e",
    "benchmarks.ingestion",
    "benchmarks.training",
    "benchmarks.serving",
    "benchmarks.quality",
    "benchmarks.epochs",
    "benchmarks.step_time",
    "benchmarks.catalogue",
    "benchmarks.tuner",
    "benchmarks.scale",
)


def main() -> None:
    for name in BENCHMARKS:
        print(f"=== {name}")
        importlib.import_module(name).main()


if __name__ == "__main__":
    main()

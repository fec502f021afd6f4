"""Tuner benchmark: the Tuner step's grid search with its trials one after another and with
N trials at once (TuneArgs(num_parallel_trials=N), components/parallel_tuner.py).

    python -m benchmarks.tuner [--cases embedded real] [--parallel 2] [--work-dir DIR]

Each case runs local_runner.py with the default preset until its Tuner step has ended,
first with --parallel-trials 1, then, in the same output directory, with
--parallel-trials N: TFX takes every step before the Tuner from its cache, so the second
run executes the Tuner alone, on the same examples and Transform graph. The Tuner's
wall time comes from ML Metadata (the step as the pipeline runs it: the workers'
start-up and imports included). Cases:
  embedded  the generated default data (12 categories x 40 covers)
  real      the 12 largest categories of ../shared/bookcovers, served on 127.0.0.1
ratio = sequential seconds / parallel seconds (above 1: parallel is faster).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import time

from benchmarks.common import BOOKCOVERS, start_bookcovers_server, write_result
from benchmarks.scale import step_times

COMMAND = "python -m benchmarks.tuner"
STEP = "Tuner"


def case_flags(case: str) -> list[str]:
    if case == "embedded":
        return []
    csv_path = os.path.abspath(os.path.join(BOOKCOVERS, "books_data.csv"))
    return ["--books-csv", csv_path, "--categories", "12"]


def run_until_tuned(out_dir: str, flags: list[str], parallel: int) -> dict:
    """local_runner.py until its Tuner step has ended (then stopped); the step's seconds,
    its trial table and best values."""
    command = [
        sys.executable, "local_runner.py", "--output-dir", out_dir,
        "--parallel-trials", str(parallel), *flags,
    ]  # fmt: skip
    metadata = os.path.join(out_dir, "metadata.sqlite")
    os.makedirs(out_dir, exist_ok=True)
    # The Tuner a run before this one executed in the same directory is not this run's.
    earlier = step_times(metadata).get(STEP, {}).get("start")

    def this_runs_tuner() -> dict:
        found = step_times(metadata).get(STEP, {})
        return found if found.get("complete") and found["start"] != earlier else {}

    with open(os.path.join(out_dir, f"run_parallel{parallel}.log"), "w") as log:
        runner = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        while runner.poll() is None:
            time.sleep(1)
            if this_runs_tuner():
                os.killpg(runner.pid, signal.SIGKILL)  # the Trainer is not measured
                runner.wait()
    tuned = this_runs_tuner()
    if not tuned:
        sys.exit(f"{out_dir}: the Tuner did not finish (see run_parallel{parallel}.log)")
    results = max(
        glob.glob(os.path.join(out_dir, "pipeline", STEP, "tuner_results", "*")),
        key=os.path.getmtime,
    )
    with open(os.path.join(results, "trials.json")) as f:
        trials = json.load(f)
    best = max((t for t in trials if t["score"] is not None), key=lambda t: t["score"])
    return {
        "seconds": round(tuned["end"] - tuned["start"], 1),
        "trials": [
            {k: t[k] for k in ("learning_rate", "first_filters", "score", "epochs_run", "runs")}
            for t in trials
        ],
        "best": {"learning_rate": best["learning_rate"], "first_filters": best["first_filters"]},
    }


def run_case(case: str, work_dir: str, parallel: int) -> dict:
    out_dir = os.path.join(work_dir, case)
    server = start_bookcovers_server() if case == "real" else None
    try:
        sequential = run_until_tuned(out_dir, case_flags(case), 1)
        at_once = run_until_tuned(out_dir, case_flags(case), parallel)
    finally:
        if server:
            os.kill(server, signal.SIGTERM)
    ratio = sequential["seconds"] / at_once["seconds"]
    print(
        f"{case}: sequential {sequential['seconds']} s, {parallel} at once "
        f"{at_once['seconds']} s: {ratio:.2f}x",
        flush=True,
    )
    return {"sequential": sequential, "parallel": at_once, "ratio": round(ratio, 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["embedded", "real"])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--work-dir", default="/tmp/bookcover-tuner")
    args = parser.parse_args(argv)
    cases = {case: run_case(case, args.work_dir, args.parallel) for case in args.cases}
    headline = cases.get("real") or next(iter(cases.values()))
    return write_result(
        "tuner",
        ours=headline["parallel"]["seconds"],
        baseline=headline["sequential"]["seconds"],
        ratio=headline["ratio"],
        unit=f"seconds of the Tuner step ({args.parallel} trials at once vs one at a time)",
        ratio_definition="sequential seconds / parallel seconds (above 1: parallel is faster)",
        command=f"{COMMAND} --cases {' '.join(args.cases)} --parallel {args.parallel}",
        parallel_trials=args.parallel,
        cases=cases,
    )


if __name__ == "__main__":
    main(sys.argv[1:])

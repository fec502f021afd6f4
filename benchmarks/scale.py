"""Scale benchmark: the real pipeline on the full-size stand-in, per-step time and memory by size.

    python -m benchmarks.scale [--cases third seed 4x seed_csv_4x] [--work-dir DIR]

Writes the full-size stand-in (benchmarks/amazon_like.py: 212,404 rows) and one
four times its size, serves their covers on 127.0.0.1, and runs local_runner.py
(1 epoch, one grid point: this measures cost, not accuracy) at:
  third        12 x 733 covers (a third of the seed's setting), the whole run
  seed         12 x 2,200 covers (the seed's setting), the whole run
  4x           12 x 8,800 covers from the 4x CSV, up to Transform (then stopped)
  seed_csv_4x  12 x 2,200 covers from the 4x CSV, CoverExampleGen only
Per step: wall time (ML Metadata's execution times) and the peak memory of the
whole process tree while it ran (PSS summed over the runner and its Beam
workers, sampled every second; RSS beside it). Growth exponent between two
sizes = log(time ratio) / log(covers ratio): 1.0 is linear.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psutil

from benchmarks import amazon_like
from benchmarks.common import write_result

COMMAND = "python -m benchmarks.scale"
CATEGORIES = 12
TRAINING_FLAGS = [
    "--epochs", "1", "--tuner-epochs", "1",
    "--learning-rates", "0.001", "--first-filters", "16",
]  # fmt: skip
# Steps shorter than this at the seed's setting are fixed costs: no exponent.
MIN_SECONDS_FOR_EXPONENT = 5.0


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    csv_factor: int  # rows: amazon_like.ROWS x this
    per_class: int
    stop_after: str | None  # the step after which the run is stopped, or None: the whole run


CASES = {
    case.name: case
    for case in (
        Case("third", 1, 733, None),
        Case("seed", 1, 2200, None),
        Case("4x", 4, 8800, "Transform"),
        Case("seed_csv_4x", 4, 2200, "CoverExampleGen"),
    )
}


class TreeMemory:
    """Samples the memory of a process and all its descendants, with timestamps."""

    def __init__(self, pid: int, interval_s: float = 1.0):
        self.samples: list[tuple[float, float, float]] = []  # (time, pss GB, rss GB)
        self._root = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            pss = rss = 0
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                return
            for process in processes:
                try:
                    info = process.memory_full_info()
                    pss += getattr(info, "pss", info.rss)
                    rss += info.rss
                except psutil.Error:
                    pass
            self.samples.append((time.time(), pss / 2**30, rss / 2**30))
            self._stop.wait(self._interval)

    def stop(self):
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = math.inf) -> dict:
        # One sampling interval either side, so that a short step still has a sample.
        margin = self._interval
        window = [s for s in self.samples if start - margin <= s[0] <= end + margin] or [
            min(self.samples, key=lambda s: abs(s[0] - start))
        ]
        return {
            "peak_pss_gb": round(max(s[1] for s in window), 3),
            "peak_rss_gb": round(max(s[2] for s in window), 3),
        }


def step_times(metadata_path: str) -> dict[str, dict]:
    """Per step of the newest run: start, end (epoch seconds) and state, from ML Metadata."""
    if not os.path.exists(metadata_path):
        return {}
    with sqlite3.connect(f"file:{metadata_path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT c.name, e.create_time_since_epoch, e.last_update_time_since_epoch, "
            "e.last_known_state FROM Execution e JOIN Association a ON a.execution_id = e.id "
            "JOIN Context c ON c.id = a.context_id JOIN Type t ON t.id = c.type_id "
            "WHERE t.name = 'node' ORDER BY e.id"  # a node's newest execution last
        ).fetchall()
    steps = {}
    for name, start, end, state in rows:
        node = name.split(".", 1)[-1]
        steps[node] = {"start": start / 1000, "end": end / 1000, "complete": state == 3}
    return steps


def run_case(case: Case, csv_path: str, out_dir: str) -> dict:
    """Runs local_runner.py for one case; returns per-step time and memory."""
    os.makedirs(out_dir, exist_ok=True)
    command = [
        sys.executable, "local_runner.py", "--books-csv", csv_path,
        "--categories", str(CATEGORIES), "--per-class", str(case.per_class), "--balance",
        "--output-dir", out_dir, *TRAINING_FLAGS,
    ]  # fmt: skip
    metadata_path = os.path.join(out_dir, "metadata.sqlite")
    started = time.time()
    with open(os.path.join(out_dir, "run.log"), "w") as log:
        runner = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
        memory = TreeMemory(runner.pid)
        stopped = False
        while runner.poll() is None:
            time.sleep(2)
            if case.stop_after and step_times(metadata_path).get(case.stop_after, {}).get(
                "complete"
            ):
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
                stopped = True
        memory.stop()
    wall = time.time() - started
    if runner.returncode and not stopped:
        with open(os.path.join(out_dir, "run.log"), errors="replace") as f:
            lines = [line for line in f if len(line) < 400][-40:]
        sys.exit(f"case {case.name}: local_runner.py failed:\n" + "".join(lines))
    steps = {
        node: {"seconds": round(t["end"] - t["start"], 1), **memory.peak(t["start"], t["end"])}
        for node, t in sorted(step_times(metadata_path).items(), key=lambda kv: kv[1]["start"])
        if t["complete"]
    }
    covers = _examples_written(out_dir)
    return {
        "per_class": case.per_class,
        "csv_rows": amazon_like.ROWS * case.csv_factor,
        "covers": covers,
        "stopped_after": case.stop_after,
        "run_seconds": round(wall, 1),
        **memory.peak(),
        "steps": steps,
    }


def _examples_written(out_dir: str) -> int:
    summaries = []
    for root, _, files in os.walk(os.path.join(out_dir, "pipeline", "CoverExampleGen")):
        if "ingest_summary.json" in files:
            summaries.append(os.path.join(root, "ingest_summary.json"))
    if not summaries:
        return 0
    with open(max(summaries, key=os.path.getmtime)) as f:
        examples = json.load(f)["examples"]
    return sum(sum(per_category.values()) for per_category in examples.values())


def growth_exponents(small: dict, large: dict) -> dict[str, float]:
    """log(time ratio) / log(covers ratio) per step both ran long enough to time."""
    size_ratio = large["covers"] / small["covers"]
    exponents = {}
    for node, figures in small["steps"].items():
        other = large["steps"].get(node)
        if other and figures["seconds"] >= MIN_SECONDS_FOR_EXPONENT:
            ratio = other["seconds"] / figures["seconds"]
            exponents[node] = round(math.log(ratio) / math.log(size_ratio), 2)
    return exponents


def headline(results: dict) -> dict:
    figures = {}
    if "seed" in results and "4x" in results:
        exponents = growth_exponents(results["seed"], results["4x"])
        figures["growth_exponents_seed_to_4x"] = exponents
        figures["max_growth_exponent"] = max(exponents.values())
        figures["max_peak_rss_gb_at_4x"] = results["4x"]["peak_rss_gb"]
        figures["max_peak_pss_gb_at_4x"] = results["4x"]["peak_pss_gb"]
    if "third" in results and "seed" in results:
        figures["growth_exponents_third_to_seed"] = growth_exponents(
            results["third"], results["seed"]
        )
    if "seed" in results and "seed_csv_4x" in results:
        step = "CoverExampleGen"
        for kind in ("pss", "rss"):
            key = f"peak_{kind}_gb"
            ratio = results["seed_csv_4x"]["steps"][step][key] / results["seed"]["steps"][step][key]
            figures[f"csv_4x_memory_ratio{'' if kind == 'pss' else '_rss'}"] = round(ratio, 3)
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--work-dir", default="/tmp/bookcover-scale")
    parser.add_argument("--port", type=int, default=amazon_like.DEFAULT_PORT)
    parser.add_argument("--name", default="scale", help="results file name (default scale)")
    args = parser.parse_args(argv)
    base_url = f"http://127.0.0.1:{args.port}"
    csvs = {}
    for factor in sorted({CASES[name].csv_factor for name in args.cases}):
        path = os.path.join(args.work_dir, f"csv_x{factor}", "books_data.csv")
        if not os.path.exists(path):
            print(f"writing {path}", flush=True)
            amazon_like.write_catalogue(path, amazon_like.ROWS * factor, base_url)
        csvs[factor] = path
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.amazon_like", "serve", "--port", str(args.port)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    server.stdout.readline()  # "serving ...": it listens
    results = {}
    try:
        for name in args.cases:
            case = CASES[name]
            print(f"case {name}: 12 x {case.per_class} from x{case.csv_factor} CSV", flush=True)
            out_dir = os.path.join(args.work_dir, f"run_{name}")
            subprocess.run(["rm", "-rf", out_dir], check=True)
            results[name] = run_case(case, csvs[case.csv_factor], out_dir)
            print(json.dumps(results[name], indent=1), flush=True)
    finally:
        server.terminate()
        server.wait()
    figures = headline(results)
    return write_result(
        args.name,
        ours=figures.get("max_growth_exponent", float("nan")),
        baseline=1.0,
        ratio=figures.get("max_growth_exponent", float("nan")),
        unit="growth exponent of the slowest-growing step (1.0: linear)",
        command=f"{COMMAND} --cases {' '.join(args.cases)}",
        memory_measure="PSS summed over the process tree, sampled every 1 s (RSS beside it)",
        training_flags=TRAINING_FLAGS,
        **figures,
        cases=results,
    )


if __name__ == "__main__":
    main(sys.argv[1:])

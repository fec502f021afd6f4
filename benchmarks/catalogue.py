"""Catalogue benchmark: covers classified per second, end to end, by the catalogue command
and by the simplest script a user would write, on the same stand-in catalogue.

    python -m benchmarks.catalogue [--rows N] [--rounds N] [--model DIR] [--work-dir DIR]

The catalogue is benchmarks/amazon_like.py's stand-in (212,404 rows by default, about a
quarter of them without a category), its covers drawn on request on 127.0.0.1. Both
sides classify the rows without a category that have an image URL, with the same model:
  ours      python -m pipeline.classify_catalogue (Beam DirectRunner, the ingestion
            downloader: URL policy, deadline, decode and resize; RunInference)
  baseline  one process: a ThreadPool of requests.get with as many threads as ours has
            connections, and serving_default in batches of 64 (no checks, no resize)
Each runs as its own process, TensorFlow's start-up and the model's load included.
On this 2-core machine the same command's time moves by 10-30% from run to run, and
the machine's speed drifts over minutes, so both sides run `--rounds` times one after
the other, alternating which goes first: the ratio is the median of the rounds' own
ratios (5 rounds by default), the rates each side's median (every round's times are in
the result).
Without --model, a model is trained first on the embedded data (1 epoch).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from benchmarks import amazon_like
from benchmarks.common import write_result

COMMAND = "python -m benchmarks.catalogue"
BATCH = 64


def baseline(csv_path: str, model_dir: str, connections: int) -> dict:
    """The simplest thing that works: download in threads, classify in batches of 64."""
    import requests
    import tensorflow as tf

    csv.field_size_limit(2**31 - 1)
    with open(csv_path, newline="", encoding="utf-8") as f:
        urls = [r["image"] for r in csv.DictReader(f) if not r["categories"] and r["image"]]
    local = threading.local()

    def fetch(url: str) -> bytes | None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        try:
            response = local.session.get(url, timeout=30)
            return response.content if response.ok else None
        except requests.RequestException:
            return None

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    classified = failed = 0
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        batch = []
        for cover in pool.map(fetch, urls):
            if cover is None:
                failed += 1
                continue
            batch.append(cover)
            if len(batch) == BATCH:
                classified += len(serve(images=tf.constant(batch))["category"].numpy())
                batch = []
        if batch:
            classified += len(serve(images=tf.constant(batch))["category"].numpy())
    return {"covers": classified, "failed": failed}


def timed(command: list[str], log_path: str) -> float:
    started = time.time()
    with open(log_path, "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.time() - started


def trained_model(work_dir: str) -> str:
    out = os.path.join(work_dir, "model_run")
    serving = os.path.join(out, "serving_model")
    if not os.path.isdir(serving) or not os.listdir(serving):
        from benchmarks.scale import TRAINING_FLAGS

        print("training a model on the embedded data", flush=True)
        # One epoch need not beat the blessing's floor; this measures speed, not accuracy.
        command = [sys.executable, "local_runner.py", "--output-dir", out, *TRAINING_FLAGS]
        command += ["--accuracy-floor", "0"]
        timed(command, os.path.join(work_dir, "model_run.log"))
    return serving


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=amazon_like.ROWS)
    parser.add_argument("--model", help="a pushed model (default: one trained first)")
    parser.add_argument("--work-dir", default="/tmp/bookcover-catalogue")
    parser.add_argument("--port", type=int, default=amazon_like.DEFAULT_PORT)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--baseline-only", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_only:  # the baseline's own process
        csv_path, model_dir, out = args.baseline_only
        from bookcover import constants

        with open(out, "w") as f:
            json.dump(baseline(csv_path, model_dir, constants.CONNECTIONS_PER_WORKER), f)
        return {}
    return measure(args)


def run_rounds(sides: dict[str, list[str]], count: int, work_dir: str) -> list[dict]:
    """Each side's command `count` times, one after the other, alternating which goes
    first: per round, each side's seconds."""
    rounds = []
    for number in range(count):
        order = ("ours", "baseline") if number % 2 == 0 else ("baseline", "ours")
        seconds = {
            side: round(timed(sides[side], os.path.join(work_dir, f"{side}.log")), 1)
            for side in order
        }
        rounds.append({"first": order[0], **seconds})
        print(f"round {number + 1}/{count}: {seconds}", flush=True)
    return rounds


def measure(args: argparse.Namespace) -> dict:
    from components.catalogue.inference import resolve_model

    os.makedirs(args.work_dir, exist_ok=True)
    csv_path = os.path.join(args.work_dir, f"catalogue_{args.rows}.csv")
    base_url = f"http://127.0.0.1:{args.port}"
    if not os.path.exists(csv_path):
        amazon_like.write_catalogue(csv_path, args.rows, base_url)
    model_dir, _ = resolve_model(args.model or trained_model(args.work_dir))
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.amazon_like", "serve", "--port", str(args.port)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    server.stdout.readline()  # "serving ...": it listens
    out = os.path.join(args.work_dir, "ours")
    answers = os.path.join(args.work_dir, "baseline.json")
    sides = {
        "ours": [sys.executable, "-m", "pipeline.classify_catalogue", "--books-csv", csv_path,
                 "--model", model_dir, "--output", out],
        "baseline": [sys.executable, "-m", "benchmarks.catalogue", "--baseline-only", csv_path,
                     model_dir, answers],
    }  # fmt: skip
    try:
        rounds = run_rounds(sides, args.rounds, args.work_dir)
    finally:
        server.terminate()
        server.wait()
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    with open(answers) as f:
        simple = json.load(f)
    ours_s = statistics.median(r["ours"] for r in rounds)
    baseline_s = statistics.median(r["baseline"] for r in rounds)
    ours = summary["classified"] / ours_s
    theirs = simple["covers"] / baseline_s
    for found in rounds:  # the same covers on both sides: a ratio of times is one of rates
        found["ratio"] = round(found["baseline"] / found["ours"], 3)
    ratio = statistics.median(found["ratio"] for found in rounds)
    print(
        f"ours: {summary['classified']} covers in {ours_s:.1f} s = {ours:.1f} covers/s; "
        f"baseline: {simple['covers']} in {baseline_s:.1f} s = {theirs:.1f} covers/s "
        f"(medians); ratio {ratio:.2f} (the median of the rounds' ratios "
        f"{', '.join(str(found['ratio']) for found in rounds)})",
        flush=True,
    )
    return write_result(
        "catalogue",
        ours=round(ours, 2),
        baseline=round(theirs, 2),
        ratio=ratio,
        unit="covers classified per second, end to end (process start to last prediction)",
        command=f"{COMMAND} --rows {args.rows} --rounds {args.rounds}"
        + (f" --model {args.model}" if args.model else ""),
        rows=args.rows,
        ours_seconds=round(ours_s, 1),
        baseline_seconds=round(baseline_s, 1),
        rounds=rounds,
        ours_summary={k: summary[k] for k in ("rows_read", "rows_taken", "classified", "failed")},
        baseline_counts=simple,
    )


if __name__ == "__main__":
    main(sys.argv[1:])

"""e2e benchmark: wall time of the embedded-default run, first run beside its cached rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import trainer_epochs, write_result

COMMAND = "python -m benchmarks.e2e"


def timed_run(output_dir: str) -> tuple[float, dict]:
    log_path = os.path.join(output_dir, "run.log")
    start = time.monotonic()
    with open(log_path, "a") as log:
        done = subprocess.run(
            [sys.executable, "local_runner.py", "--output-dir", output_dir],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    elapsed = time.monotonic() - start
    if done.returncode:
        with open(log_path, errors="replace") as f:
            # Readable lines only: a failed Beam step can dump raw image bytes.
            lines = [line for line in f if len(line) < 400 and "\\x" not in line]
        sys.exit("local_runner.py failed:\n" + "".join(lines[-60:]))
    with open(os.path.join(output_dir, "run_summary.json")) as f:
        return elapsed, json.load(f)


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="bookcover-e2e-") as output_dir:
        first_s, first = timed_run(output_dir)
        epochs = trainer_epochs(output_dir)
        print(f"first run: {first_s:.1f} s, test accuracy {first['test_accuracy']:.3f}")
        rerun_s, rerun = timed_run(output_dir)
        print(f"cached rerun: {rerun_s:.1f} s")
    executed_again = [n for n, c in rerun["components"].items() if c["status"] == "executed"]
    return write_result(
        "e2e",
        ours=round(rerun_s, 1),
        baseline=round(first_s, 1),
        ratio=round(first_s / rerun_s, 2),
        unit="seconds (wall, whole process)",
        command=COMMAND,
        ratio_definition="first run / cached rerun (higher: the cache saves more)",
        first_run_s=round(first_s, 1),
        rerun_s=round(rerun_s, 1),
        test_accuracy=first["test_accuracy"],
        blessed=first["blessed"],
        components_first_run={n: c for n, c in first["components"].items()},
        executed_on_rerun=executed_again,
        trainer_epochs=epochs,
    )


if __name__ == "__main__":
    main()

"""Shared helpers for benchmarks: machine description and the results file convention."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.request

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BOOKCOVERS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bookcovers"
)


def _bookcovers_answers() -> bool:
    try:
        urllib.request.urlopen("http://127.0.0.1:8765/README.md", timeout=1).read()
        return True
    except OSError:
        return False


def start_bookcovers_server() -> int:
    """Starts the development set's own `serve` script (port 8765, as its CSV's URLs say);
    returns its pid for the caller to kill."""
    if _bookcovers_answers():
        # Ours could not bind, and the benchmark would measure (and outlive) another server.
        raise RuntimeError("port 8765 already serves something: stop that server and rerun")
    pid = subprocess.run(
        [os.path.join(BOOKCOVERS, "serve")], capture_output=True, text=True, check=True
    ).stdout.strip()
    for _ in range(100):
        if _bookcovers_answers():
            return int(pid)
        time.sleep(0.1)
    raise RuntimeError("the bookcovers server did not start")


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(command: str, argv: list[str] | None) -> str:
    """The command a result records: `command` and the flags given (main's argv, or the
    shell's when main was called without)."""
    return " ".join([command, *(sys.argv[1:] if argv is None else argv)])


def write_result(
    name: str, ours: float, baseline: float, ratio: float, unit: str, command: str, **extra
) -> dict:
    result = {
        "name": name,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "unit": unit,
        "command": command,
        "git_commit": git_commit(),
        "machine": machine(),
        **extra,
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
    return result


def trainer_epochs(output_dir: str) -> dict:
    """The Trainer's epoch wall times in a pipeline output, and how much of them stalled."""
    import glob

    paths = glob.glob(
        os.path.join(output_dir, "pipeline", "Trainer", "model_run", "*", "history.json")
    )
    if not paths:
        return {}
    with open(max(paths, key=os.path.getmtime)) as f:
        seconds = json.load(f).get("epoch_seconds", [])
    return {"epoch_seconds": [round(s, 2) for s in seconds], **epoch_stalls(seconds)}


def epoch_stalls(epoch_seconds: list[float]) -> dict:
    """How much of a training run's epoch time was idle waiting, from its epoch wall times.

    The first epoch (tracing, warm-up) is left out. A clean epoch takes the first
    quartile of the rest: a median would hide stalls when more than half the
    epochs stall. ratio = epochs x first quartile / total (1.0: nothing idle).
    """
    import numpy as np

    times = [float(t) for t in epoch_seconds[1:]]
    if not times:
        return {}
    clean = float(np.percentile(times, 25))
    total = sum(times)
    return {
        "epochs": len(times),
        "first_quartile_s": round(clean, 2),
        "total_s": round(total, 1),
        "baseline_s": round(clean * len(times), 1),
        "ratio": round(clean * len(times) / total, 3),
        "slowest_over_first_quartile": round(max(times) / clean, 2),
    }

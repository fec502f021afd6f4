"""A whole run killed with SIGKILL at random points (ingestion, training, the push), rerun
each time: the last rerun finishes, and nothing half-written is ever trusted."""

import glob
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from bookcover import constants
from bookcover.cover_cache import CoverCache
from tests.pipeline_runs import TINY_TRAINING

pytestmark = pytest.mark.pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 6
# The embedded data's 3 largest categories, the tiny one-point grid, a few epochs.
FLAGS = ["--categories", "3", *TINY_TRAINING, "--epochs", str(EPOCHS)]


def run_and_kill(
    argv: list[str], marker: str | None, delay_s: float | Callable[[str], float]
) -> tuple[int | None, str]:
    """local_runner in a session of its own; once a line starts with `marker`, waits
    `delay_s` (or what it gives for that line) and kills the whole session (Beam's workers
    too) with SIGKILL. Returns the exit status (None when killed) and the output."""
    runner = subprocess.Popen(
        [sys.executable, "local_runner.py", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in runner.stdout], daemon=True).start()
    output = []
    deadline = time.monotonic() + 900
    while runner.poll() is None or not lines.empty():
        assert time.monotonic() < deadline, "".join(output)
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        output.append(line)
        if marker and line.lstrip("[ 0123456789/]").startswith(marker):
            time.sleep(delay_s(line) if callable(delay_s) else delay_s)
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
                return None, "".join(output)
    return runner.wait(), "".join(output)


def assert_nothing_half_written_is_visible(out: str, context: str) -> None:
    """Every all-digit version in serving_model is a whole model with its statistics (TF
    Serving ignores other names), and every cache entry decodes as a stored cover."""
    serving = os.path.join(out, "serving_model")
    for version in os.listdir(serving) if os.path.isdir(serving) else []:
        path = os.path.join(serving, version)
        if version.isdigit():
            assert os.path.isfile(os.path.join(path, "saved_model.pb")), (context, path)
            assert os.path.isdir(os.path.join(path, "variables")), (context, path)
            assert os.path.isfile(os.path.join(path, constants.BASELINE_STATISTICS)), context
        else:
            assert version.startswith(".incomplete-"), (context, version)
    cache = CoverCache(None)
    entries = glob.glob(os.path.join(out, "cache", "covers", "*", "*.jpg"))
    for entry in entries:
        with open(entry, "rb") as f:
            assert cache._valid(f.read()), (context, entry)


def epochs(count: float) -> Callable[[str], float]:
    """A delay of `count` epochs, timed by the Trainer's epoch line ("..., 3.7 s, ETA ...")."""
    return lambda line: count * float(re.search(r", ([0-9.]+) s, ETA", line).group(1))


def test_runs_killed_in_ingestion_training_and_the_push_are_finished_by_a_rerun(tmp_path):
    seed = int(os.environ.get("BOOKCOVER_KILL_SEED", time.time()))
    rng = random.Random(seed)
    out = str(tmp_path / "out")
    argv = [*FLAGS, "--output-dir", out]
    # Training is killed within the next 1.5 epochs, timed by the epoch its marker line
    # reports, so the kill lands before the last epoch on a fast machine too (2 remain).
    training_epochs = rng.uniform(0.0, 1.5)
    kills = [
        ("ingestion", "CoverExampleGen ...", rng.uniform(0.0, 1.5)),
        ("training", f"Trainer: epoch {rng.randint(2, EPOCHS - 2)}/", epochs(training_epochs)),
        ("the push", "Pusher ...", rng.uniform(0.0, 0.5)),
    ]
    for stage, marker, delay in kills:
        after = f"{delay:.2f} s" if isinstance(delay, float) else f"{training_epochs:.2f} epochs"
        context = f"killed in {stage} ({after} after {marker!r}; BOOKCOVER_KILL_SEED={seed})"
        status, output = run_and_kill(argv, marker, delay)
        assert status is None, f"{context}: the run ended before the kill ({status}):\n{output}"
        assert_nothing_half_written_is_visible(out, context)
        if stage == "training":  # killed mid-training: the rerun has epochs to resume from
            (record,) = glob.glob(os.path.join(out, "trainer_backup", "*", "history.json"))
            with open(record) as f:
                assert 1 <= len(json.load(f)["epoch"]) < EPOCHS, context

    status, output = run_and_kill(argv, None, 0)
    assert status == 0, f"BOOKCOVER_KILL_SEED={seed}:\n{output}"
    assert_nothing_half_written_is_visible(out, f"after the last rerun, seed {seed}")
    with open(os.path.join(out, "run_summary.json")) as f:
        summary = json.load(f)
    assert summary["state"] == "finished" and summary["blessed"], summary
    assert os.path.isfile(os.path.join(summary["pushed_model"], "saved_model.pb"))
    # The training that was killed and resumed: its history has every epoch, and the
    # exported epoch is the best of all of them, before the kill and after.
    (run_dir,) = [
        os.path.dirname(p)
        for p in glob.glob(os.path.join(out, "pipeline", "Trainer", "model_run", "*", "*.json"))
        if p.endswith("best_epoch.json")
    ]
    with open(os.path.join(run_dir, "history.json")) as f:
        history = json.load(f)
    with open(os.path.join(run_dir, "best_epoch.json")) as f:
        best = json.load(f)
    assert len(history["val_accuracy"]) == EPOCHS, history
    assert best["epoch"] == int(np.argmax(history["val_accuracy"])), (best, history)

"""CoverTuner's executor with TuneArgs(num_parallel_trials=2): a chief oracle and two worker
processes find the trials and the best values a sequential search finds, a worker killed
mid-trial costs a retry of its trial and not the search, and nothing is left running."""

import json
import os
import signal
import threading
import time

import pytest
from tfx.dsl.components.base import base_executor
from tfx.proto import trainer_pb2, tuner_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components import grid_tuner, parallel_tuner
from tests import tiny_model

pytestmark = pytest.mark.pipeline  # runs training: make test

# Four points; the tiny learning rate learns nothing in a few epochs.
GRID = {"learning_rates": [1e-3, 1e-7], "first_filters": [8, 12]}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel_tuner")
    tiny_model.build_transform_graph(str(root))
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    for split, count in (("train", 48), ("eval", 24)):
        os.makedirs(root / "examples" / f"Split-{split}")
        path = str(root / "examples" / f"Split-{split}" / "data.gz")
        tiny_model.write_tfrecords(path, tiny_model.raw_rows(count))
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(root / "graph")
    return {"examples": [examples], "transform_graph": [graph]}


def run_tuner(inputs, out, parallel: int = 0) -> tuple[list[dict], dict]:
    """The real executor's Do; returns (the trial table, the best hyperparameters)."""
    out.mkdir()
    best, results = standard_artifacts.HyperParameters(), standard_artifacts.TunerResults()
    best.uri, results.uri = str(out / "best"), str(out / "results")
    os.makedirs(best.uri), os.makedirs(results.uri)
    properties = {
        "tuner_fn": "models.trainer.tuner_fn",
        "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(splits=["train"])),
        "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["eval"])),
        "custom_config": json.dumps(
            {**GRID, "batch_size": 8, "tuner_epochs": 4, "tuner_patience": 4}
        ),
    }
    if parallel:
        tune_args = tuner_pb2.TuneArgs(num_parallel_trials=parallel)
        properties["tune_args"] = proto_utils.proto_to_json(tune_args)
    context = base_executor.BaseExecutor.Context(tmp_dir=str(out / "tmp"), unique_id="1")
    grid_tuner.Executor(context).Do(
        inputs, {"best_hyperparameters": [best], "tuner_results": [results]}, properties
    )
    with open(os.path.join(results.uri, grid_tuner.TRIALS_JSON)) as f:
        table = json.load(f)
    with open(os.path.join(best.uri, "best_hyperparameters.txt")) as f:
        return table, json.load(f)["values"]


def grid_points(table: list[dict]) -> set[tuple]:
    return {(row["learning_rate"], row["first_filters"]) for row in table}


def scores(table: list[dict]) -> dict[tuple, float]:
    return {(row["learning_rate"], row["first_filters"]): row["score"] for row in table}


def worker_pids() -> list[int]:
    """This test's tuner workers still alive, by their command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
        except OSError:
            continue
        if b"components.parallel_tuner" in command:
            found.append(int(pid))
    return found


@pytest.fixture(scope="module")
def sequential(inputs, tmp_path_factory):
    return run_tuner(inputs, tmp_path_factory.mktemp("runs") / "sequential")


def test_two_workers_find_what_the_sequential_search_finds(inputs, sequential, tmp_path):
    table, best = run_tuner(inputs, tmp_path / "parallel", parallel=2)
    plain_table, plain_best = sequential
    assert grid_points(table) == grid_points(plain_table) and len(table) == 4
    assert {row["status"] for row in table} == {"COMPLETED"}
    assert [row["runs"] for row in table] == [1, 1, 1, 1]
    # Each trial seeds itself from its values and reads its own data afresh, in a fixed
    # order: its result depends on its values alone, not on the trials run before it in
    # the same process, so both searches score every point alike and pick one winner.
    assert scores(table) == scores(plain_table)
    assert best == plain_best and best["learning_rate"] == 1e-3
    for row in table:  # the curves the workers wrote reach the chief's table
        assert row["epochs_run"] >= 1 and len(row["curves"]["val_accuracy"]) == row["epochs_run"]
    assert worker_pids() == []


def test_a_worker_killed_mid_trial_costs_a_retry_not_the_search(inputs, sequential, tmp_path):
    killed = []

    def kill_one_worker_mid_trial():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            # A trial is under way once a worker has recorded an epoch of it.
            if list((tmp_path / "killed" / "tmp").rglob("curves.json")) and worker_pids():
                pid = worker_pids()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_worker_mid_trial, daemon=True)
    killer.start()
    table, best = run_tuner(inputs, tmp_path / "killed", parallel=2)
    killer.join(timeout=5)
    assert killed, "no worker was killed"
    assert grid_points(table) == grid_points(sequential[0])
    assert {row["status"] for row in table} == {"COMPLETED"}
    # The killed worker's trial ran again, on another worker, and says so; run anew, it
    # scored what it scores uninterrupted.
    assert sorted(row["runs"] for row in table)[-1] == 2
    assert scores(table) == scores(sequential[0])
    assert best == sequential[1]
    assert worker_pids() == []


def test_workers_get_a_gpu_each_or_a_share_of_the_cores():
    assert parallel_tuner.worker_devices(1, 2, gpus=4, cpus=[0, 1]) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert (
        parallel_tuner.worker_devices(0, 2, gpus=0, cpus=[0, 1, 2, 3])[parallel_tuner.CPUS_ENV]
        == "0,1"
    )
    assert (
        parallel_tuner.worker_devices(1, 2, gpus=0, cpus=[0, 1, 2, 3])[parallel_tuner.CPUS_ENV]
        == "2,3"
    )
    # More workers than cores: they share, none is left without one.
    assert parallel_tuner.worker_devices(2, 3, gpus=0, cpus=[0, 1])[parallel_tuner.CPUS_ENV] == "0"

"""A Trainer killed mid-training resumes from its BackupAndRestore state and finishes."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

from tests import tiny_model

EPOCHS = 8


def start_training(job_path):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.run_fn_job", job_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkilled_training_resumes_past_epoch_zero(tmp_path):
    _, _ = tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(120))
    backup_dir = tmp_path / "backup"
    job = {
        "train_files": [records],
        "eval_files": [records],
        "transform_graph_path": str(tmp_path / "graph"),
        "serving_model_dir": str(tmp_path / "serving"),
        "model_run_dir": str(tmp_path / "run"),
        "hyperparameters": None,
        "custom_config": {
            "epochs": EPOCHS,
            "patience": 100,
            "batch_size": 8,
            "learning_rates": [1e-3],
            "first_filters": [16],
            "backup_dir": str(backup_dir),
            "mixed_precision": "float32",
        },
    }
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job))

    first = start_training(str(job_path))
    deadline = time.monotonic() + 300
    while not glob.glob(str(backup_dir / "*" / "training_metadata.json")):
        assert first.poll() is None, "training ended before any epoch was backed up"
        assert time.monotonic() < deadline, "no backup appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (metadata_file,) = glob.glob(str(backup_dir / "*" / "training_metadata.json"))
    with open(metadata_file) as f:
        backed_up_epoch = json.load(f)["epoch"]
    assert backed_up_epoch >= 1  # epochs completed when killed
    assert not os.path.exists(tmp_path / "serving" / "saved_model.pb")

    second = start_training(str(job_path))
    assert second.wait(timeout=600) == 0
    with open(tmp_path / "run" / "history.json") as f:
        history = json.load(f)
    # The resumed fit ran only the epochs after the backed-up one.
    assert len(history["loss"]) == EPOCHS - backed_up_epoch
    assert len(history["loss"]) < EPOCHS
    assert os.path.exists(tmp_path / "serving" / "saved_model.pb")
    assert not glob.glob(str(backup_dir / "*" / "training_metadata.json"))  # cleaned up

"""A Trainer killed mid-training resumes from its BackupAndRestore state and finishes."""

import glob
import json
import os
import signal
import subprocess
import time

from tests import run_fn_job, tiny_model

EPOCHS = 8


def start_training(job, job_path):
    return subprocess.Popen(
        run_fn_job.command(job, job_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkilled_training_resumes_past_epoch_zero(tmp_path):
    _, _ = tiny_model.build_transform_graph(str(tmp_path))
    records = tiny_model.write_tfrecords(str(tmp_path / "train.gz"), tiny_model.raw_rows(120))
    backup_dir = tmp_path / "backup"
    job = run_fn_job.describe(
        [records],
        [records],
        str(tmp_path / "graph"),
        str(tmp_path),
        epochs=EPOCHS,
        patience=100,
        batch_size=8,
        learning_rates=[1e-3],
        first_filters=[16],
        mixed_precision="float32",
    )
    job_path = str(tmp_path / "job.json")
    first = start_training(job, job_path)
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

    second = start_training(job, job_path)
    assert second.wait(timeout=600) == 0
    with open(tmp_path / "run" / "history.json") as f:
        history = json.load(f)
    # The resumed fit ran only the epochs after the backed-up one.
    assert len(history["loss"]) == EPOCHS - backed_up_epoch
    assert len(history["loss"]) < EPOCHS
    assert os.path.exists(tmp_path / "serving" / "saved_model.pb")
    assert not glob.glob(str(backup_dir / "*" / "training_metadata.json"))  # cleaned up

"""Publishing a pushed model: whole or not at all, and never two pushes under one version."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bookcover import model_versions
from components import cover_pusher


def model_dir(root, big_bytes: int = 0):
    """A stand-in SavedModel directory; `big_bytes` makes its variables slow to copy."""
    path = root / "model"
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    with open(path / "variables" / "variables.data-00000-of-00001", "wb") as f:
        f.write(os.urandom(1024) * (max(big_bytes, 1024) // 1024))
    return path


def test_two_pushes_in_one_second_get_two_complete_versions(tmp_path):
    source = model_dir(tmp_path)
    stats = tmp_path / "FeatureStats.pb"
    stats.write_bytes(b"stats")
    serving = tmp_path / "serving"
    first = cover_pusher.publish(str(source), str(stats), str(serving))
    second = cover_pusher.publish(str(source), str(stats), str(serving))
    assert int(second[0]) == int(first[0]) + 1
    assert model_versions.versions(str(serving)) == [int(first[0]), int(second[0])]
    for _, path in (first, second):
        assert (serving / os.path.basename(path) / "saved_model.pb").read_bytes() == b"graph"
        assert (serving / os.path.basename(path) / "assets.extra/train_statistics.pb").exists()
    assert sorted(os.listdir(serving)) == sorted([first[0], second[0]])  # no staging left


@pytest.mark.pipeline
def test_a_push_killed_mid_copy_leaves_no_version_and_the_next_push_publishes(tmp_path):
    source = model_dir(tmp_path, big_bytes=256 * 1024 * 1024)
    serving = tmp_path / "serving"
    serving.mkdir()
    code = "import sys; from components import cover_pusher; cover_pusher.publish(*sys.argv[1:])"
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(source), "", str(serving)],
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    deadline = time.monotonic() + 120
    while True:
        staged = [
            os.path.join(serving, n, "variables", "variables.data-00000-of-00001")
            for n in os.listdir(serving)
            if n.startswith(model_versions.STAGING_PREFIX)
        ]
        if any(os.path.exists(p) and os.path.getsize(p) > 0 for p in staged):
            break
        assert process.poll() is None, "the push ended before it could be killed"
        assert time.monotonic() < deadline, "the copy never started"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert os.path.getsize(staged[0]) < os.path.getsize(
        source / "variables" / "variables.data-00000-of-00001"
    ), "killed too late: the copy had finished"
    assert model_versions.versions(str(serving)) == []  # TF Serving sees nothing to load

    small = model_dir(tmp_path / "next")
    version, path = cover_pusher.publish(str(small), None, str(serving))
    assert model_versions.versions(str(serving)) == [int(version)]
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    # The dead push's staging is young, so kept; once old, the next push removes it.
    assert cover_pusher.remove_stale_staging(str(serving), older_than_s=0) == [
        os.path.dirname(os.path.dirname(staged[0]))
    ]
    assert os.listdir(serving) == [version]

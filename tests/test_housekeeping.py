"""python -m pipeline.housekeeping: reports an output directory and prunes only what is old."""

import os
import time

import pytest

from pipeline import housekeeping

DAY = 24 * 3600


def touch(path, data=b"x" * 1000, age_s=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def aged_dir(path, age_s):
    touch(path / "f", age_s=age_s)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


@pytest.fixture
def outputs(tmp_path):
    out = tmp_path / "outputs"
    touch(out / "cache/covers/ab/ab12.jpg")
    touch(out / "cache/covers/ab/ab34.jpg", age_s=40 * DAY)
    touch(out / "cache/covers/ab/ab12.jpg.99.1.tmp", age_s=2 * 3600)  # a killed writer's
    touch(out / "cache/covers/cd/cd56.jpg.99.2.tmp")  # a live writer's
    aged_dir(out / "trainer_backup/old", 10 * DAY)
    aged_dir(out / "trainer_backup/recent", 1 * DAY)
    for version in (100, 200, 300, 400):
        aged_dir(out / f"serving_model/{version}", 1000 - version)
    aged_dir(out / "serving_model/.incomplete-dead", 2 * 3600)
    for i in range(4):
        touch(out / f"logs/run-{i}.log", age_s=100 - i)
        aged_dir(out / f"reports/run-{i}", 100 - i)
    return out


def survivors(out, part):
    return sorted(os.listdir(out / part))


def test_a_survey_removes_nothing_and_says_how_to_prune(outputs, capsys):
    parts = housekeeping.main(["--output-dir", str(outputs), "--keep-logs", "2"])
    text = capsys.readouterr().out
    assert "pass --prune" in text and "download cache" in text
    by_name = {p.name: p for p in parts}
    assert by_name["download cache"].entries == 4
    assert len(by_name["download cache"].removable) == 1  # the abandoned .tmp only
    assert len(survivors(outputs, "serving_model")) == 5  # nothing removed


def test_prune_keeps_the_newest_versions_recent_backups_and_live_files(outputs, capsys):
    argv = ["--output-dir", str(outputs), "--prune", "--keep-versions", "2", "--keep-logs", "2",
            "--keep-reports", "1", "--cache-days", "30"]  # fmt: skip
    housekeeping.main(argv)
    assert "removed" in capsys.readouterr().out
    assert survivors(outputs, "serving_model") == ["300", "400"]  # the served one stays
    assert survivors(outputs, "trainer_backup") == ["recent"]
    assert survivors(outputs, "logs") == ["run-2.log", "run-3.log"]
    assert survivors(outputs, "reports") == ["run-3"]
    assert survivors(outputs, "cache/covers/ab") == ["ab12.jpg"]
    assert survivors(outputs, "cache/covers/cd") == ["cd56.jpg.99.2.tmp"]
    housekeeping.main(["--output-dir", str(outputs), "--prune", "--keep-versions", "0"])
    assert survivors(outputs, "serving_model") == ["400"]  # never the last one


def test_housekeeping_waits_for_no_run_it_stops_at_a_running_one(outputs):
    from pipeline import local_run

    with local_run.output_lock(str(outputs)):
        import subprocess
        import sys

        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.housekeeping",
                "--output-dir",
                str(outputs),
                "--prune",
            ],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
    assert done.returncode == 1 and "is in use by pid" in done.stderr
    assert len(survivors(outputs, "serving_model")) == 5

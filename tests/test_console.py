"""The readable run's parts: progress on a pipe, the terminal filter, the step lines."""

import io
import logging

import pytest

from bookcover import console, progress

CONTROL = ("\r", "\x1b")


@pytest.fixture
def terminal():
    """The project's terminal handler on a StringIO, as local_runner sets it up quietly."""
    stream = io.StringIO()
    handler = console.TerminalHandler(stream)
    handler.addFilter(console.project_or_error)
    root = logging.getLogger()
    root.addHandler(handler)
    # Other tests (absl, TFX) may have set these loggers' levels.
    loggers = [root, logging.getLogger("bookcover"), logging.getLogger("absl")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_progress_on_a_pipe_is_periodic_plain_lines(terminal):
    covers = progress.Progress("covers", 40, unit="cover", stream=io.StringIO(), every_s=0.0)
    for i in range(40):
        covers.update(failed=int(i % 10 == 0))
    covers.close()
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 41  # one per update (every_s=0) and the final one
    assert lines[-1].startswith("covers: 100% 40/40 [") and lines[-1].endswith("failed=4")
    assert "cover/s" in lines[-1]
    assert not any(c in terminal.getvalue() for c in CONTROL)


def test_progress_on_a_terminal_draws_a_bar_and_ends_with_one_line(terminal):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    screen = Tty()
    covers = progress.Progress("covers", 5, unit="cover", stream=screen)
    for _ in range(5):
        covers.update()
    covers.close()
    assert "\r" in screen.getvalue()  # tqdm's live bar
    assert terminal.getvalue().splitlines() == [terminal.getvalue().splitlines()[-1]]
    assert "5/5" in terminal.getvalue()


def test_the_terminal_shows_the_projects_lines_and_every_error_only(terminal):
    logging.getLogger("absl").info("Using deployment config: ...")
    logging.getLogger("tensorflow").warning("5 out of the last 9 calls triggered retracing")
    logging.getLogger("bookcover").info("[ 1/3] CoverExampleGen ...")
    logging.getLogger("bookcover").warning("the project's own warning")
    logging.getLogger("apache_beam").error("a worker failed")
    assert terminal.getvalue().splitlines() == [
        "[ 1/3] CoverExampleGen ...",
        "the project's own warning",
        "a worker failed",
    ]


def test_step_lines_follow_tfx_launcher_messages(terminal):
    steps = console.StepLines(total=2)
    absl = logging.getLogger("absl.test_steps")
    absl.addHandler(steps)
    try:
        absl.info("Component %s is running.", "StatisticsGen")
        absl.info("Going to run a new execution %d", 3)
        absl.info("Component %s is finished.", "StatisticsGen")
        absl.info("Component %s is running.", "Transform")
        absl.info("A cached execution %d is used.", 4)
        absl.info("Component %s is finished.", "Transform")
    finally:
        absl.removeHandler(steps)
    lines = terminal.getvalue().splitlines()
    assert lines[0] == "[ 1/2] StatisticsGen ..."
    assert lines[1].startswith("[ 1/2] StatisticsGen: executed in ")
    assert lines[3].startswith("[ 2/2] Transform: from cache in ")


def test_quiet_environment_reaches_child_processes(monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    console.quiet_environment()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys, warnings; print(os.environ['TF_CPP_MIN_LOG_LEVEL']); "
            "print(sys.unraisablehook.__name__); "
            "warnings.warn_explicit('x', FutureWarning, 'f.py', 1, "
            "module='google.api_core._python_version_support')",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split() == ["3", "_drop_tensorflow_teardown"]
    assert child.stderr == ""  # the known warning is filtered in the child too
    assert "/elsewhere" in __import__("os").environ["PYTHONPATH"]

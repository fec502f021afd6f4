"""A run a person can read: third-party noise silenced at its source, the full log kept in a file.

`quiet_environment()` must run before TensorFlow, TFX or Beam are imported: it
sets the environment that this process and every Beam worker process it
starts inherit. `configure_logging()` then sends every log record to the
run's log file, and to the terminal only the project's own lines (the
`bookcover` logger: step starts and ends, progress, the summary) and any
error from anyone. `--verbose` skips both and shows everything.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from tqdm import tqdm

# Warnings the stack raises at import in every process, none of them actionable here:
# (category, module as Python's warning filters match it).
KNOWN_NOISE = (
    # google.api_core and google.auth about Python 3.10 and grpcio; the stack pins both.
    (FutureWarning, "google.api_core._python_version_support"),
    (FutureWarning, "google.auth.transport.grpc"),
    (FutureWarning, "google.cloud.aiplatform.models"),
    # Keras, when fit() consumes a finite dataset without steps_per_epoch: by design here.
    (UserWarning, "keras.src.trainers.epoch_iterator"),
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_environment() -> None:
    """Silences TensorFlow's C++ log and the known warnings, here and in child processes."""
    # 3: no INFO, WARNING or ERROR lines from TensorFlow's C++ runtime (CUDA plugin
    # registration, TF-TRT, tf.data rendezvous); Python exceptions still say what failed.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    filters = [f"ignore::{category.__name__}:{module}" for category, module in KNOWN_NOISE]
    inherited = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filters + ([inherited] if inherited else []))
    for category, module in KNOWN_NOISE:
        warnings.filterwarnings("ignore", category=category, module=module.replace(".", r"\."))
    # Beam's local worker processes read worker_site/sitecustomize.py at start-up.
    worker_site = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_site")
    paths = [worker_site] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


class TerminalHandler(logging.Handler):
    """Writes through tqdm, so a line never tears a live progress bar."""

    def __init__(self, stream=None):
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def project_or_error(record: logging.LogRecord) -> bool:
    return record.name.split(".")[0] == "bookcover" or record.levelno >= logging.ERROR


def configure_logging(
    log_path: str, steps: int, verbose: bool = False, stream=None
) -> logging.Handler:
    """Every record to `log_path`; to the terminal, the project's lines (all, if verbose),
    with a line as each of the `steps` pipeline steps starts and ends. Returns the file
    handler (to close when the log file moves)."""
    import absl.logging

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    # absl (TFX's logger) writes to stderr through its own handler: route it through ours.
    root.removeHandler(absl.logging.get_absl_handler())
    # A bare stderr handler that an import's logging.basicConfig left behind would print
    # every record a second time.
    # TensorFlow gives its logger such a handler too when it is imported first.
    for logger in (root, logging.getLogger("tensorflow")):
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
    logging.getLogger("tensorflow").propagate = True
    absl.logging.set_verbosity(absl.logging.INFO)
    release_logging()

    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    terminal = TerminalHandler(stream)
    if verbose:
        terminal.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        terminal.setFormatter(logging.Formatter("%(message)s"))
        terminal.addFilter(project_or_error)
    for handler in (file_handler, terminal, StepLines(steps)):
        handler._bookcover = True
        root.addHandler(handler)
    logging.getLogger("bookcover").setLevel(logging.INFO)
    return file_handler


class StepLines(logging.Handler):
    """One line when each pipeline step starts and one when it ends (executed or cached,
    wall time), read from the messages of TFX 1.16's LocalDagRunner and launcher."""

    def __init__(self, total: int):
        super().__init__()
        self.total, self.index = total, 0
        self.started, self.outcome, self.node = 0.0, "executed", ""

    def emit(self, record: logging.LogRecord) -> None:
        from bookcover.progress import LOGGER

        message = record.msg if isinstance(record.msg, str) else ""
        if message == "Component %s is running.":
            self.index += 1
            self.node, self.outcome, self.started = record.args[0], "executed", record.created
            LOGGER.info("[%2d/%d] %s ...", self.index, self.total, self.node)
        elif message.startswith("A cached execution"):
            self.outcome = "from cache"
        elif message == "Component %s is finished.":
            seconds = record.created - self.started
            LOGGER.info(
                "[%2d/%d] %s: %s in %.1f s",
                self.index,
                self.total,
                self.node,
                self.outcome,
                seconds,
            )


def release_logging() -> None:
    """Takes this module's handlers off the root logger again (the run is over)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_bookcover", False)]:
        root.removeHandler(handler)
        handler.close()

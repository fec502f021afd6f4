"""Beam's portable runner on 127.0.0.1: the local job service and an EXTERNAL SDK worker pool,
which is how Flink and Spark clusters run Python SDK workers."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB_SERVICE = "apache_beam.runners.portability.local_job_service_main"
WORKER_POOL = "apache_beam.runners.worker.worker_pool_main"


@dataclasses.dataclass
class PortableBeam:
    args: list[str]  # the Beam pipeline arguments that send a pipeline to these services
    job_log: str
    pool_log: str

    def jobs_run(self) -> int:
        with open(self.job_log, errors="replace") as f:
            return sum("Running job" in line for line in f)

    def workers_started(self) -> int:
        with open(self.pool_log, errors="replace") as f:
            return sum(line.startswith("Starting worker with command") for line in f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, log: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log, errors="replace") as f:
                raise RuntimeError(f"{log}: exited early:\n{f.read()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.5)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after 90 s ({log})")


@contextlib.contextmanager
def portable_runner(log_dir: str) -> Iterator[PortableBeam]:
    """Starts the job service and the worker pool; stops them, and every SDK worker the
    pool started, on the way out."""
    job_port, pool_port = _free_port(), _free_port()
    # The pool starts each SDK worker as `python -c ...` in its own folder: this
    # environment's python, in the repository, so the workers import the project.
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    logs = [os.path.join(log_dir, "job_service.log"), os.path.join(log_dir, "worker_pool.log")]
    commands = [
        [sys.executable, "-m", JOB_SERVICE, "--port", str(job_port)],
        [sys.executable, "-m", WORKER_POOL, "--service_port", str(pool_port)],
    ]
    processes = []
    try:
        for command, log in zip(commands, logs, strict=True):
            with open(log, "w") as out:
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=REPO,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                )
        for port, process, log in zip((job_port, pool_port), processes, logs, strict=True):
            _wait_for(port, process, log)
        yield PortableBeam(
            args=[
                "--runner=PortableRunner",
                f"--job_endpoint=127.0.0.1:{job_port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=127.0.0.1:{pool_port}",
                # What the workers run (here: this checkout's environment). Named, it
                # tells TFX the workers have its code, so it builds no sdist of
                # itself; an EXTERNAL environment stages nothing for it.
                "--sdk_container_image=bookcover-local-environment",
            ],
            job_log=logs[0],
            pool_log=logs[1],
        )
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

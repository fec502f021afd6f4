"""The grid's trials at once: keras-tuner's distributed mode on one node, as TFX's Vertex AI
Tuner runs it, with the chief oracle in the Tuner's own process and N worker processes
on 127.0.0.1, each on its own GPU or its own share of the cores.

The chief builds the tuner that tuner_fn returns and serves its oracle over gRPC; it
trains nothing. Each worker runs tuner_fn too, with KERASTUNER_TUNER_ID, _ORACLE_IP and
_ORACLE_PORT set, so keras-tuner proxies its oracle to the chief and it runs the trials
the chief hands out. The chief's oracle ends up with every trial, as a sequential
search's does, so the best hyperparameters and the trial table are written the same way.

A worker that dies fails the trial it was running (INVALID, retried once by the oracle
on another worker, then FAILED), never the search. Workers die with the Tuner's
process (PR_SET_PDEATHSIG), and are stopped when the search ends, however it ends.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent import futures

from tfx.components.trainer import fn_args_utils
from tfx.components.util import udf_utils
from tfx.types import artifact_utils

from bookcover import progress

WORKER_PREFIX = "worker"  # never "chief": keras-tuner tells the chief by that word
CPUS_ENV = "BOOKCOVER_TUNER_CPUS"  # the cores a worker keeps to (comma-separated)
POLL_S = 0.5
STOP_GRACE_S = 10.0


def parallel_trials(requested: int) -> int:
    """How many trials run at once: `requested`, or for 0 one per GPU (1 without one)."""
    if requested > 0:
        return requested
    import tensorflow as tf

    return max(1, len(tf.config.list_physical_devices("GPU")))


def worker_devices(index: int, workers: int, gpus: int, cpus: list[int]) -> dict[str, str]:
    """Environment that gives worker `index` its GPU (round robin) or its share of `cpus`.

    On its share of the cores a worker keeps as many TensorFlow threads as the
    sequential search has (one per core of `cpus`): a convolution's sums are split by
    thread, so with fewer threads they round otherwise, and a trial's score could
    differ from the sequential search's by an example or two."""
    if gpus:
        return {"CUDA_VISIBLE_DEVICES": str(index % gpus)}
    share = max(1, len(cpus) // workers)
    start = (index * share) % len(cpus)
    mine = cpus[start : start + share] or cpus
    return {
        "CUDA_VISIBLE_DEVICES": "-1",
        CPUS_ENV: ",".join(map(str, mine)),
        "TF_NUM_INTRAOP_THREADS": str(len(cpus)),
    }


@dataclasses.dataclass
class Worker:
    tuner_id: str
    process: subprocess.Popen
    log_path: str


class WorkerPool:
    """Starts, watches and stops the worker processes of one search."""

    def __init__(self, oracle, job_path: str, port: int, workers: int, log_dir: str):
        self.oracle, self.job_path, self.port = oracle, job_path, port
        self.workers, self.log_dir = workers, log_dir
        self.live: list[Worker] = []
        self.started = 0
        self.deaths: list[str] = []  # one line per worker that died, for the log
        self.max_starts = 2 * workers + oracle.max_trials  # a bound, never an infinite loop
        import tensorflow as tf

        self.gpus = len(tf.config.list_physical_devices("GPU"))
        self.cpus = sorted(os.sched_getaffinity(0))

    def start_worker(self) -> Worker:
        index = self.started
        self.started += 1
        tuner_id = f"{WORKER_PREFIX}{index + 1}"
        env = {
            **os.environ,
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(self.port),
            **worker_devices(index, self.workers, self.gpus, self.cpus),
        }
        log_path = os.path.join(self.log_dir, f"{tuner_id}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "components.parallel_tuner", self.job_path],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        worker = Worker(tuner_id, process, log_path)
        self.live.append(worker)
        return worker

    def work_left(self) -> bool:
        oracle = self.oracle
        return bool(oracle._retry_queue) or len(oracle.trials) < oracle.max_trials

    def run(self) -> None:
        """Until every trial has ended and every worker has exited."""
        for _ in range(self.workers):
            self.start_worker()
        while self.live or self.work_left():
            for worker in [w for w in self.live if w.process.poll() is not None]:
                self.live.remove(worker)
                self._ended(worker)
            if self.work_left() and len(self.live) < self.workers:
                if self.started >= self.max_starts:
                    raise RuntimeError(
                        f"Tuner: {self.started} workers started and the grid is not done; "
                        f"the last: {'; '.join(self.deaths[-3:])}"
                    )
                self.start_worker()
            time.sleep(POLL_S)

    def _ended(self, worker: Worker) -> None:
        code = worker.process.returncode
        trial = self.oracle.ongoing_trials.get(worker.tuner_id)
        self.oracle.tuner_ids.discard(worker.tuner_id)
        if code == 0 and trial is None:
            return
        line = f"{worker.tuner_id} ended with exit code {code} (log: {worker.log_path})"
        self.deaths.append(line)
        if trial is None:
            progress.LOGGER.info("Tuner: %s between trials", line)
            return
        from keras_tuner.src.engine import trial as trial_module

        progress.LOGGER.info(
            "Tuner: %s in trial %s; the trial is retried once", line, trial.trial_id
        )
        trial.status = trial_module.TrialStatus.INVALID
        trial.message = f"{line}; its trial is retried once"
        self.oracle.end_trial(trial)

    def stop(self) -> None:
        for worker in self.live:
            if worker.process.poll() is None:
                worker.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self.live:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.live = []


def start_oracle_server(oracle, on_trial_end=None):
    """keras-tuner's OracleServicer on 127.0.0.1 (a free port); returns (server, port)."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    class Servicer(oracle_chief.OracleServicer):
        def EndTrial(self, request, context):  # noqa: N802 - gRPC's name
            response = super().EndTrial(request, context)
            if on_trial_end is not None:
                on_trial_end(self.oracle.trials[request.trial.trial_id])
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(Servicer(oracle), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def parallel_search(input_dict, exec_properties, working_dir: str, workers: int):
    """The search over `workers` processes; returns the chief's tuner, whose oracle holds
    every trial."""
    fn_args = fn_args_utils.get_common_fn_args(input_dict, exec_properties, working_dir)
    tuner = udf_utils.get_fn(exec_properties, "tuner_fn")(fn_args).tuner
    oracle = tuner.oracle
    oracle.max_retries_per_trial = max(oracle.max_retries_per_trial, 1)
    # The workers' job and logs stay on this node's disk (working_dir may be gs://).
    log_dir = tempfile.mkdtemp(prefix="bookcover-tuner-")
    job_path = os.path.join(log_dir, "job.json")
    with open(job_path, "w") as f:
        json.dump(
            {
                "input_dict": artifact_utils.jsonify_artifact_dict(input_dict),
                "exec_properties": exec_properties,
                "working_dir": working_dir,
            },
            f,
        )
    server, port = start_oracle_server(oracle, on_trial_end=tuner.log_trial)
    progress.LOGGER.info("Tuner: %d trials at once, oracle on 127.0.0.1:%d", workers, port)
    pool = WorkerPool(oracle, job_path, port, workers, log_dir)
    try:
        pool.run()
    finally:
        pool.stop()
        server.stop(grace=None)
    return tuner


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the Tuner's process dies (Linux)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def worker_main(job_path: str) -> None:
    """One worker: runs trials from the chief until it has none left."""
    cpus = os.environ.get(CPUS_ENV)
    if cpus:
        os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])
    from tfx.components.tuner import executor as tuner_executor

    with open(job_path) as f:
        job = json.load(f)
    logging.basicConfig(level=logging.INFO)
    tuner_executor.search(
        artifact_utils.parse_artifact_dict(job["input_dict"]),
        job["exec_properties"],
        job["working_dir"],
        print_tuning_summary=False,
    )


if __name__ == "__main__":
    worker_main(sys.argv[1])

"""Runs a built pipeline on this machine and says how it went: the run's log file,
run_summary.json, the report copied out of the ReportGen artifact, the closing lines."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import shutil
import sys
import time

from pipeline import configs
from pipeline.report import REPORT_DIR, render_latest_run, swap_in

SUMMARY_FILE = "run_summary.json"
LOCK_FILE = ".run.lock"
# Reports of runs that are no longer the latest, each under its run id.
OLD_REPORTS_DIR = "reports"


@contextlib.contextmanager
def output_lock(output_dir: str):
    """Holds <output_dir>/.run.lock for one run: a second run on the same directory stops
    at once, in one line naming the run that holds it. The kernel drops the lock when
    its process dies, however it dies, so a dead run's lock is taken over."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another run"
            sys.exit(
                f"bookcover: {output_dir} is in use by {holder}; wait for it to finish "
                "or pass another --output-dir"
            )
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (started {started})".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays, naming the last holder


def run(bookcover, connection, output_dir: str, verbose: bool) -> dict:
    """Runs the pipeline with the LocalDagRunner; the summary, or one clear exit when it
    cannot finish. The run's logging is set up here and taken down when it ends, since
    the runner's main() also runs in process (tests, benchmarks)."""
    from bookcover import console

    log = RunLog(output_dir, len(bookcover.components), verbose)
    try:
        return _run(bookcover, connection, output_dir, log, verbose)
    finally:
        console.release_logging()


def _run(bookcover, connection, output_dir: str, log: RunLog, verbose: bool) -> dict:
    from tfx import v1 as tfx

    from components import books_csv
    from components.data_gate import DataValidationError

    started = time.monotonic()
    try:
        tfx.orchestration.LocalDagRunner().run(bookcover)
    except books_csv.CsvFormatError as e:
        # The user's file, not the pipeline, is at fault: one line, no traceback.
        write_failed_summary(output_dir, started, log, "failed", str(e))
        sys.exit(f"bookcover: {e}")
    except DataValidationError as e:
        summary = stopped_summary(connection, output_dir, e.findings)
        print_stopped(summary, write_summary(summary, output_dir, started, log))
        sys.exit(1)
    except KeyboardInterrupt:
        write_failed_summary(output_dir, started, log, "interrupted", "stopped by Ctrl-C")
        sys.exit(f"bookcover: interrupted; a rerun picks up from the cache\n  full log: {log.path}")
    except Exception as e:
        if verbose:
            write_failed_summary(output_dir, started, log, "failed", f"{type(e).__name__}: {e}")
            raise
        # The traceback goes to the log file; the terminal gets what failed and where to look.
        logging.getLogger(__name__).info("the run failed", exc_info=True)
        error = f"{type(e).__name__}: {e}"
        write_failed_summary(output_dir, started, log, "failed", error)
        sys.exit(f"bookcover: the run failed: {error}\n  full log: {log.path}")
    summary = collect_summary(connection, output_dir)
    print_result(summary, write_summary(summary, output_dir, started, log))
    return summary


def write_summary(summary: dict, output_dir: str, started: float, log: RunLog) -> str:
    """Adds the wall time and the log (now named by the run) and writes run_summary.json."""
    summary.setdefault("state", "finished")
    summary["wall_time_s"] = round(time.monotonic() - started, 1)
    summary["log"] = log.name_by_run(summary["run_id"])
    return write_json_atomically(os.path.join(output_dir, SUMMARY_FILE), summary)


def write_failed_summary(output_dir: str, started: float, log: RunLog, state: str, error: str):
    """run_summary.json for a run that did not finish, so nothing reads the last run's as
    this one's; the last run's report moves to reports/<its run id>/."""
    previous = read_summary(output_dir)
    summary = {
        "pipeline": configs.PIPELINE_NAME,
        "state": state,
        "error": error,
        "wall_time_s": round(time.monotonic() - started, 1),
        "log": log.path,
        "report": None,
        "blessed": False,
        "pushed_model": None,
    }
    if previous.get("run_id"):
        summary["previous_run"] = {
            "run_id": previous["run_id"],
            "state": previous.get("state", "finished"),
            "report": retire_report(output_dir, previous["run_id"]),
        }
    return write_json_atomically(os.path.join(output_dir, SUMMARY_FILE), summary)


def read_summary(output_dir: str) -> dict:
    try:
        with open(os.path.join(output_dir, SUMMARY_FILE)) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def retire_report(output_dir: str, run_id: str) -> str | None:
    """Moves <output_dir>/report/ to reports/<run_id>/; the moved index.html's path."""
    from reporting import html_report

    report_dir = os.path.join(output_dir, REPORT_DIR)
    if not os.path.isdir(report_dir):
        return None
    target = os.path.join(output_dir, OLD_REPORTS_DIR, run_id.replace(os.sep, "_"))
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(report_dir, target)
    return os.path.join(target, html_report.INDEX)


def write_json_atomically(path: str, value: dict) -> str:
    """Written beside `path`, then renamed over it: a reader sees the old file or the new."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def replace_directory(source: str, target: str) -> None:
    """Copies `source` to `target` as a whole: the copy is made beside it, then swapped in."""
    staging = f"{target}.{os.getpid()}.new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    swap_in(staging, target)


class RunLog:
    """outputs/logs/<run id>.log: every log line of the run. TFX names the run only once it
    starts, so the file begins under the start time and takes the run id at the end."""

    def __init__(self, output_dir: str, steps: int, verbose: bool):
        from bookcover import console

        self.directory = os.path.join(output_dir, "logs")
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, time.strftime("started-%Y%m%d-%H%M%S.log"))
        self.handler = console.configure_logging(self.path, steps, verbose)

    def name_by_run(self, run_id: str) -> str:
        target = os.path.join(self.directory, f"{run_id}.log")
        self.handler.close()
        os.replace(self.path, target)
        # Lines after the run (the summary) go on into the renamed file.
        self.handler.baseFilename = self.path = target
        return target


def collect_summary(connection, output_dir: str) -> dict:
    """The ReportGen step's summary, with what only ML Metadata knows (this run's id, each
    step's state and time); its report is copied to <output_dir>/report/."""
    from reporting import html_report, run_artifacts
    from reporting.summary import SUMMARY_FILE as REPORT_SUMMARY_FILE

    run = run_artifacts.latest_run(connection, configs.PIPELINE_NAME)
    report_dir = os.path.join(output_dir, REPORT_DIR)
    replace_directory(run.artifacts.report, report_dir)
    with open(os.path.join(report_dir, REPORT_SUMMARY_FILE)) as f:
        summary = json.load(f)
    return {
        "pipeline": configs.PIPELINE_NAME,
        **summary,
        "run_id": run.run_id,
        "report_run_id": summary.get("run_id"),
        "components": run.components,
        "report": os.path.join(report_dir, html_report.INDEX),
        "report_artifact": run.artifacts.report,
    }


def stopped_summary(connection, output_dir: str, findings: list[dict]) -> dict:
    """What a run stopped by data validation found; its report shows the data sections."""
    return render_latest_run(
        connection,
        output_dir,
        state="stopped",
        stopped="data validation found problems; nothing was trained",
        data_validation={"findings": findings, "allowed": False},
    )


def print_stopped(summary: dict, summary_path: str) -> None:
    from components.data_gate import finding_line

    findings = summary["data_validation"]["findings"]
    print(
        f"\nbookcover: data validation stopped the run before Transform "
        f"({len(findings)} problem(s), {summary['wall_time_s']} s):"
    )
    for finding in findings:
        print(f"  {finding_line(finding)}")
    print(f"  schema:        {os.path.relpath(configs.SCHEMA_FILE)} (python -m pipeline.schema)")
    print("  to go on knowingly: --allow-anomalies")
    print(f"  report:        {summary['report']}")
    print(f"  summary:       {summary_path}")
    print(f"  log:           {summary['log']}")


def print_result(summary: dict, summary_path: str) -> None:
    executed = [n for n, c in summary["components"].items() if c["status"] == "executed"]
    accuracy = summary.get("test_accuracy")
    print(
        f"\nbookcover: run finished in {summary['wall_time_s']} s "
        f"({len(executed)} of {len(summary['components'])} components executed, "
        "the rest from cache)"
    )
    print(f"  categories:    {', '.join(summary.get('categories', []))}")
    print(f"  test accuracy: {accuracy:.3f}" if accuracy is not None else "  test accuracy: n/a")
    allowed = (summary.get("data_validation") or {}).get("allowed")
    if allowed:
        count = len(summary["data_validation"]["findings"])
        print(f"  data:          {count} validation problem(s) allowed (--allow-anomalies)")
    print(f"  blessed:       {summary['blessed']}")
    for reason in summary.get("blocked_reasons", []):
        print(f"  blocked:       {reason}")
    print(f"  pushed model:  {summary['pushed_model'] or 'none (not blessed)'}")
    print(f"  report:        {summary['report']}")
    print(f"  summary:       {summary_path}")
    print(f"  log:           {summary['log']}")

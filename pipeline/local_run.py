"""Runs a built pipeline on this machine and says how it went: the run's log file,
run_summary.json, the report copied out of the ReportGen artifact, the closing lines."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from pipeline import configs
from pipeline.report import REPORT_DIR, render_latest_run


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
        sys.exit(f"bookcover: {e}")
    except DataValidationError as e:
        summary = stopped_summary(connection, output_dir, e.findings)
        print_stopped(summary, write_summary(summary, output_dir, started, log))
        sys.exit(1)
    except Exception as e:
        if verbose:
            raise
        # The traceback goes to the log file; the terminal gets what failed and where to look.
        logging.getLogger(__name__).info("the run failed", exc_info=True)
        sys.exit(f"bookcover: the run failed: {type(e).__name__}: {e}\n  full log: {log.path}")
    summary = collect_summary(connection, output_dir)
    print_result(summary, write_summary(summary, output_dir, started, log))
    return summary


def write_summary(summary: dict, output_dir: str, started: float, log: RunLog) -> str:
    """Adds the wall time and the log (now named by the run) and writes run_summary.json."""
    summary["wall_time_s"] = round(time.monotonic() - started, 1)
    summary["log"] = log.name_by_run(summary["run_id"])
    summary_path = os.path.join(output_dir, "run_summary.json")
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=2)
    return summary_path


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
    import shutil

    from reporting import html_report, run_artifacts
    from reporting.summary import SUMMARY_FILE

    run = run_artifacts.latest_run(connection, configs.PIPELINE_NAME)
    report_dir = os.path.join(output_dir, REPORT_DIR)
    shutil.rmtree(report_dir, ignore_errors=True)
    shutil.copytree(run.artifacts.report, report_dir)
    with open(os.path.join(report_dir, SUMMARY_FILE)) as f:
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

"""Regenerates <output-dir>/report/ from a finished local run, without rerunning anything.

    python -m pipeline.report --output-dir outputs

The run itself writes its report as the ReportGen step's artifact; local_runner.py
copies that to outputs/report/. This command renders it anew from the latest
run's artifacts in ML Metadata (after a change to the report's code, say).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

from pipeline import configs

REPORT_DIR = "report"


def render_latest_run(connection_config, output_dir: str, **extra) -> dict:
    """The latest run's summary, with `extra` and each step's state, and its report rendered
    into <output_dir>/report/ (the summary's "report" is index.html's path)."""
    from reporting import html_report, run_artifacts, summary

    run = run_artifacts.latest_run(connection_config, configs.PIPELINE_NAME)
    found = {
        "pipeline": configs.PIPELINE_NAME,
        **summary.summarize(run.artifacts),
        "run_id": run.run_id,
        **extra,
        "components": run.components,
    }
    report_dir = os.path.join(output_dir, REPORT_DIR)
    staging = f"{report_dir}.{os.getpid()}.new"
    index = html_report.write_report(run.artifacts, found, staging)
    swap_in(staging, report_dir)
    found["report"] = os.path.join(report_dir, os.path.basename(index))
    return found


def swap_in(staging: str, target: str) -> None:
    """Puts the finished directory `staging` at `target` in two renames, so `target` is
    never half old and half new (a reader sees the old one, then the new)."""
    retired = f"{target}.{os.getpid()}.old"
    if os.path.exists(target):
        os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def regenerate(output_dir: str) -> str:
    """Renders the latest run's report into <output_dir>/report/; returns index.html's path."""
    from tfx import v1 as tfx

    from reporting.summary import SUMMARY_FILE

    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(output_dir, "metadata.sqlite")
    )
    found = render_latest_run(connection, output_dir)
    with open(os.path.join(output_dir, REPORT_DIR, SUMMARY_FILE), "w") as f:
        json.dump(found, f, indent=2)
    return found["report"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=configs.OUTPUT_DIR)
    args = parser.parse_args(argv)
    output_dir = os.path.abspath(args.output_dir)
    if not os.path.exists(os.path.join(output_dir, "metadata.sqlite")):
        raise SystemExit(f"{output_dir}: no metadata.sqlite; run the pipeline first")
    print(regenerate(output_dir))


if __name__ == "__main__":
    main()

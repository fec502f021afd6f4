"""The report's inputs: one RunArtifacts field per REPORT_INPUTS entry, found by name."""

import dataclasses

from reporting import run_artifacts


def test_run_artifacts_has_one_field_per_report_input_and_the_run_facts():
    fields = [f.name for f in dataclasses.fields(run_artifacts.RunArtifacts)]
    assert fields == [*run_artifacts.REPORT_INPUTS, "blessed", "pushed_destination", "report"]

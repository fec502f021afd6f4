"""The pipeline's own artifact types, importable as `bookcover.<Type>`.

Kubeflow V2 recovers a custom artifact type in the container by importing its
TYPE_NAME as a class path, and its compiler accepts only `<module>.<Class>`
names: so these classes live in this top-level module, under the names that
ML Metadata already knows them by.
"""

from tfx.types import artifact


class CategoryAnalysis(artifact.Artifact):
    """Category counts, the selection made from them, and ingestion counts."""

    TYPE_NAME = "bookcover.CategoryAnalysis"


class DataVerdict(artifact.Artifact):
    """What data validation found in a run's data, and whether the run was let through."""

    TYPE_NAME = "bookcover.DataVerdict"


class RunReport(artifact.Artifact):
    """The run's report: index.html with its pictures, and run_summary.json."""

    TYPE_NAME = "bookcover.RunReport"


__all__ = ["CategoryAnalysis", "DataVerdict", "RunReport"]

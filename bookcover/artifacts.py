"""The pipeline's own artifact types (imported as `bookcover.<Type>`, see __init__.py)."""

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


class CataloguePredictions(artifact.Artifact):
    """A catalogue's predictions: predictions.csv (one row per row taken) and summary.json."""

    TYPE_NAME = "bookcover.CataloguePredictions"


def flag(artifact: artifact.Artifact, name: str) -> bool:
    """A 0/1 custom property (`blessed`, `pushed`) as a bool. On Kubeflow, custom
    properties come back through JSON: 1.0 rather than 1, which get_int_custom_property
    does not read."""
    return int(artifact.get_custom_property(name) or 0) == 1

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

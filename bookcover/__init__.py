"""The bottom layer: shared constants, the cover downloader, artifact types, progress, console.

Kubeflow V2 recovers a custom artifact type in the container by importing its
TYPE_NAME as a class path, and its compiler accepts only `<module>.<Class>`
names: so the types answer as `bookcover.CategoryAnalysis` and so on, under
the names ML Metadata already knows them by. They load on first use, because
importing them imports TensorFlow, and `bookcover.console` must be able to set
TensorFlow's environment before that happens.
"""

ARTIFACT_TYPES = ("CategoryAnalysis", "CataloguePredictions", "DataVerdict", "RunReport")


def __getattr__(name: str):
    if name in ARTIFACT_TYPES:
        from bookcover import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'bookcover' has no attribute {name!r}")


__all__ = list(ARTIFACT_TYPES)

"""Matplotlib without a display, and PNGs written through fileio (any filesystem)."""

from __future__ import annotations

import io


def pyplot():
    """matplotlib.pyplot on the Agg backend: pipeline steps have no display."""
    import matplotlib

    matplotlib.use("Agg")
    # Category names are the user's text: "$" must not start math ("Art $ Design"
    # would fail the report step after the model was pushed).
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str) -> None:
    """Saves and closes `fig`; `path` may be a gs:// or s3:// URI, as on Kubeflow."""
    from tfx.dsl.io import fileio

    png = io.BytesIO()
    fig.savefig(png, format="png")
    pyplot().close(fig)
    with fileio.open(path, "wb") as f:
        f.write(png.getvalue())

"""The served model's worst cases and the memory each costs the process serving them.

Each accepted format at its largest, each way a file can make a decoder allocate
more than its header declares, and the largest requests. `python -m
tests.serving_memory EXPORT_DIR` serves them in a process of its own (TF2's loader)
and prints one JSON line per case; tests/test_model_server.py sends the same cases
to a model server and reads its memory from /proc.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from PIL import Image

from bookcover import constants
from tests import images

# The most an accepted request may take above the loaded model (README, "What bad
# input gets").
LIMIT_MB = 1024
LARGEST = (5000, 8000)  # 40,000,000 pixels, the most one image may hold


def worst_cases() -> list[tuple[str, Callable[[], list[bytes]], str | None]]:
    """(name, the request's images, the refusal expected or None where it is served)."""
    small = images.jpeg(size=(100, 150))

    def largest(mode, color, fmt="JPEG", **kwargs):
        return lambda: [images.encode(Image.new(mode, LARGEST, color), fmt, **kwargs)]

    return [
        ("largest JPEG", largest("RGB", (10, 20, 30)), None),
        ("largest progressive JPEG", largest("RGB", (10, 20, 30), progressive=True), None),
        ("largest RGBA PNG", largest("RGBA", (1, 2, 3, 100), "PNG"), None),
        ("largest 16-bit PNG", largest("I;16", 3, "PNG"), None),
        ("largest GIF", largest("P", 1, "GIF"), None),
        (
            "largest BMP (10 MB)",
            lambda: [images.encode(Image.new("RGB", (1800, 1900), (1, 2, 3)), "BMP")],
            None,
        ),
        (
            "GIF frame outside its canvas",
            lambda: [images.gif_frame_outside_canvas()],
            "GIF with a frame outside its canvas",
        ),
        (
            "GIF of 100 frames of 4 million pixels",
            lambda: [images.gif_of_frames(100)],
            f"image over {constants.MAX_IMAGE_PIXELS} pixels",
        ),
        (
            "GIF of empty blocks",
            lambda: [images.gif_of_empty_extensions(constants.MAX_GIF_BLOCKS + 1)],
            f"over {constants.MAX_GIF_BLOCKS} blocks",
        ),
        (
            "BMP declaring pixels it lacks",
            lambda: [images.bmp_declaring()],
            "Input size should match",
        ),
        ("largest request", lambda: [small] * constants.MAX_REQUEST_IMAGES, None),
        (
            "request of one image too many",
            lambda: [small] * (constants.MAX_REQUEST_IMAGES + 1),
            f"request of more than {constants.MAX_REQUEST_IMAGES} images",
        ),
        (
            "request of too many pixels",
            lambda: largest("RGB", (10, 20, 30))() * 6,
            f"request of more than {constants.MAX_REQUEST_PIXELS} pixels",
        ),
    ]


def peak_mb(pid: int | str = "self") -> float:
    """The process's peak resident memory (VmHWM) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def serve_cases(classify: Callable[[list[bytes]], int], peak: Callable[[], float]) -> list[dict]:
    """Each case through `classify` (answers the number of results, raises ValueError
    with the refusal), and the peak memory it leaves, above the peak before the first."""
    from models import serving_client

    classify([images.jpeg()])  # the first request builds what every later one uses
    baseline = peak()
    outcomes = []
    for name, request, refusal in worst_cases():
        batch = request()
        try:
            outcome = {"served": classify(batch)}
        except ValueError as e:
            outcome = {"refused": serving_client.error_line(str(e))}
        del batch
        outcomes.append(
            {"case": name, "expected": refusal, **outcome, "grown_mb": peak() - baseline}
        )
    return outcomes


def main(export_dir: str) -> None:
    import tensorflow as tf

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]

    def classify(batch: list[bytes]) -> int:
        try:
            return int(serve(images=tf.constant(batch))["category"].shape[0])
        except tf.errors.InvalidArgumentError as e:
            raise ValueError(e.message) from None

    for outcome in serve_cases(classify, peak_mb):
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])

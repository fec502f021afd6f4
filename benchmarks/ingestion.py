"""Ingestion benchmark: covers/s through CoverExampleGen beside the seed's thread-pool loader.

Both fetch every cover of ../shared/bookcovers (all 33 categories) over real
HTTP from its loopback server, resize to 100x150 and store JPEGs: the seed's
way into files, ours into split, deduplicated TFRecords.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import io
import json
import os
import statistics
import tempfile
import time

import requests
from PIL import Image

from benchmarks.common import BOOKCOVERS, command_line, start_bookcovers_server, write_result
from bookcover import constants
from components import books_csv

COMMAND = "python -m benchmarks.ingestion"
CONNECTIONS = constants.CONNECTIONS_PER_WORKER
SEED_THREADS = 32
ROUNDS = 3


def seed_loader(urls: list[str], out_dir: str, threads: int) -> int:
    """The seed's method: a ThreadPoolExecutor of requests.get + Pillow resize to JPEG files."""

    def load(item):
        index, url = item
        try:
            response = requests.get(url, timeout=15)
            response.raise_for_status()
            image = Image.open(io.BytesIO(response.content)).convert("RGB").resize((100, 150))
            image.save(os.path.join(out_dir, f"{index}.jpg"), "JPEG")
            return 1
        except (requests.RequestException, OSError):
            return 0

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(load, enumerate(urls)))


def ours(csv_path: str, out_dir: str) -> dict:
    """CoverExampleGen alone in a LocalDagRunner pipeline with the pipeline's Beam arguments
    (2 worker processes; the component runs its own stage in process, as in the pipeline)."""
    from tfx import v1 as tfx

    from bookcover.downloader import FetchConfig
    from components.cover_example_gen import CoverExampleGen
    from components.cover_example_gen.settings import IngestSettings
    from pipeline.pipeline import direct_runner_args

    settings = IngestSettings(
        top_k=None,
        min_books=1,
        per_class=None,
        balance=False,
        fetch=FetchConfig(connections=CONNECTIONS),
    )
    example_gen = CoverExampleGen(
        input_base=os.path.dirname(csv_path), settings=settings, csv_name=os.path.basename(csv_path)
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="ingestion_benchmark",
        pipeline_root=os.path.join(out_dir, "root"),
        components=[example_gen],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(out_dir, "metadata.sqlite")
        ),
        beam_pipeline_args=direct_runner_args(),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    (summary,) = glob.glob(
        os.path.join(
            out_dir, "root", "CoverExampleGen", "category_analysis", "*", "ingest_summary.json"
        )
    )
    with open(summary) as f:
        counts = json.load(f)
    return counts


def stored_covers(counts: dict) -> int:
    return sum(n for split in counts["examples"].values() for n in split.values())


def timed(fn, *args) -> tuple[object, float]:
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="alternating rounds of both methods; the result is each one's median rate",
    )
    args = parser.parse_args(argv)
    csv_path = os.path.abspath(os.path.join(BOOKCOVERS, "books_data.csv"))
    urls = [b.image_url for b in books_csv.read_books(csv_path).books]
    pid = start_bookcovers_server()
    runs = {"ours": [], "seed": []}
    try:
        import tfx  # noqa: F401 - imports are not ingestion time

        for round_index in range(args.rounds):
            # Alternate who goes first, so neither always meets a cold page cache.
            order = ("ours", "seed") if round_index % 2 == 0 else ("seed", "ours")
            for method in order:
                with tempfile.TemporaryDirectory(prefix="bookcover-ingest-") as tmp:
                    if method == "ours":
                        counts, seconds = timed(ours, csv_path, tmp)
                        # The rest of the run is fixed cost: launcher, Beam start,
                        # deduplication and split shuffles, TFRecord writing.
                        run = {
                            "stored": stored_covers(counts),
                            "download_stage_seconds": counts["download_stage_seconds"],
                            "download_stage_covers_per_s": counts["download_stage_covers_per_s"],
                        }
                    else:
                        stored, seconds = timed(seed_loader, urls, tmp, SEED_THREADS)
                        run = {"stored": stored}
                run["seconds"] = round(seconds, 1)
                runs[method].append(run)
                print(f"round {round_index + 1} {method}: {run}")
    finally:
        os.kill(pid, 15)
    ours_rate = statistics.median(r["stored"] / r["seconds"] for r in runs["ours"])
    seed_rate = statistics.median(r["stored"] / r["seconds"] for r in runs["seed"])
    stage_rate = statistics.median(r["download_stage_covers_per_s"] for r in runs["ours"])
    return write_result(
        "ingestion",
        ours=round(ours_rate, 1),
        baseline=round(seed_rate, 1),
        ratio=round(ours_rate / seed_rate, 3),
        unit="covers/s (median of the rounds)",
        command=command_line(COMMAND, argv),
        covers_in_csv=len(urls),
        ours_download_stage=round(stage_rate, 1),
        ours_download_stage_ratio=round(stage_rate / seed_rate, 3),
        rounds=runs,
        setup=f"CoverExampleGen on the DirectRunner in process ({CONNECTIONS} connections, "
        f"streamed), the rest of its Beam pipeline as the pipeline runs it; seed: "
        f"ThreadPoolExecutor({SEED_THREADS}) of requests.get + Pillow; both against "
        "../shared/bookcovers/serve (python http.server) on this machine",
    )


if __name__ == "__main__":
    main()

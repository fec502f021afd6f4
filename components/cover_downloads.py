"""The download stage of ingestion and of the catalogue: covers fetched concurrently in a
Beam DoFn, each book out with its cover or, tagged `failures`, with the reason."""

from __future__ import annotations

import concurrent.futures
import time

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from bookcover import cover_image, downloader
from bookcover.fetch_config import FetchConfig
from bookcover.progress import Progress


class DownloadCoversFn(beam.DoFn):
    """Downloads covers concurrently with one pooled session per worker.

    Each book goes to a thread pool as it arrives and finished covers are
    emitted as soon as they are done (at most IN_FLIGHT_PER_CONNECTION x
    connections at once), so the connections stay busy across the whole
    bundle instead of waiting for the slowest cover of each batch.
    """

    IN_FLIGHT_PER_CONNECTION = 4

    def __init__(
        self,
        fetch: FetchConfig,
        cache_dir: str = "",
        total: int | None = None,
        step: str = "CoverExampleGen",
        as_fetched: bool = False,
    ):
        self._fetch, self._cache_dir, self._total = fetch, cache_dir, total
        self._step = step  # the metrics' namespace and the progress lines' name
        # Images as fetched (header-checked), not stored covers, for a reader that
        # decodes and resizes them itself; with a cache, stored covers all the same.
        self._as_fetched = as_fetched and not cache_dir

    def setup(self):
        fetch = self._fetch
        self._session = downloader.make_session(fetch.connections)
        self._cache = downloader.CoverCache(
            self._cache_dir or None, fetch.cover_format, (fetch.width, fetch.height)
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(fetch.connections)
        self._max_in_flight = max(1, fetch.connections) * self.IN_FLIGHT_PER_CONNECTION
        self._progress = Progress(f"{self._step}: covers", self._total, unit="cover")

    def teardown(self):
        self._progress.close()
        self._pool.shutdown(wait=False)
        self._session.close()

    def start_bundle(self):
        self._pending: set[concurrent.futures.Future] = set()
        self._bundle_started = time.time()
        self._bundle_books = 0

    def _download(
        self, book: dict
    ) -> tuple[dict, bytes | None, bool, downloader.CoverError | None]:
        try:
            if self._as_fetched:
                image = downloader.download_image(book["image_url"], self._session, self._fetch)
                return book, image, False, None
            cover, cached = downloader.download_cover(
                book["image_url"], self._session, self._fetch, self._cache
            )
            return book, cover, cached, None
        except downloader.CoverError as e:
            return book, None, False, e
        except Exception as e:  # noqa: BLE001 - one bad cover must never kill the run
            return book, None, False, downloader.CoverError("unexpected_error", repr(e))

    def process(self, book: dict, total: int | None = None):
        """`total`, when given (a side input: the catalogue counts its rows as it reads
        them), replaces the constructor's as the progress's total."""
        if total is not None:
            self._progress.set_total(total)
        self._bundle_books += 1
        self._pending.add(self._pool.submit(self._download, book))
        if len(self._pending) >= self._max_in_flight:
            done, self._pending = concurrent.futures.wait(
                self._pending, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                yield from self._outputs(*future.result())

    def finish_bundle(self):
        window = beam.transforms.window.GlobalWindow()
        timestamp = beam.transforms.window.MIN_TIMESTAMP
        for future in concurrent.futures.as_completed(self._pending):
            for output in self._outputs(*future.result()):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(
                        output.tag, WindowedValue(output.value, timestamp, [window])
                    )
                else:
                    yield WindowedValue(output, timestamp, [window])
        self._pending = set()
        dropped, self._cache.dropped = self._cache.dropped, 0
        if dropped:  # unreadable entries (a power cut's), downloaded again
            beam.metrics.Metrics.counter(self._step, "cache_entries_dropped").inc(dropped)
        if self._bundle_books:
            # Wall-clock span of the download stage over all bundles and workers:
            # the earliest start and the latest end (analysis.ingest_counts).
            for name, at in (
                ("stage_start_ms", self._bundle_started),
                ("stage_end_ms", time.time()),
            ):
                beam.metrics.Metrics.distribution(self._step, f"download/{name}").update(
                    int(at * 1000)
                )

    def _outputs(self, book: dict, cover: bytes | None, cached: bool, error):
        if error is not None:
            beam.metrics.Metrics.counter(self._step, f"failed/{error.reason}").inc()
            self._progress.update(failed=1)
            yield beam.pvalue.TaggedOutput(
                "failures", {**book, "reason": error.reason, "detail": error.detail}
            )
            return
        counter = "cached" if cached else "downloaded"
        beam.metrics.Metrics.counter(self._step, counter).inc()
        self._progress.update(cached=int(cached))
        yield {**book, "cover": cover, "content_hash": cover_image.content_hash(cover)}

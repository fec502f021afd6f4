"""Beam RunInference over the pushed model: a ModelHandler that loads the SavedModel once
per worker process and calls its serving_default signature (serving_cover_and_title for a
model that reads titles) a batch of covers at a time."""

from __future__ import annotations

import concurrent.futures
import io
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from tfx.dsl.io import fileio

from bookcover import constants
from bookcover.model_versions import versions

SIGNATURE = "serving_default"
MODEL_FILE = "saved_model.pb"
# Models being loaded ahead in this process (load_ahead), by directory, until taken.
_AHEAD: dict[str, concurrent.futures.Future] = {}
_AHEAD_LOCK = threading.Lock()


def load_ahead(model_dir: str) -> None:
    """Starts loading the model on a thread of this process and calls it once, so that
    the load and TensorFlow's first-call set-up of the signature (a few seconds each on
    2 cores) overlap the CSV read instead of following it; the CoverModelHandler of
    this process then takes the model from there. A failure here is not reported:
    the handler loads the model again, and fails as it would have."""
    with _AHEAD_LOCK:
        if model_dir not in _AHEAD:
            thread = threading.Thread(target=_load_into, args=(model_dir,), daemon=True)
            _AHEAD[model_dir] = concurrent.futures.Future()
            thread.start()


def _load_into(model_dir: str) -> None:
    future = _AHEAD[model_dir]
    try:
        model = _load(model_dir)
        _warm_up(model)
        future.set_result(model)
    except Exception as e:  # noqa: BLE001 (the handler's own load reports it)
        logging.info("loading %s ahead failed (%s); it is loaded when needed", model_dir, e)
        future.set_exception(e)


def _load(model_dir: str) -> Any:
    import tensorflow as tf

    # The loaded object, not its signature: the signature alone lets the variables go.
    return tf.saved_model.load(model_dir)


def _warm_up(model: Any) -> None:
    """One call on a blank cover (and an empty title): TensorFlow instantiates and
    optimises the signature's graph on its first call."""
    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT)).save(blank, "JPEG")
    _classifier(model)([(blank.getvalue(), "")])


def _loaded(model_dir: str) -> Any:
    """The model loaded ahead, if it was and that worked; else loaded now."""
    with _AHEAD_LOCK:
        future = _AHEAD.pop(model_dir, None)
    if future is not None and future.exception() is None:
        return future.result()
    return _load(model_dir)


def resolve_model(path: str) -> tuple[str, str]:
    """(model directory, version) for a pushed version (serving_model/1795646947) or the
    folder of versions the Pusher writes to (serving_model/: its newest, as TF Serving
    picks it). A folder with neither is a ValueError naming what it looked for."""
    path = path.rstrip("/")
    if fileio.exists(os.path.join(path, MODEL_FILE)):
        return path, os.path.basename(path)
    published = versions(path)
    if not published:
        raise ValueError(
            f"{path}: no {MODEL_FILE} and no pushed version in it (all-digit folders, "
            "as the Pusher writes them to serving_model/)"
        )
    return os.path.join(path, str(published[-1])), str(published[-1])


class CoverModelHandler(ModelHandler[tuple[bytes, str], PredictionResult, Any]):
    """(cover, title) pairs (the downloader's image bytes and the CSV's title) -> the
    cover's PredictionResult: {"categories", "scores"}, the top categories and their
    scores, best first; {"error": message} for a cover the model refuses (the others of
    its batch are classified one by one instead). The titles go to a model that reads
    them (inputs=cover_title); a model of covers alone is not given them."""

    def __init__(self, model_dir: str, version: str, batch_size: int = 64):
        super().__init__()
        self._model_dir, self._version, self._batch_size = model_dir, version, batch_size

    def load_model(self) -> Any:
        return _loaded(self._model_dir)

    def run_inference(
        self,
        batch: Sequence[tuple[bytes, str]],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        serve = _classifier(model)
        try:
            answers = list(_answers(serve(batch)))
        except tf.errors.InvalidArgumentError:
            answers = [self._one(serve, book) for book in batch]
        return [
            PredictionResult(cover, answer, self._version)
            for (cover, _), answer in zip(batch, answers, strict=True)
        ]

    def _one(self, serve, book: tuple[bytes, str]) -> dict:
        import tensorflow as tf

        try:
            (answer,) = _answers(serve([book]))
            return answer
        except tf.errors.InvalidArgumentError as e:
            return {"error": e.message.splitlines()[0][:300]}

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return "ClassifyCatalogue"


def _classifier(model: Any):
    """(cover, title) pairs -> the model's outputs: through serving_cover_and_title when
    the model has it, else serving_default with the covers alone."""
    import tensorflow as tf

    if constants.COVER_AND_TITLE_SIGNATURE in model.signatures:
        both = model.signatures[constants.COVER_AND_TITLE_SIGNATURE]
        return lambda books: both(
            images=tf.constant([cover for cover, _ in books]),
            titles=tf.constant([title for _, title in books]),
        )
    covers = model.signatures[SIGNATURE]
    return lambda books: covers(images=tf.constant([cover for cover, _ in books]))


def _answers(output: dict) -> Iterator[dict]:
    for names, scores in zip(
        output["top_categories"].numpy(), output["top_scores"].numpy(), strict=True
    ):
        yield {
            "categories": [name.decode() for name in names],
            "scores": [round(float(score), 6) for score in scores],
        }

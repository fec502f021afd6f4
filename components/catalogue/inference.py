"""Beam RunInference over the pushed model: a ModelHandler that loads the SavedModel once
per worker process and calls its serving_default signature a batch of covers at a time."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from tfx.dsl.io import fileio

from bookcover.model_versions import versions

SIGNATURE = "serving_default"
MODEL_FILE = "saved_model.pb"


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


class CoverModelHandler(ModelHandler[bytes, PredictionResult, Any]):
    """Covers (the downloader's JPEG or PNG bytes) -> {"categories", "scores"}: the top
    categories and their scores, best first; {"error": message} for a cover the model
    refuses (the others of its batch are classified one by one instead)."""

    def __init__(self, model_dir: str, version: str, batch_size: int = 64):
        super().__init__()
        self._model_dir, self._version, self._batch_size = model_dir, version, batch_size

    def load_model(self) -> Any:
        import tensorflow as tf

        # The loaded object, not its signature: the signature alone lets the variables go.
        return tf.saved_model.load(self._model_dir)

    def run_inference(
        self,
        batch: Sequence[bytes],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        serve = model.signatures[SIGNATURE]
        try:
            answers = list(_answers(serve(images=tf.constant(list(batch)))))
        except tf.errors.InvalidArgumentError:
            answers = [self._one(serve, cover) for cover in batch]
        return [
            PredictionResult(cover, answer, self._version)
            for cover, answer in zip(batch, answers, strict=True)
        ]

    def _one(self, serve, cover: bytes) -> dict:
        import tensorflow as tf

        try:
            (answer,) = _answers(serve(images=tf.constant([cover])))
            return answer
        except tf.errors.InvalidArgumentError as e:
            return {"error": e.message.splitlines()[0][:300]}

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return "ClassifyCatalogue"


def _answers(output: dict) -> Iterator[dict]:
    for names, scores in zip(
        output["top_categories"].numpy(), output["top_scores"].numpy(), strict=True
    ):
        yield {
            "categories": [name.decode() for name in names],
            "scores": [round(float(score), 6) for score in scores],
        }

"""Classifies covers with an exported model: image files or URLs (python -m models.predict),
or the pipeline's own tf.Examples (the report's gallery)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

from bookcover import constants


def classify_examples(
    model_dir: str, example_files: list[str], batch_size: int = 64
) -> Iterator[dict]:
    """Every example in the gzipped TFRecord files, through the model's serving_tf_example
    signature, one batch in memory at a time: its cover, title, true category, top
    category and that category's score."""
    import tensorflow as tf

    classify = tf.saved_model.load(model_dir).signatures["serving_tf_example"]
    for batch in tf.data.TFRecordDataset(example_files, compression_type="GZIP").batch(batch_size):
        result = classify(examples=batch)
        for serialized, category, score in zip(
            batch.numpy(),
            result["category"].numpy(),
            result["top_scores"].numpy()[:, 0],
            strict=True,
        ):
            feature = tf.train.Example.FromString(serialized).features.feature
            yield {
                "image": feature[constants.IMAGE_KEY].bytes_list.value[0],
                "title": feature[constants.TITLE_KEY].bytes_list.value[0].decode(),
                "true": feature[constants.CATEGORY_KEY].bytes_list.value[0].decode(),
                "predicted": category.decode(),
                "score": float(score),
            }


def local_classifier(model_dir: str):
    """classify(bytes) -> (top names, top scores) through the model's serving_default."""
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]

    def classify(data: bytes) -> tuple[list[str], list[float]]:
        try:
            output = serve(images=tf.constant([data]))
        except tf.errors.InvalidArgumentError as e:
            raise ValueError(e.message) from None
        names = [n.decode() for n in output["top_categories"].numpy()[0]]
        return names, [float(s) for s in output["top_scores"].numpy()[0]]

    return classify


def served_classifier(model_url: str):
    """classify(bytes) through TF Serving's REST API at .../v1/models/<name>."""
    from models import serving_client

    base_url, _, model_name = model_url.rstrip("/").rpartition("/v1/models/")
    if not base_url or not model_name or "/" in model_name:
        raise SystemExit(f"{model_url}: a served model is http(s)://HOST:PORT/v1/models/NAME")

    def classify(data: bytes) -> tuple[list[str], list[float]]:
        (result,) = serving_client.predict_rest(base_url, model_name, [data])
        names, scores = zip(*result["top"], strict=True)
        return list(names), [float(s) for s in scores]

    return classify


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m models.predict",
        description="Print the category and top-3 scores of each cover, read with the same "
        "downloader as ingestion (http(s) URLs, file:// URIs or paths).",
    )
    parser.add_argument(
        "model",
        help="a pushed model version (outputs/serving_model/1795646947), or a model that "
        "TF Serving serves (http://localhost:8501/v1/models/bookcover)",
    )
    parser.add_argument("covers", nargs="+", help="image files or URLs")
    args = parser.parse_args(argv)

    from bookcover import downloader, fetching
    from models import serving_client

    served = args.model.startswith(("http://", "https://"))
    classify = served_classifier(args.model) if served else local_classifier(args.model)
    config = downloader.FetchConfig()
    results = []
    with downloader.make_session(4) as session:
        for source in args.covers:
            try:
                names, scores = classify(fetching.fetch_url(source, session, config))
            except downloader.CoverError as e:
                print(f"{source}: cannot read ({e})", file=sys.stderr)
                continue
            except serving_client.ServingError as e:
                print(
                    f"{source}: not classified ({serving_client.failure_line(e)})", file=sys.stderr
                )
                continue
            except ValueError as e:
                reason = serving_client.error_line(str(e))
                print(f"{source}: not a usable image ({reason})", file=sys.stderr)
                continue
            results.append(
                {
                    "source": source,
                    "category": names[0],
                    "top": list(zip(names, scores, strict=True)),
                }
            )
            top = ", ".join(f"{n} {s:.3f}" for n, s in zip(names, scores, strict=True))
            print(f"{source}: {names[0]}  (top 3: {top})")
    return results


if __name__ == "__main__":
    main()

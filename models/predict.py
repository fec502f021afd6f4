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


class NoTitlesError(ValueError):
    """Titles were given for a model that reads covers alone."""


def local_classifier(model_dir: str, with_titles: bool = False):
    """classify(bytes, title) -> (top names, top scores) through the model's serving_default,
    or `with_titles` through its serving_cover_and_title (NoTitlesError if it has none)."""
    import tensorflow as tf

    signatures = tf.saved_model.load(model_dir).signatures
    if with_titles and constants.COVER_AND_TITLE_SIGNATURE not in signatures:
        raise NoTitlesError(
            f"{model_dir} classifies covers alone (no {constants.COVER_AND_TITLE_SIGNATURE} "
            "signature): titles need a model trained with --model-option inputs=cover_title"
        )
    serve = signatures[constants.COVER_AND_TITLE_SIGNATURE if with_titles else "serving_default"]

    def classify(data: bytes, title: str | None = None) -> tuple[list[str], list[float]]:
        feeds = {"images": tf.constant([data])}
        if with_titles:
            feeds["titles"] = tf.constant([title or ""])
        try:
            output = serve(**feeds)
        except tf.errors.InvalidArgumentError as e:
            raise ValueError(e.message) from None
        names = [n.decode() for n in output["top_categories"].numpy()[0]]
        return names, [float(s) for s in output["top_scores"].numpy()[0]]

    return classify


def served_classifier(model_url: str, with_titles: bool = False):
    """classify(bytes, title) through TF Serving's REST API at .../v1/models/<name>; with
    titles through the served model's serving_cover_and_title."""
    from models import serving_client

    base_url, _, model_name = model_url.rstrip("/").rpartition("/v1/models/")
    if not base_url or not model_name or "/" in model_name:
        raise SystemExit(f"{model_url}: a served model is http(s)://HOST:PORT/v1/models/NAME")

    def classify(data: bytes, title: str | None = None) -> tuple[list[str], list[float]]:
        titles = [title or ""] if with_titles else None
        (result,) = serving_client.predict_rest(base_url, model_name, [data], titles=titles)
        names, scores = zip(*result["top"], strict=True)
        return list(names), [float(s) for s in scores]

    return classify


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
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
    parser.add_argument(
        "--title",
        action="append",
        dest="titles",
        metavar="TEXT",
        help='the title of each cover, in the covers\' order (repeat it; "" for none): '
        "for a model trained with --model-option inputs=cover_title",
    )
    args = parser.parse_args(argv)
    if args.titles is not None and len(args.titles) != len(args.covers):
        parser.error(f"{len(args.covers)} covers and {len(args.titles)} --title: give one each")
    return parser, args


def classify_sources(classify, sources: list[str], titles: list[str | None]) -> list[dict]:
    """Each cover read and classified, its answer printed; a cover that cannot be read or
    classified is one line on stderr, and the rest go on."""
    from bookcover import downloader, fetching
    from models import serving_client

    config = downloader.FetchConfig()
    results = []
    with downloader.make_session(4) as session:
        for source, title in zip(sources, titles, strict=True):
            try:
                names, scores = classify(fetching.fetch_url(source, session, config), title)
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


def main(argv: list[str] | None = None) -> list[dict]:
    parser, args = parse_args(argv)
    served = args.model.startswith(("http://", "https://"))
    with_titles = args.titles is not None
    try:
        classify = (served_classifier if served else local_classifier)(args.model, with_titles)
    except NoTitlesError as e:
        parser.error(str(e))
    return classify_sources(classify, args.covers, args.titles or [None] * len(args.covers))


if __name__ == "__main__":
    main()

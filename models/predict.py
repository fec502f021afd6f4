"""Classifies cover images (files or URLs) with an exported model: python -m models.predict."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m models.predict",
        description="Print the category and top-3 scores of each cover, read with the same "
        "downloader as ingestion (http(s) URLs, file:// URIs or paths).",
    )
    parser.add_argument(
        "model_dir", help="a pushed model version, e.g. outputs/serving_model/1795646947"
    )
    parser.add_argument("covers", nargs="+", help="image files or URLs")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from components import covers
    from models import serving_client

    serve = tf.saved_model.load(args.model_dir).signatures["serving_default"]
    config = covers.FetchConfig()
    results = []
    with covers.make_session(4) as session:
        for source in args.covers:
            try:
                data = covers.fetch_url(source, session, config)
                output = serve(images=tf.constant([data]))
            except covers.CoverError as e:
                print(f"{source}: cannot read ({e})", file=sys.stderr)
                continue
            except tf.errors.InvalidArgumentError as e:
                reason = serving_client.error_line(e.message)
                print(f"{source}: not a usable image ({reason})", file=sys.stderr)
                continue
            names = [n.decode() for n in output["top_categories"].numpy()[0]]
            scores = [float(s) for s in output["top_scores"].numpy()[0]]
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

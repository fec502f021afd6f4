"""Compiles the bookcover pipeline for Kubeflow Pipelines (KFP v2 IR) with KubeflowV2DagRunner."""

from __future__ import annotations

import argparse
import os
import shlex

from pipeline import configs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output", required=True, help="pipeline definition file to write (.json)")
    p.add_argument("--image", required=True, help="the pipeline's container image")
    p.add_argument("--pipeline-root", required=True, help="gs://, s3:// or a mounted path")
    p.add_argument("--books-csv", required=True, help="books_data.csv as the cluster sees it")
    p.add_argument("--categories", type=int, default=configs.NUM_CATEGORIES)
    p.add_argument("--per-class", type=int, default=configs.PER_CLASS)
    p.add_argument("--epochs", type=int, default=configs.TRAIN_EPOCHS)
    p.add_argument("--tuner-epochs", type=int, default=configs.TUNER_EPOCHS)
    p.add_argument(
        "--beam-args",
        default="--runner=DirectRunner",
        help="Beam pipeline args, e.g. '--runner=DataflowRunner --project=P "
        "--region=R --temp_location=gs://B/tmp'",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    from tfx import v1 as tfx

    from components.cover_example_gen.settings import IngestSettings
    from pipeline import pipeline

    root = args.pipeline_root.rstrip("/")
    bookcover = pipeline.create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=root,
        data_dir=os.path.dirname(args.books_csv),
        csv_name=os.path.basename(args.books_csv),
        ingest_settings=IngestSettings(
            top_k=args.categories, per_class=args.per_class, cache_dir=f"{root}/cache/covers"
        ),
        serving_model_dir=f"{root}/serving_model",
        tuner_epochs=args.tuner_epochs,
        train_epochs=args.epochs,
        trainer_backup_dir=f"{root}/trainer_backup",
        beam_pipeline_args=shlex.split(args.beam_args),
    )
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=os.path.dirname(os.path.abspath(args.output)),
        output_filename=os.path.basename(args.output),
    )
    runner.run(bookcover)
    return args.output


if __name__ == "__main__":
    print(main())

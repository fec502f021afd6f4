"""Compiles the bookcover pipeline for Kubeflow Pipelines (KFP v2 IR) with KubeflowV2DagRunner.

Everything cluster-specific comes from a JSON config (see config.example.json):
the image, the pipeline root, where books_data.csv is, Beam's pipeline args
(DataflowRunner, a Flink PortableRunner, ...), and CPU, memory and GPU per step.
"""

from __future__ import annotations

import argparse
import json
import os

from bookcover import constants
from models import hyperparameters
from pipeline import configs

DEFAULT_RESOURCES = "default"
# The reviewed schema as kubeflow/Dockerfile copies it into the image.
IMAGE_SCHEMA_FILE = "/pipeline/schema/schema.pbtxt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="cluster config JSON (config.example.json)")
    p.add_argument("--output", required=True, help="pipeline definition file to write (.json)")
    return p.parse_args(argv)


def resource_spec(values: dict):
    """A KFP container ResourceSpec: cpu, memory_gib, and optionally gpu_type/gpu_count."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec_type = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    spec = spec_type(
        cpu_limit=float(values.get("cpu", 0)), memory_limit=float(values.get("memory_gib", 0))
    )
    if values.get("gpu_count"):
        spec.accelerator.type = values["gpu_type"]
        spec.accelerator.count = int(values["gpu_count"])
    return spec


def build(config: dict):
    """The same create_pipeline(...) as local_runner.py, with the cluster's settings."""
    from tfx import v1 as tfx

    from components.cover_example_gen.settings import IngestSettings
    from pipeline import pipeline, presets

    root = config["pipeline_root"].rstrip("/")
    books_csv = config["books_csv"]
    training = presets.resolve(
        config.get("model_preset", "default"),
        learning_rates=config.get("learning_rates"),
        first_filters=config.get("first_filters"),
        batch_size=config.get("batch_size"),
        epochs=config.get("epochs"),
        model_options=config.get("model_options"),
    )
    bookcover = pipeline.create_pipeline(
        pipeline_name=config.get("pipeline_name", configs.PIPELINE_NAME),
        pipeline_root=root,
        data_dir=os.path.dirname(books_csv),
        csv_name=os.path.basename(books_csv),
        ingest_settings=IngestSettings(
            top_k=config.get("categories", constants.NUM_CATEGORIES),
            per_class=config.get("per_class", constants.PER_CLASS),
            balance=config.get("balance", constants.BALANCE_CLASSES),
            cache_dir=f"{root}/cache/covers",
        ),
        serving_model_dir=config.get("serving_model_dir", f"{root}/serving_model"),
        learning_rates=training.learning_rates,
        first_filters=training.first_filters,
        train_epochs=training.train_epochs,
        tuner_epochs=config.get("tuner_epochs", hyperparameters.TUNER_EPOCHS),
        batch_size=training.batch_size,
        model_options=training.model_options,
        mixed_precision=config.get("mixed_precision", hyperparameters.MIXED_PRECISION),
        accuracy_floor=config.get("accuracy_floor"),
        schema_file=config.get("schema_file", IMAGE_SCHEMA_FILE),
        allow_anomalies=config.get("allow_anomalies", False),
        trainer_backup_dir=f"{root}/trainer_backup",
        beam_pipeline_args=list(config.get("beam_pipeline_args", [])),
        baseline_strategy=tfx.dsl.experimental.LatestBlessedModelStrategy,
    )
    resources = config.get("resources", {})
    for component in bookcover.components:
        values = resources.get(component.id, resources.get(DEFAULT_RESOURCES))
        if values and hasattr(component, "with_platform_config"):
            component.with_platform_config(resource_spec(values))
    return bookcover


def compile_pipeline(config: dict, output: str) -> str:
    from tfx import v1 as tfx

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config["image"]
        ),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output),
    )
    runner.run(build(config))
    return output


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with open(args.config) as f:
        config = json.load(f)
    return compile_pipeline(config, args.output)


if __name__ == "__main__":
    print(main())

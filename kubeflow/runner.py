"""Compiles the bookcover pipeline for Kubeflow Pipelines (KFP v2 IR) with KubeflowV2DagRunner.

Everything cluster-specific comes from a JSON config (see config.example.json):
the image, the pipeline root, where books_data.csv is, Beam's pipeline args
(DataflowRunner, a Flink PortableRunner, ...), and CPU, memory and GPU per step.

Two outputs, one per client:
- `--output pipeline.yaml`: the KFP package, a PipelineSpec YAML with the pipeline
  root as its default, which open-source KFP 2's `kfp.Client().
  create_run_from_pipeline_package(...)` submits (it takes no other name);
- `--vertex-job job.json`: a Vertex AI PipelineJob (display name, labels, the spec,
  the runtime config), for Vertex AI Pipelines' own client; KFP's cannot parse it.
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


# The names kfp.Client().create_run_from_pipeline_package reads as a bare PipelineSpec.
KFP_PACKAGE_SUFFIXES = (".yaml", ".yml")
VERTEX_JOB_SUFFIX = ".json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="cluster config JSON (config.example.json)")
    output = p.add_mutually_exclusive_group(required=True)
    output.add_argument(
        "--output", help="the KFP package to write, for open-source KFP 2 (.yaml or .yml)"
    )
    output.add_argument("--vertex-job", help="a Vertex AI PipelineJob to write instead (.json)")
    args = p.parse_args(argv)
    if args.output and not args.output.endswith(KFP_PACKAGE_SUFFIXES):
        p.error(
            f"--output {args.output}: a KFP package ends in .yaml or .yml, the names KFP's "
            "client takes (a Vertex AI PipelineJob is --vertex-job FILE.json)"
        )
    if args.vertex_job and not args.vertex_job.endswith(VERTEX_JOB_SUFFIX):
        p.error(f"--vertex-job {args.vertex_job}: a Vertex AI PipelineJob is a .json file")
    return args


# Numeric config keys and their accepted ranges (the local runner's flags have the same).
RANGES = {
    "categories": (int, 2, None),
    "per_class": (int, 1, None),
    "epochs": (int, 1, None),
    "tuner_epochs": (int, 1, None),
    "batch_size": (int, 1, 65536),
    "accuracy_floor": (float, 0, None),
}


def check_ranges(config: dict) -> None:
    """A ValueError naming the key and its range for a numeric setting out of it."""
    for key, (kind, low, high) in RANGES.items():
        value = config.get(key)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int:
            number = number and float(value).is_integer()
        if not number or value < low or (high is not None and value > high) or value != value:
            upper = "" if high is None else f" and at most {high}"
            wanted = "an integer" if kind is int else "a number"
            raise ValueError(
                f"config key {key!r}: {value!r}: expected {wanted} at least {low}{upper}"
            )


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

    from bookcover import url_policy
    from bookcover.downloader import FetchConfig
    from components.cover_example_gen.settings import IngestSettings
    from pipeline import pipeline, presets

    check_ranges(config)
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
            # A cluster worker can reach the cluster's own services: cover URLs may
            # not, and local files are off, unless the config says otherwise.
            fetch=FetchConfig(
                allow_private_addresses=config.get("allow_private_addresses", False),
                allowed_networks=url_policy.parse_networks(config.get("allowed_networks", [])),
                allowed_hosts=url_policy.parse_hosts(config.get("allowed_hosts", [])),
                allow_local_files=config.get("allow_local_files", False),
                covers_root=config.get("covers_root", ""),
            ),
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
        latest_push_strategy=tfx.dsl.experimental.LatestArtifactStrategy,
    )
    resources = config.get("resources", {})
    for component in bookcover.components:
        values = resources.get(component.id, resources.get(DEFAULT_RESOURCES))
        if values and hasattr(component, "with_platform_config"):
            component.with_platform_config(resource_spec(values))
    return bookcover


def compile_job(config: dict) -> dict:
    """The compiled pipeline as a Vertex AI PipelineJob dict (pipelineSpec, runtimeConfig)."""
    from tfx import v1 as tfx

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config["image"]
        ),
    )
    return runner.run(build(config), write_out=False)


def kfp_package(job: dict) -> dict:
    """The PipelineSpec that KFP's client submits: the job's spec, with the job's
    pipeline root as its default (TFX's own YAML writer drops the runtime config and
    with it the root)."""
    if job["runtimeConfig"].get("parameterValues") or job["runtimeConfig"].get("parameters"):
        raise ValueError("runtime parameters have no place in a KFP package's spec")
    return {
        **job["pipelineSpec"],
        "defaultPipelineRoot": job["runtimeConfig"]["gcsOutputDirectory"],
    }


def write_kfp_package(job: dict, output: str) -> str:
    import yaml

    with open(output, "w") as f:
        f.write("# The bookcover pipeline for Kubeflow Pipelines 2 (python -m kubeflow.runner).\n")
        yaml.safe_dump(kfp_package(job), f, sort_keys=True)
    return output


def write_vertex_job(job: dict, output: str) -> str:
    with open(output, "w") as f:
        json.dump(job, f, sort_keys=True)
    return output


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with open(args.config) as f:
        config = json.load(f)
    try:
        job = compile_job(config)
    except ValueError as e:  # a setting out of range or malformed: one line, no traceback
        raise SystemExit(f"kubeflow.runner: {args.config}: {e}") from None
    if args.vertex_job:
        return write_vertex_job(job, args.vertex_job)
    return write_kfp_package(job, args.output)


if __name__ == "__main__":
    print(main())

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


# Every key a cluster config may hold, by what it sets (config.example.json has them
# all); any other key stops the compile, so a misspelt one cannot become a default.
CLUSTER_KEYS = (
    "image",
    "pipeline_root",
    "books_csv",
    "pipeline_name",
    "serving_model_dir",
    "schema_file",
    "beam_pipeline_args",
    "resources",
    "accuracy_floor",
    "allow_anomalies",
    "classify_uncategorised",
)
# The local runner's ingestion flags, by the same names (allow_private_addresses is
# --refuse-private-addresses turned round: a cluster refuses them by default).
INGEST_KEYS = (
    "categories",
    "min_books",
    "per_class",
    "balance",
    "max_failure_share",
    "connections",
    "download_deadline",
    "cover_format",
    "allow_private_addresses",
    "allowed_networks",
    "allowed_hosts",
    "allow_local_files",
    "covers_root",
)
TRAINING_KEYS = (
    "model_preset",
    "model_options",
    "learning_rates",
    "first_filters",
    "batch_size",
    "epochs",
    "tuner_epochs",
    "pretrain_epochs",
    "ensemble_members",
    "mixed_precision",
    "parallel_trials",
)
REQUIRED_KEYS = ("pipeline_root", "books_csv")

# Numeric config keys and their accepted ranges (the local runner's flags have the same).
RANGES = {
    "categories": (int, 2, None),
    "min_books": (int, 1, None),
    "per_class": (int, 1, None),
    "max_failure_share": (float, 0, 1),
    "connections": (int, 1, 1024),
    "download_deadline": (float, 0, 86400),
    "epochs": (int, 1, None),
    "tuner_epochs": (int, 1, None),
    "pretrain_epochs": (int, 0, None),
    "ensemble_members": (int, 1, None),
    "batch_size": (int, 1, 65536),
    "parallel_trials": (int, 1, 1024),
    "accuracy_floor": (float, 0, None),
}


def check_keys(config: dict) -> None:
    """A ValueError naming any unknown key (with the known ones) or missing required key."""
    known = (*CLUSTER_KEYS, *INGEST_KEYS, *TRAINING_KEYS)
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise ValueError(f"missing config key(s) {', '.join(map(repr, missing))}")


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


def ingest_settings(config: dict, root: str):
    """CoverExampleGen's settings from the config: every ingestion setting is settable."""
    from bookcover import url_policy
    from bookcover.downloader import FetchConfig
    from bookcover.settings import given
    from components.cover_example_gen.settings import IngestSettings

    fetch = {
        "connections": config.get("connections"),
        "deadline_s": config.get("download_deadline"),
        "cover_format": config.get("cover_format"),
        # A cluster worker can reach the cluster's own services: cover URLs may
        # not, and local files are off, unless the config says otherwise.
        "allow_private_addresses": config.get("allow_private_addresses", False),
        "allowed_networks": url_policy.parse_networks(config.get("allowed_networks", [])),
        "allowed_hosts": url_policy.parse_hosts(config.get("allowed_hosts", [])),
        "allow_local_files": config.get("allow_local_files", False),
        "covers_root": config.get("covers_root"),
    }
    selection = {
        "top_k": config.get("categories"),
        "min_books": config.get("min_books"),
        "per_class": config.get("per_class"),
        "balance": config.get("balance"),
        "max_failure_share": config.get("max_failure_share"),
    }
    chosen = given(**selection)
    if config.get("min_books"):  # instead of the K largest, as --min-books is
        chosen["top_k"] = None
    return IngestSettings(
        **chosen, cache_dir=f"{root}/cache/covers", fetch=FetchConfig(**given(**fetch))
    )


def training_settings(config: dict, root: str):
    """The Tuner's and the Trainer's settings: the preset with the config's overrides."""
    from pipeline import presets

    return presets.resolve(
        config.get("model_preset", "default"),
        learning_rates=config.get("learning_rates"),
        first_filters=config.get("first_filters"),
        batch_size=config.get("batch_size"),
        epochs=config.get("epochs"),
        model_options=config.get("model_options"),
        tuner_epochs=config.get("tuner_epochs"),
        pretrain_epochs=config.get("pretrain_epochs"),
        ensemble_members=config.get("ensemble_members"),
        mixed_precision=config.get("mixed_precision"),
        parallel_trials=config.get("parallel_trials"),
        backup_dir=f"{root}/trainer_backup",
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

    from components import books_csv
    from components.catalogue.classify import CatalogueSettings
    from pipeline import pipeline

    check_keys(config)
    check_ranges(config)
    root = config["pipeline_root"].rstrip("/")
    books = config["books_csv"]
    num_classes = None
    if config.get("min_books"):  # read from the CSV itself, as the local runner does
        num_classes = books_csv.count_selected_categories(books, min_books=config["min_books"])
    ingest = ingest_settings(config, root)
    catalogue = None
    if config.get("classify_uncategorised"):  # as local_runner.py --classify-uncategorised
        catalogue = CatalogueSettings(cache_dir=ingest.cache_dir, fetch=ingest.fetch)
    bookcover_pipeline = pipeline.create_pipeline(
        pipeline_name=config.get("pipeline_name", configs.PIPELINE_NAME),
        pipeline_root=root,
        data_dir=os.path.dirname(books),
        csv_name=os.path.basename(books),
        ingest=ingest,
        training=training_settings(config, root),
        serving_model_dir=config.get("serving_model_dir", f"{root}/serving_model"),
        accuracy_floor=config.get("accuracy_floor"),
        num_classes=num_classes,
        schema_file=config.get("schema_file", IMAGE_SCHEMA_FILE),
        allow_anomalies=config.get("allow_anomalies", False),
        beam_pipeline_args=list(config.get("beam_pipeline_args", [])),
        baseline_strategy=tfx.dsl.experimental.LatestBlessedModelStrategy,
        latest_push_strategy=tfx.dsl.experimental.LatestArtifactStrategy,
        catalogue=catalogue,
    )
    resources = config.get("resources", {})
    for component in bookcover_pipeline.components:
        values = resources.get(component.id, resources.get(DEFAULT_RESOURCES))
        if values and hasattr(component, "with_platform_config"):
            component.with_platform_config(resource_spec(values))
    return bookcover_pipeline


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

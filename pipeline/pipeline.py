"""create_pipeline(): the one bookcover TFX pipeline every runner builds."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from bookcover import constants
from components import previous_blessed_model_strategy
from components.catalogue.classify import CatalogueSettings
from components.catalogue.component import ClassifyCatalogue
from components.cover_example_gen import CoverExampleGen
from components.cover_example_gen.settings import IngestSettings
from components.cover_pusher import CoverPusher
from components.data_gate import DataGate
from components.grid_tuner import CoverTuner
from components.latest_push_strategy import LatestOrNoneStrategy
from models.settings import TrainingSettings
from pipeline import configs
from reporting import run_artifacts
from reporting.component import ReportGen


def eval_config(accuracy_floor: float) -> tfma.EvalConfig:
    """Test-split metrics; blessing needs the floor and no regression on the last blessed."""
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_floor}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_tf_example",
                label_key=constants.LABEL_KEY,
                prediction_key="probabilities",
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(
                        class_name="CategoricalAccuracy", threshold=accuracy_threshold
                    ),
                    tfma.MetricConfig(
                        class_name="TopKCategoricalAccuracy",
                        config='{"k": 3, "name": "top_3_accuracy"}',
                    ),
                    tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
                ]
            )
        ],
    )


def custom_validations() -> str:
    """The reviewed TFDV SQL checks (schema/validations.pbtxt), compiled into the pipeline."""
    with open(configs.VALIDATIONS_FILE) as f:
        return f.read()


def direct_runner_args(num_workers: int = configs.DIRECT_NUM_WORKERS) -> list[str]:
    """Beam arguments for running the pipeline on this machine with the DirectRunner:
    in this process with one worker, else in `num_workers` worker processes (0: one
    per core).

    Unless the arguments name the workers' dependencies, TFX packages a copy of
    its own installation for them (a tfx_ephemeral sdist, built anew for every
    Beam component, left in /tmp: benchmarks/README.md) so that remote workers can
    import it. The DirectRunner's workers run in this very environment and
    stage nothing, so naming the project's lock file as their requirements is
    true and spares that build.
    """
    if num_workers == 1:
        mode = list(constants.DIRECT_IN_PROCESS_ARGS)
    else:
        mode = ["--direct_running_mode=multi_processing", f"--direct_num_workers={num_workers}"]
    return [*mode, f"--requirements_file={configs.REQUIREMENTS_FILE}"]


def data_steps(
    data_dir: str,
    csv_name: str,
    ingest: IngestSettings,
    serving_model_dir: str,
    schema_file: str,
    allow_anomalies: bool,
    latest_push_strategy: type,
    titles_read: bool = False,
) -> dict:
    """Ingestion and data validation, by step id: nothing after them runs on data the gate stops."""
    example_gen = CoverExampleGen(input_base=data_dir, settings=ingest, csv_name=csv_name)
    # The reviewed schema, not one inferred from this run's own data (schema/README.md).
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        # Image format and size statistics, which the schema's image domain checks.
        stats_options=tfdv.StatsOptions(enable_semantic_domain_stats=True),
        # The pretraining covers are other categories' by design: the gate's checks of
        # the selected data (categories, skew against train) are not theirs.
        exclude_splits=[constants.PRETRAIN_SPLIT],
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    # The gate compares this data with the pushed model's (drift), so a new push must
    # run it again: the latest push, found in ML Metadata, is one of its inputs and so
    # part of its cache key. An unattached channel: the Pusher comes after the gate.
    pushed_model_resolver = tfx.dsl.Resolver(
        strategy_class=latest_push_strategy,
        pushed_model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.PushedModel),
    ).with_id("latest_pushed_model_resolver")
    data_gate = DataGate(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        pushed_model=pushed_model_resolver.outputs["pushed_model"],
        serving_model_dir=serving_model_dir,
        allow_anomalies=allow_anomalies,
        # Here rather than in ExampleValidator: KFP's compiler cannot pass its proto config.
        custom_validations=custom_validations(),
        titles_read=titles_read,
    )
    steps = [example_gen, statistics_gen, schema_gen, example_validator]
    return {step.id: step for step in [*steps, pushed_model_resolver, data_gate]}


def model_code_fingerprint(root: str = configs.PROJECT_ROOT) -> str:
    """A digest of the code behind Transform, the Tuner and the Trainer (the .py files
    of configs.MODEL_CODE_PACKAGES). TFX's cache keys a step on its inputs and
    properties, not on the code a dotted preprocessing_fn or run_fn names: this digest
    in their custom_config makes a change to that code rerun them, as a module_file's
    would."""
    digest = hashlib.sha256()
    for package in configs.MODEL_CODE_PACKAGES:
        for path in sorted(glob.glob(os.path.join(root, package, "**", "*.py"), recursive=True)):
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def training_steps(data: dict, training: TrainingSettings, num_classes: int) -> dict:
    """Transform, the grid search and training, by step id, after the data gate."""
    examples = data["CoverExampleGen"].outputs["examples"]
    code = model_code_fingerprint()
    training = dataclasses.replace(training, model_code=code)
    transform = tfx.components.Transform(
        examples=examples,
        schema=data["ImportSchemaGen"].outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        custom_config={"num_classes": num_classes, "model_code": code},
        splits_config=tfx.proto.SplitsConfig(analyze=["train"]),
        # The Trainer applies the graph on the fly (see models/inputs.py).
        materialize=False,
        disable_statistics=True,
    )
    # Validate, then transform: nothing trains on data the gate stopped.
    transform.add_upstream_node(data["DataGate"])
    # The Tuner and the Trainer read the same data and one TrainingSettings, each
    # without the keys only the other reads (models/settings.py).
    training_inputs = {
        "examples": examples,
        "transform_graph": transform.outputs["transform_graph"],
        "train_args": tfx.proto.TrainArgs(splits=["train"]),
        "eval_args": tfx.proto.EvalArgs(splits=["eval"]),
    }
    # How many trials run at once is the executor's to decide (0: one per GPU).
    tune_args = None
    if training.parallel_trials:
        tune_args = tfx.proto.TuneArgs(num_parallel_trials=training.parallel_trials)
    tuner = CoverTuner(
        tuner_fn=configs.TUNER_FN,
        **training_inputs,
        custom_config=training.for_tuner(),
        tune_args=tune_args,
    ).with_id("Tuner")
    steps = [transform, tuner]
    base_model = {}
    if training.pretrain_epochs:
        # The network the Tuner chose, first trained on every category's covers.
        pretrainer = tfx.components.Trainer(
            run_fn=configs.PRETRAIN_FN,
            hyperparameters=tuner.outputs["best_hyperparameters"],
            **{
                **training_inputs,
                "train_args": tfx.proto.TrainArgs(splits=["train", constants.PRETRAIN_SPLIT]),
            },
            custom_config=training.for_pretrainer(),
        ).with_id("PretrainTrainer")
        steps.append(pretrainer)
        base_model = {"base_model": pretrainer.outputs["model"]}
    trainer = tfx.components.Trainer(
        run_fn=configs.RUN_FN,
        hyperparameters=tuner.outputs["best_hyperparameters"],
        **training_inputs,
        **base_model,
        custom_config=training.for_trainer(),
    )
    return {step.id: step for step in (*steps, trainer)}


def release_steps(
    data: dict,
    trainer,
    serving_model_dir: str,
    accuracy_floor: float,
    baseline_strategy: type,
) -> dict:
    """Evaluation against the last blessed model, and the push of a blessed one, by step id."""
    # KFP's compiler knows only TFX's own strategies, which take no candidate.
    candidate = {}
    if issubclass(baseline_strategy, previous_blessed_model_strategy.PreviousBlessedModelStrategy):
        candidate = {previous_blessed_model_strategy.CANDIDATE_KEY: trainer.outputs["model"]}
    model_resolver = tfx.dsl.Resolver(
        strategy_class=baseline_strategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        **candidate,
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=data["CoverExampleGen"].outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(accuracy_floor),
        example_splits=["test"],
    )
    # On the DirectRunner the Evaluator runs in this process: worker processes would each
    # spend their start-up importing TensorFlow and loading the model, for a test split
    # that one process evaluates in seconds (benchmarks/README.md: e2e).
    evaluator.with_beam_pipeline_args(list(constants.DIRECT_IN_PROCESS_ARGS))
    pusher = CoverPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        statistics=data["StatisticsGen"].outputs["statistics"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)
        ),
    ).with_id("Pusher")
    return {step.id: step for step in (model_resolver, evaluator, pusher)}


def catalogue_step(
    steps: dict, data_dir: str, csv_name: str, catalogue: CatalogueSettings
) -> ClassifyCatalogue:
    """The CSV's rows without a category, classified by the model just pushed."""
    step = ClassifyCatalogue(
        pushed_model=steps["Pusher"].outputs["pushed_model"],
        books_csv=os.path.join(data_dir, csv_name),
        settings=catalogue,
    )
    # As the Evaluator: one process loads the model once and shows the live progress.
    return step.with_beam_pipeline_args(list(constants.DIRECT_IN_PROCESS_ARGS))


def report_step(steps: dict) -> ReportGen:
    """The run's report, each input from the step that makes it (run_artifacts.REPORT_INPUTS)."""
    return ReportGen(
        **{
            field: steps[source.node].outputs[source.key]
            for field, source in run_artifacts.REPORT_INPUTS.items()
            if source.node in steps
        }
    )


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_dir: str,
    csv_name: str,
    ingest: IngestSettings,
    training: TrainingSettings,
    serving_model_dir: str,
    accuracy_floor: float | None = None,
    num_classes: int | None = None,
    baseline_strategy: type = previous_blessed_model_strategy.PreviousBlessedModelStrategy,
    latest_push_strategy: type = LatestOrNoneStrategy,
    schema_file: str = configs.SCHEMA_FILE,
    allow_anomalies: bool = False,
    metadata_connection_config: metadata_store_pb2.ConnectionConfig | None = None,
    beam_pipeline_args: list[str] | None = None,
    catalogue: CatalogueSettings | None = None,
) -> tfx.dsl.Pipeline:
    """Ingestion, data validation, Transform, Tuner, Trainer, Evaluator, Pusher, the report;
    with `catalogue`, the CSV's rows without a category classified after the push.

    `ingest` and `training` are the typed settings the runners build (from flags
    locally, from the cluster config on Kubeflow); `num_classes` is needed when
    categories are selected by size (books_csv.count_selected_categories).
    """
    num_classes = num_classes or ingest.top_k
    if not num_classes:
        raise ValueError(
            "the number of categories must be known when the pipeline is built: select by "
            "top_k, or pass num_classes (books_csv.count_selected_categories)"
        )
    if accuracy_floor is None:
        accuracy_floor = configs.ACCURACY_OVER_CHANCE / num_classes
    # The pretraining split is written when a step trains on it, or when asked for.
    ingest = dataclasses.replace(ingest, pretrain=ingest.pretrain or training.pretrain_epochs > 0)
    steps = data_steps(
        data_dir,
        csv_name,
        ingest,
        serving_model_dir,
        schema_file,
        allow_anomalies,
        latest_push_strategy,
        titles_read=training.model_options["inputs"] == "cover_title",
    )
    steps.update(training_steps(steps, training, num_classes))
    steps.update(
        release_steps(steps, steps["Trainer"], serving_model_dir, accuracy_floor, baseline_strategy)
    )
    if catalogue is not None:
        steps["ClassifyCatalogue"] = catalogue_step(steps, data_dir, csv_name, catalogue)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[*steps.values(), report_step(steps)],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )

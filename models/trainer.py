"""Tuner and Trainer entry points: grid search, distributed fault-tolerant training, export."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings

import keras
import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.dsl.io import fileio

from bookcover import constants, progress
from models import export, history, inputs, model, resume
from models.settings import TrainingSettings
from models.tuning import RecordingGridSearch, grid_size, trial_seed

# Beside the model run's history: the exported epoch's weights and which epoch it was.
BEST_WEIGHTS = "best.weights.h5"
BEST_EPOCH_FILE = "best_epoch.json"
# The PretrainTrainer's model: the network's weights, and its categories and values.
PRETRAINED_WEIGHTS = "pretrained.weights.h5"
PRETRAINED_FILE = "pretrained.json"


def num_classes_of(tf_transform_output: tft.TFTransformOutput) -> int:
    """Classes in the category vocabulary; must match the one-hot width of the labels."""
    vocabulary = tf_transform_output.vocabulary_size_by_name(constants.CATEGORY_VOCABULARY)
    label_width = tf_transform_output.transformed_feature_spec()[constants.LABEL_KEY].shape[-1]
    if vocabulary != label_width:
        raise ValueError(
            f"the data has {vocabulary} categories but Transform's one-hot labels have "
            f"{label_width} columns (custom_config num_classes); they must agree"
        )
    return vocabulary


def title_ids_of(tf_transform_output: tft.TFTransformOutput, hp) -> int:
    """The title ids the model embeds; 0 for a model of the cover alone (and for a
    Transform graph made before titles were tokenised, which only such a model can use)."""
    return inputs.title_ids(tf_transform_output) if model.reads_titles(hp) else 0


def training_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over the GPUs, or over the logical CPUs TensorFlow was given;
    on a single device the default strategy, which needs no distributed input."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def datasets(
    fn_args,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    hp: keras_tuner.HyperParameters,
    counts: list[int] | None,
    strategy: tf.distribute.Strategy | None = None,
    deterministic: bool = False,
    classes: list[str] | None = None,
):
    """Training and validation data for `strategy`'s replicas, `batch_size` each;
    `deterministic`: the same examples in the same order on every run; `classes`:
    labelled by these categories (pretraining) instead of Transform's labels.

    Class weights travel in the training data as sample weights (blended with
    the labels under mixup). `counts` (examples per class) is needed only when
    classes are weighed.
    """
    key = model.input_key(hp)
    class_weight = inputs.inverse_frequency_weights(counts) if hp.get("class_weights") else None

    def read(files: list[str], shuffle: bool, replicas: int, replica: int) -> tf.data.Dataset:
        return inputs.input_fn(
            files,
            tf_transform_output,
            batch_size,
            shuffle=shuffle,
            image_key=key,
            replicas=replicas,
            replica=replica,
            deterministic=deterministic,
            with_titles=model.reads_titles(hp),
            classes=classes,
            shuffle_buffer=inputs.shuffle_buffer_for(counts and sum(counts)),
        )

    def train(replicas: int, replica: int) -> tf.data.Dataset:
        data = read(fn_args.train_files, True, replicas, replica)
        if hp.get("mixup"):
            return inputs.mix_batches(data, hp.get("mixup"), class_weight)
        return inputs.weigh_classes(data, class_weight) if class_weight else data

    def evaluation(replicas: int, replica: int) -> tf.data.Dataset:
        return read(fn_args.eval_files, False, replicas, replica)

    strategy = strategy or tf.distribute.get_strategy()
    return inputs.distribute(strategy, train), inputs.distribute(strategy, evaluation)


class EpochSeconds(keras.callbacks.Callback):
    """Puts each epoch's wall time, validation included, in the logs as `epoch_seconds`,
    so history.json and TensorBoard show where training waited."""

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._started


class EpochLines(keras.callbacks.Callback):
    """One progress line per epoch through the `bookcover` logger: accuracy and ETA
    (an upper bound when early stopping may end training sooner)."""

    def __init__(self, epochs: int, prefix: str):
        super().__init__()
        self.epochs, self.prefix = epochs, prefix
        self.seconds: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.seconds.append(logs.get("epoch_seconds", 0.0))
        left = (self.epochs - epoch - 1) * sum(self.seconds) / len(self.seconds)
        figures = ", ".join(
            f"{name} {logs[name]:.3f}"
            for name in ("accuracy", "val_accuracy", "val_cover_accuracy")
            if name in logs
        )
        progress.LOGGER.info(
            "%s: epoch %d/%d: %s, %.1f s, ETA %s",
            self.prefix,
            epoch + 1,
            self.epochs,
            figures,
            self.seconds[-1],
            progress.eta_text(left),
        )


def early_stopping(
    hp: keras_tuner.HyperParameters, patience: int
) -> list[keras.callbacks.Callback]:
    """Early stopping on the selection metric, except under the cosine schedule: there the
    length of training is part of the schedule, and stopping cuts off its low-rate
    tail, where most of the gain comes (benchmarks/README.md)."""
    if hp.get("lr_schedule") == "cosine":
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=model.selection_metric(hp), mode="max", patience=patience
        )
    ]


def search_space(settings: TrainingSettings) -> keras_tuner.HyperParameters:
    """The grid and the fixed model options, the same for the Tuner and the Trainer."""
    return model.default_hyperparameters(
        settings.learning_rates, settings.first_filters, settings.model_options
    )


# TFX Tuner calls this.
def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """A grid search over learning rate x first-layer filters, early-stopped on val loss."""
    settings = TrainingSettings.from_dict(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    num_classes = num_classes_of(tf_transform_output)
    hp = search_space(settings)
    counts = None
    if hp.get("class_weights"):
        counts = inputs.class_counts(fn_args.train_files, tf_transform_output)
    title_ids = title_ids_of(tf_transform_output, hp)
    tuner = RecordingGridSearch(
        trial_data=lambda: datasets(
            fn_args, tf_transform_output, settings.batch_size, hp, counts, deterministic=True
        ),
        hypermodel=lambda trial_hp: model.build_model(
            trial_hp, num_classes, title_vocabulary_size=title_ids
        ),
        objective=keras_tuner.Objective("val_accuracy", direction="max"),
        hyperparameters=hp,
        max_trials=grid_size(hp),
        directory=fn_args.working_dir,
        project_name="cover_grid_search",
        seed=constants.SAMPLE_SEED,
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.tuner_patience)
    fit_kwargs = {  # the data: made afresh for each trial (RecordingGridSearch.run_trial)
        "epochs": settings.tuner_epochs,
        "callbacks": [stop],
        "verbose": 0,  # tuning.RecordingGridSearch logs one line per trial
    }
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs=fit_kwargs)


def use_mixed_precision(setting: str) -> bool:
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return setting == "mixed_float16"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets Keras' global dtype policy for the block only."""
    previous = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def backup_dir_for(
    base: str, fn_args, hparams: dict, settings: TrainingSettings, member: int = 0
) -> str:
    """A stable directory per training job, so a killed run (and only it) resumes. An
    ensemble's first member is the job a single network's run is: a run killed with one
    member resumes as the first of more."""
    not_identity = ("backup_dir", "ensemble_members")
    identity = json.dumps(
        {
            "train": sorted(fn_args.train_files),
            "eval": sorted(fn_args.eval_files),
            "transform": fn_args.transform_graph_path,
            "base_model": getattr(fn_args, "base_model", None),
            "hparams": hparams,
            "settings": {k: v for k, v in settings.for_trainer().items() if k not in not_identity},
            **({"member": member} if member else {}),
        },
        sort_keys=True,
        default=str,
    )
    return os.path.join(base, hashlib.sha1(identity.encode()).hexdigest()[:16])


def hyperparameters_from(
    fn_args, settings: TrainingSettings | None = None
) -> keras_tuner.HyperParameters:
    """The Tuner's best values; without a Tuner, the first value of each choice."""
    if fn_args.hyperparameters:
        return keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
    return search_space(settings or TrainingSettings.from_dict(fn_args.custom_config))


def training_callbacks(
    hp: keras_tuner.HyperParameters,
    settings: TrainingSettings,
    best: resume.TrainingRecord,
    job_dir: str,
    run_dir: str,
    epochs: int,
    step: str = "Trainer",
) -> list[keras.callbacks.Callback]:
    """Timing, progress, the resumable record and backup, stopping, TensorBoard, schedule;
    in this order, which matters (see each comment)."""
    return [
        EpochSeconds(),  # first, so every later callback sees the time in the logs
        EpochLines(epochs, step),
        best.history_callback,  # before the backup, best_callback after: resume.py
        resume.AtomicBackupAndRestore(os.path.join(job_dir, resume.STATE_DIR)),
        best.best_callback,
        *early_stopping(hp, settings.train_patience),
        keras.callbacks.TensorBoard(log_dir=os.path.join(run_dir, "tensorboard")),
        *model.schedule_callbacks(hp),
    ]


def keep_best_epoch(cnn: keras.Model, best: resume.TrainingRecord, run_dir: str) -> None:
    """The best epoch's weights into the model, and beside the run: its weights file and
    which epoch it was."""
    if best.best_weights:
        cnn.load_weights(best.best_weights)
        fileio.copy(best.best_weights, os.path.join(run_dir, BEST_WEIGHTS), overwrite=True)
        resume.write_json(os.path.join(run_dir, BEST_EPOCH_FILE), best.best)


@dataclasses.dataclass
class Job:
    """One training run of the network: what it learns and for how long."""

    hp: keras_tuner.HyperParameters
    num_classes: int
    counts: list[int]  # training examples per class
    epochs: int
    step: str = "Trainer"  # its name in progress lines
    classes: list[str] | None = None  # pretraining: the categories it labels by
    title_ids: int = 0
    member: int = 0  # which network of an ensemble: its seed's offset

    def run_dir(self, fn_args) -> str:
        """Where its history, best epoch and TensorBoard logs go: the model run's
        directory, or a member's directory in it for an ensemble's later members."""
        return history.member_dir(fn_args.model_run_dir, self.member)


def train(
    fn_args, settings: TrainingSettings, tf_transform_output, job: Job
) -> tuple[keras.Model, str]:
    """The network trained on fn_args' data with the job's settings (from the base model's
    layers, when fn_args has one), its best epoch kept, its history beside the run; and
    the job's backup, to be removed once the model is saved (a kill before that
    restores the finished training instead of starting again)."""
    hp = job.hp
    strategy = training_strategy()
    replicas = strategy.num_replicas_in_sync
    batch_size = settings.batch_size
    policy = "mixed_float16" if use_mixed_precision(settings.mixed_precision) else "float32"
    logging.info(
        "%s: training on %d replica(s), global batch %d, policy %s; examples per class %s, "
        "class weights %s, mixup %s",
        job.step,
        replicas,
        batch_size * replicas,
        policy,
        job.counts,
        hp.get("class_weights"),
        hp.get("mixup"),
    )
    # A run's model depends on its data and settings alone: the same initial weights,
    # augmentation draws and order of examples every time (the Tuner's trial of these
    # values started from the same seed).
    keras.utils.set_random_seed(trial_seed(hp.values, job.member))
    train_data, evaluation = datasets(
        fn_args, tf_transform_output, batch_size, hp, job.counts, strategy, True, job.classes
    )
    steps_per_epoch = max(1, -(-sum(job.counts) // (batch_size * replicas)))
    run_dir = job.run_dir(fn_args)
    # Every path here may be a gs:// or s3:// URI on a cluster: fileio, never os.
    fileio.makedirs(run_dir)
    backup_base = settings.backup_dir or os.path.join(fn_args.model_run_dir, "backup")
    # This job's backup: Keras' resume state, the best epoch's weights and every epoch's
    # history, so a rerun after a kill exports the best of all epochs (models/resume.py).
    job_dir = backup_dir_for(backup_base, fn_args, hp.values, settings, job.member)
    monitor = "val_accuracy" if job.classes else model.selection_metric(hp)
    best = resume.TrainingRecord(job_dir, monitor=monitor)
    callbacks = training_callbacks(hp, settings, best, job_dir, run_dir, job.epochs, job.step)
    with dtype_policy(policy):
        with strategy.scope():
            cnn = model.build_model(hp, job.num_classes, steps_per_epoch, job.epochs, job.title_ids)
            if getattr(fn_args, "base_model", None):
                start_from_pretrained(cnn, fn_args.base_model)
        cnn.fit(
            train_data,
            validation_data=evaluation,
            epochs=job.epochs,
            callbacks=callbacks,
            verbose=0,  # EpochLines says what Keras would, one line per epoch
        )
        keep_best_epoch(cnn, best, run_dir)
    history.save_history(best.epochs_history(), run_dir)
    return cnn, job_dir


# TFX Trainer calls this.
def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the CNN with the best hyperparameters and exports the serving model; with a
    base model (the PretrainTrainer's), from its layers; with settings.ensemble_members
    above 1, that many networks from different seeds, exported as one model."""
    settings = TrainingSettings.from_dict(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    hp = hyperparameters_from(fn_args, settings)
    job = Job(
        hp,
        num_classes_of(tf_transform_output),
        inputs.class_counts(fn_args.train_files, tf_transform_output),
        settings.train_epochs,
        title_ids=title_ids_of(tf_transform_output, hp),
    )
    members, job_dirs = [], []
    for member in range(settings.ensemble_members):
        step = job.step
        if settings.ensemble_members > 1:
            step = f"{job.step} (member {member + 1} of {settings.ensemble_members})"
        member_job = dataclasses.replace(job, member=member, step=step)
        cnn, job_dir = train(fn_args, settings, tf_transform_output, member_job)
        members.append(cnn)
        job_dirs.append(job_dir)
    export.export_model(members, tf_transform_output, fn_args.serving_model_dir)
    for job_dir in job_dirs:  # done: a rerun of these jobs trains afresh
        fileio.rmtree(job_dir)


def cover_only(hp: keras_tuner.HyperParameters) -> keras_tuner.HyperParameters:
    """The same values for the network of the cover alone (what pretraining trains)."""
    cover = keras_tuner.HyperParameters.from_config(hp.get_config())
    cover.values["inputs"] = "cover"
    return cover


# TFX Trainer calls this (the PretrainTrainer step).
def pretrain_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the cover network on every category of its splits (train and pretrain),
    validated on eval, for settings.pretrain_epochs; saves its weights and categories
    (PRETRAINED_FILE, PRETRAINED_WEIGHTS) as the Trainer's base model."""
    settings = TrainingSettings.from_dict(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    hp = cover_only(hyperparameters_from(fn_args, settings))
    found = inputs.category_counts(fn_args.train_files, tf_transform_output)
    classes = sorted(found, key=lambda name: (-found[name], name))
    counts = [found[name] for name in classes]
    job = Job(hp, len(classes), counts, settings.pretrain_epochs, "PretrainTrainer", classes)
    cnn, job_dir = train(fn_args, settings, tf_transform_output, job)
    save_pretrained(cnn, hp, classes, counts, fn_args.serving_model_dir)
    fileio.rmtree(job_dir)


def save_pretrained(
    cnn: keras.Model, hp, classes: list[str], counts: list[int], model_dir: str
) -> None:
    """The pretrained network as start_from_pretrained reads it: its weights, and its
    categories and hyperparameter values, in `model_dir` (any fileio path)."""
    fileio.makedirs(model_dir)
    with tempfile.TemporaryDirectory() as local:
        weights = os.path.join(local, PRETRAINED_WEIGHTS)
        cnn.save_weights(weights)
        fileio.copy(weights, os.path.join(model_dir, PRETRAINED_WEIGHTS), overwrite=True)
    resume.write_json(
        os.path.join(model_dir, PRETRAINED_FILE),
        {"classes": classes, "counts": counts, "hyperparameters": hp.get_config()},
    )


def start_from_pretrained(cnn: keras.Model, base_model: str) -> None:
    """Every layer of `cnn` that the pretrained network has (all but the logits), taken
    from the base model pretrain_fn saved."""
    with fileio.open(os.path.join(base_model, PRETRAINED_FILE)) as f:
        saved = json.load(f)
    hp = keras_tuner.HyperParameters.from_config(saved["hyperparameters"])
    pretrained = model.build_model(hp, len(saved["classes"]))
    with tempfile.TemporaryDirectory() as local:
        weights = os.path.join(local, PRETRAINED_WEIGHTS)
        fileio.copy(os.path.join(base_model, PRETRAINED_WEIGHTS), weights)
        with warnings.catch_warnings():  # the optimiser's state is not wanted, and not built
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            pretrained.load_weights(weights)
    taken = model.take_weights(cnn, pretrained)
    logging.info("started from the pretrained network's %d layers: %s", len(taken), taken)

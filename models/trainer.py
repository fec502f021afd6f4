"""Tuner and Trainer entry points: grid search, distributed fault-tolerant training, export."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time

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
):
    """Training and validation data for `strategy`'s replicas, `batch_size` each;
    `deterministic`: the same examples in the same order on every run.

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

    def __init__(self, epochs: int, prefix: str = "Trainer"):
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


def backup_dir_for(base: str, fn_args, hparams: dict, settings: TrainingSettings) -> str:
    """A stable directory per training job, so a killed run (and only it) resumes."""
    identity = json.dumps(
        {
            "train": sorted(fn_args.train_files),
            "eval": sorted(fn_args.eval_files),
            "transform": fn_args.transform_graph_path,
            "hparams": hparams,
            "settings": {k: v for k, v in settings.for_trainer().items() if k != "backup_dir"},
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
) -> list[keras.callbacks.Callback]:
    """Timing, progress, the resumable record and backup, stopping, TensorBoard, schedule;
    in this order, which matters (see each comment)."""
    return [
        EpochSeconds(),  # first, so every later callback sees the time in the logs
        EpochLines(settings.train_epochs),
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


# TFX Trainer calls this.
def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the CNN with the best hyperparameters and exports the serving model."""
    settings = TrainingSettings.from_dict(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    num_classes = num_classes_of(tf_transform_output)
    hp = hyperparameters_from(fn_args, settings)
    strategy = training_strategy()
    replicas = strategy.num_replicas_in_sync
    batch_size = settings.batch_size
    policy = "mixed_float16" if use_mixed_precision(settings.mixed_precision) else "float32"
    logging.info(
        "training on %d replica(s), global batch %d, policy %s",
        replicas,
        batch_size * replicas,
        policy,
    )

    counts = inputs.class_counts(fn_args.train_files, tf_transform_output)
    # A run's model depends on its data and settings alone: the same initial weights,
    # augmentation draws and order of examples every time (the Tuner's trial of these
    # values started from the same seed).
    keras.utils.set_random_seed(trial_seed(hp.values))
    train, evaluation = datasets(
        fn_args, tf_transform_output, batch_size, hp, counts, strategy, deterministic=True
    )
    steps_per_epoch = max(1, -(-sum(counts) // (batch_size * replicas)))
    epochs = settings.train_epochs
    logging.info(
        "training examples per class %s, class weights %s, mixup %s",
        counts,
        hp.get("class_weights"),
        hp.get("mixup"),
    )

    run_dir = fn_args.model_run_dir
    # Every path here may be a gs:// or s3:// URI on a cluster: fileio, never os.
    fileio.makedirs(run_dir)
    backup_base = settings.backup_dir or os.path.join(run_dir, "backup")
    # This job's backup: Keras' resume state, the best epoch's weights and every epoch's
    # history, so a rerun after a kill exports the best of all epochs (models/resume.py).
    job_dir = backup_dir_for(backup_base, fn_args, hp.values, settings)
    best = resume.TrainingRecord(job_dir, monitor=model.selection_metric(hp))
    callbacks = training_callbacks(hp, settings, best, job_dir, run_dir)
    with dtype_policy(policy):
        with strategy.scope():
            cnn = model.build_model(
                hp, num_classes, steps_per_epoch, epochs, title_ids_of(tf_transform_output, hp)
            )
        cnn.fit(
            train,
            validation_data=evaluation,
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,  # EpochLines says what Keras would, one line per epoch
        )
        keep_best_epoch(cnn, best, run_dir)
    history.save_history(best.epochs_history(), run_dir)
    export.export_model(cnn, tf_transform_output, fn_args.serving_model_dir)
    fileio.rmtree(job_dir)  # done: a rerun of this job trains afresh

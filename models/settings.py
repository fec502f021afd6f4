"""TrainingSettings: what the Tuner and Trainer are told, one typed object from runner to run_fn."""

from __future__ import annotations

import dataclasses
import json

from bookcover.settings import known_fields
from models import hyperparameters

_DEFAULT = hyperparameters.PRESETS["default"]
# Keys only one of the two steps reads. Each step is given the others' keys
# left out, so that changing the Trainer's epochs does not rerun the Tuner.
TUNER_ONLY = ("tuner_epochs", "tuner_patience")
TRAINER_ONLY = (
    "train_epochs",
    "train_patience",
    "backup_dir",
    "pretrain_epochs",
    "ensemble_members",
)
# Keys of the Trainer's the PretrainTrainer does not read: the fine-tuning's length and
# how many networks it trains.
FINE_TUNING_ONLY = ("train_epochs", "train_patience", "ensemble_members")
# Read by the Tuner's executor from TuneArgs, not by tuner_fn: in neither custom_config.
TUNE_ARGS_ONLY = ("parallel_trials",)


def check_model_option(name: str, value: object) -> object:
    """`value` as option `name` takes it (an int where a float is wanted becomes one);
    a ValueError naming the option for an unknown name or a value of the wrong type."""
    if name not in hyperparameters.MODEL_OPTION_NAMES:
        raise ValueError(
            f"unknown model option {name!r}; known: {', '.join(hyperparameters.MODEL_OPTION_NAMES)}"
        )
    example = hyperparameters.DEFAULT_MODEL_OPTIONS[name]
    choices = hyperparameters.OPTION_CHOICES.get(name)
    if choices and value not in choices:
        raise ValueError(f"model option {name} takes one of {', '.join(choices)}; got {value!r}")
    expected = type(example)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(
            f"model option {name} takes a {expected.__name__}, like {json.dumps(example)}; "
            f"got {json.dumps(value)}"
        )
    return value


def check_model_options(options: object) -> dict:
    """A mapping of option names to values, each checked by check_model_option; a
    ValueError for anything else (a list in a cluster config, say)."""
    if not isinstance(options, dict):
        raise ValueError(f"model_options takes an object of NAME: VALUE, got {options!r}")
    return {name: check_model_option(name, value) for name, value in options.items()}


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """The grid, the fixed model options, batch, epochs, patience, precision, backup.

    Built once by a runner (pipeline/presets.py resolves a preset and the
    flags or the cluster config into one), passed as the Tuner's and the
    Trainer's custom_config, read back by tuner_fn and run_fn with from_dict.
    Every default is here, from models/hyperparameters.py.
    """

    learning_rates: tuple[float, ...] = _DEFAULT.learning_rates
    first_filters: tuple[int, ...] = _DEFAULT.first_filters
    batch_size: int = _DEFAULT.batch_size
    # Options not given are the default preset's.
    model_options: dict = dataclasses.field(default_factory=dict)
    mixed_precision: str = hyperparameters.MIXED_PRECISION
    tuner_epochs: int = hyperparameters.TUNER_EPOCHS
    tuner_patience: int = hyperparameters.TUNER_PATIENCE
    train_epochs: int = hyperparameters.TRAIN_EPOCHS
    train_patience: int = hyperparameters.TRAIN_PATIENCE
    # Epochs of pretraining on every category's covers (models/trainer.py
    # pretrain_fn) before the Trainer's; 0: no pretraining.
    pretrain_epochs: int = hyperparameters.PRETRAIN_EPOCHS
    # Networks the Trainer trains from different seeds and exports as one model that
    # averages their probabilities; 1: a single network.
    ensemble_members: int = hyperparameters.ENSEMBLE_MEMBERS
    # Where a killed Trainer's state waits for its rerun; "" keeps it in the run dir.
    backup_dir: str = ""
    # Trials run at once (TuneArgs.num_parallel_trials); 0: one per GPU, or 1 without.
    parallel_trials: int = 0
    # Not a setting: the fingerprint of the model code the pipeline was built with
    # (pipeline.model_code_fingerprint), so that TFX's cache, which keys a step on its
    # custom_config and not on the code behind a dotted run_fn, reruns the Tuner and
    # the Trainer when that code changes.
    model_code: str = ""

    def __post_init__(self):
        options = {**_DEFAULT.model_options, **check_model_options(self.model_options or {})}
        set_field = object.__setattr__  # frozen: normalised once, here
        set_field(self, "model_options", options)
        set_field(self, "learning_rates", tuple(float(r) for r in self.learning_rates))
        set_field(self, "first_filters", tuple(int(f) for f in self.first_filters))
        if not self.learning_rates or not self.first_filters:
            raise ValueError("the grid needs at least one learning rate and one filter count")
        if not isinstance(self.pretrain_epochs, int) or self.pretrain_epochs < 0:
            raise ValueError(f"pretrain_epochs {self.pretrain_epochs!r}: expected an integer >= 0")
        if not isinstance(self.ensemble_members, int) or self.ensemble_members < 1:
            raise ValueError(
                f"ensemble_members {self.ensemble_members!r}: expected an integer >= 1"
            )
        if not isinstance(self.parallel_trials, int) or self.parallel_trials < 0:
            raise ValueError(f"parallel_trials {self.parallel_trials!r}: expected an integer >= 0")
        if self.mixed_precision not in hyperparameters.MIXED_PRECISION_CHOICES:
            raise ValueError(
                f"mixed_precision {self.mixed_precision!r}; "
                f"known: {', '.join(hyperparameters.MIXED_PRECISION_CHOICES)}"
            )

    def to_dict(self) -> dict:
        """JSON-ready (lists for tuples), as custom_config carries it."""
        data = dataclasses.asdict(self)
        data["learning_rates"] = list(self.learning_rates)
        data["first_filters"] = list(self.first_filters)
        return data

    def for_tuner(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in TRAINER_ONLY + TUNE_ARGS_ONLY}

    def for_trainer(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in TUNER_ONLY + TUNE_ARGS_ONLY}

    def for_pretrainer(self) -> dict:
        return {k: v for k, v in self.for_trainer().items() if k not in FINE_TUNING_ONLY}

    @classmethod
    def from_dict(cls, data: dict | None) -> TrainingSettings:
        """Keys left out take their defaults; an unknown key is a ValueError naming it."""
        return cls(**known_fields(cls, data or {}, "training settings"))

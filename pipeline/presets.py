"""One resolution of a model preset and its overrides into TrainingSettings, for all runners."""

from __future__ import annotations

from collections.abc import Sequence

from bookcover.settings import given
from models import hyperparameters
from models.settings import TrainingSettings, check_model_options
from pipeline import configs


def resolve(
    preset: str = "default",
    *,
    learning_rates: Sequence[float] | None = None,
    first_filters: Sequence[int] | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    model_options: dict | None = None,
    embedded: bool = False,
    **settings,
) -> TrainingSettings:
    """The preset's grid, batch size and options, each overridden where given.

    `embedded` (the generated demo data) trains fewer epochs at a smaller batch
    unless those are given. `settings` are further TrainingSettings fields
    (tuner_epochs, mixed_precision, backup_dir, ...), None where not given. local_runner.py and
    kubeflow/runner.py both call this, so a preset means the same on every
    orchestrator.
    """
    if preset not in hyperparameters.PRESETS:
        raise ValueError(
            f"unknown model preset {preset!r}; known: {', '.join(sorted(hyperparameters.PRESETS))}"
        )
    chosen = hyperparameters.PRESETS[preset]
    settings = given(**settings)
    if embedded:
        batch_size = batch_size or configs.EMBEDDED_BATCH_SIZE
        epochs = epochs or configs.EMBEDDED_TRAIN_EPOCHS
    if epochs is not None:
        settings["train_epochs"] = epochs
    return TrainingSettings(
        learning_rates=tuple(learning_rates or chosen.learning_rates),
        first_filters=tuple(first_filters or chosen.first_filters),
        batch_size=batch_size or chosen.batch_size,
        model_options={**chosen.model_options, **check_model_options(model_options or {})},
        **settings,
    )

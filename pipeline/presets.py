"""One resolution of a model preset and its overrides into training settings, for all runners."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from models import hyperparameters
from pipeline import configs


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """What create_pipeline needs to tune and train: the grid, batch, epochs, options."""

    learning_rates: tuple[float, ...]
    first_filters: tuple[int, ...]
    batch_size: int
    train_epochs: int
    model_options: dict


def resolve(
    preset: str = "default",
    *,
    learning_rates: Sequence[float] | None = None,
    first_filters: Sequence[int] | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    model_options: dict | None = None,
    embedded: bool = False,
) -> TrainingSettings:
    """The preset's grid, batch size and options, each overridden where given.

    `embedded` (the generated demo data) trains fewer epochs at a smaller batch
    unless those are given. local_runner.py and kubeflow/runner.py both call
    this, so a preset means the same on every orchestrator.
    """
    if preset not in hyperparameters.MODEL_PRESETS:
        raise ValueError(
            f"unknown model preset {preset!r}; known: {sorted(hyperparameters.MODEL_PRESETS)}"
        )
    grid_rates, grid_filters = hyperparameters.GRIDS[preset]
    if batch_size is None:
        batch_size = (
            configs.EMBEDDED_BATCH_SIZE if embedded else hyperparameters.BATCH_SIZES[preset]
        )
    if epochs is None:
        epochs = configs.EMBEDDED_TRAIN_EPOCHS if embedded else hyperparameters.TRAIN_EPOCHS
    return TrainingSettings(
        learning_rates=tuple(learning_rates or grid_rates),
        first_filters=tuple(first_filters or grid_filters),
        batch_size=batch_size,
        train_epochs=epochs,
        model_options={**hyperparameters.MODEL_PRESETS[preset], **(model_options or {})},
    )

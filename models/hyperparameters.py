"""The model's hyperparameters: the Tuner's grid, the fixed options, the presets, training lengths.

The pipeline passes them to the Tuner and the Trainer as one TrainingSettings
(models/settings.py), whose defaults come from here. Measured effects:
benchmarks/README.md.
"""

import dataclasses
from types import MappingProxyType

# The grid (Tuner choices): the seed's, and the default's (smaller first
# layers: the residual network doubles them at every stage).
SEED_LEARNING_RATES = (1e-4, 5e-4, 1e-3)
SEED_FIRST_FILTERS = (24, 32, 40)
# 5e-4 left the grid (2026-12-07): the grid's 3-epoch trials favour the lowest rate,
# which is the worst of the three after the Trainer's 90 epochs (benchmarks/README.md,
# "The grid's learning rates").
LEARNING_RATES = (1e-3, 2e-3)
# Wider first layers (24) scored no better on real covers and train too slowly for
# the quality benchmark's hour on 2 cores (benchmarks/README.md, "Model quality").
FIRST_FILTERS = (12, 16)
# Every other hyperparameter, fixed during the search. SEED_MODEL_OPTIONS is
# the seed work's exact model and training, kept as the baseline;
# DEFAULT_MODEL_OPTIONS is the default (`--model-preset` picks a Preset,
# `--model-option` overrides single values). Both name every option.
SEED_MODEL_OPTIONS = {
    "architecture": "seed_cnn",  # or "resnet", "pretrained" (models/model.py ARCHITECTURES)
    "filter_step": 16,
    "kernel_size": 3,
    "head": "flatten",  # or "gap": global average pooling
    "dense_units_1": 256,  # 0 leaves the layer out
    "dense_units_2": 128,
    "dropout": 0.4,
    "l2": 1e-4,
    "augment": False,
    "augment_shift": 0.06,  # share of height and width
    "augment_zoom": 0.1,
    "augment_brightness": 0.05,  # share of STANDARDISED_RANGE
    "augment_contrast": 0.2,
    "label_smoothing": 0.0,
    # Mixup's Beta(alpha, alpha): training batches blended with a shuffled copy
    # of themselves, labels alike (models/inputs.py mix_batches); 0 turns it off.
    "mixup": 0.0,
    "lr_schedule": "constant",  # or "plateau" (drop on a val-loss plateau) or "cosine"
    "class_weights": False,  # weigh classes by inverse training frequency
    # architecture "pretrained": a keras.applications backbone (BACKBONES) and
    # its weights: "imagenet" (Keras' download or its cache in ~/.keras/models),
    # a path to a weights file, or "random" to train it from scratch, explicitly.
    "backbone": "EfficientNetB0",
    "backbone_weights": "imagenet",
    # What the model reads (INPUTS): the cover alone, or the cover and the title
    # (models/model.py title_logits), whose logits add to the cover's.
    "inputs": "cover",
    # cover_title: titles withheld from this share of training examples at random,
    # so that the cover alone still classifies when a title is missing.
    "title_dropout": 0.5,
    "title_embedding": 64,  # the width of a title token's vector
    # cover_title: the weight of a second loss, on the cover branch's probabilities
    # alone (models/model.py CoverTitleModel), so that it learns as a cover model would.
    "cover_loss": 0.0,
    # cover_title: how the fused loss trains the branches (FUSIONS): "joint", both; or
    # "residual", the title branch alone, on top of the cover's logits, which then
    # learn from `cover_loss` only (> 0): the cover branch is a cover model.
    "fusion": "joint",
}
# The best configuration measured on real covers (benchmarks/quality.py,
# benchmarks/README.md): what each change gave is written down there.
DEFAULT_MODEL_OPTIONS = {
    **SEED_MODEL_OPTIONS,
    "architecture": "resnet",
    "head": "gap",
    "dense_units_1": 0,
    "dense_units_2": 0,
    "dropout": 0.3,
    "l2": 5e-5,
    "augment": True,
    "label_smoothing": 0.1,
    "mixup": 0.2,
    "lr_schedule": "cosine",
    "class_weights": True,
    # inputs=cover_title: the cover branch trains as a cover model, on its own loss,
    # and the title branch learns what to add (withheld titles then score as the
    # cover model does; benchmarks/README.md, "Cover and title").
    "cover_loss": 1.0,
    "fusion": "residual",
}
INPUTS = ("cover", "cover_title")
FUSIONS = ("joint", "residual")
# Options whose values are names: any other value is refused when the option is given.
OPTION_CHOICES = {
    "inputs": INPUTS,
    "fusion": FUSIONS,
    "head": ("flatten", "gap"),
    "lr_schedule": ("constant", "plateau", "cosine"),
}
# The options' names, in the order the search space fixes them.
MODEL_OPTION_NAMES = tuple(SEED_MODEL_OPTIONS)
# keras.applications backbones and the module whose preprocess_input they need.
BACKBONES = {
    "EfficientNetB0": "efficientnet",
    "EfficientNetV2B0": "efficientnet_v2",
    "MobileNetV2": "mobilenet_v2",
    "ResNet50": "resnet50",
}
# Per-replica batch: 64 for the default (more, noisier steps generalised
# better on real covers: benchmarks/README.md), the seed's 128 for its preset.
BATCH_SIZE = 64
SEED_BATCH_SIZE = 128


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named starting point for training: its grid, batch size and model options."""

    learning_rates: tuple[float, ...]
    first_filters: tuple[int, ...]
    batch_size: int
    model_options: MappingProxyType


PRESETS = {
    "default": Preset(
        LEARNING_RATES, FIRST_FILTERS, BATCH_SIZE, MappingProxyType(DEFAULT_MODEL_OPTIONS)
    ),
    "seed": Preset(
        SEED_LEARNING_RATES,
        SEED_FIRST_FILTERS,
        SEED_BATCH_SIZE,
        MappingProxyType(SEED_MODEL_OPTIONS),
    ),
}
# Standardised covers lie well inside this range; augmentation clips to it.
STANDARDISED_RANGE = (-4.0, 4.0)
WARMUP_EPOCHS = 2
PLATEAU_PATIENCE = 3
PLATEAU_FACTOR = 0.3

# --- Tuning and training ----------------------------------------------------
TUNER_EPOCHS = 3
TUNER_PATIENCE = 2
# The cosine schedule's length: 90 epochs beat 60 on real covers and still fit
# the quality benchmark's hour (figures in benchmarks/README.md, "Model quality").
TRAIN_EPOCHS = 90
# Early stopping on validation accuracy, the metric the best checkpoint is
# chosen by, for the schedules without a set end (constant, plateau). The
# cosine schedule runs its whole length: stopping cut its low-rate tail, where
# most of the gain comes (benchmarks/README.md, "Variants").
TRAIN_STOPPING_METRIC = "val_accuracy"
TRAIN_PATIENCE = 15
# Epochs of the PretrainTrainer (models/trainer.py pretrain_fn) on every category's
# covers before the Trainer fine-tunes on the selected ones; 0 leaves the step out.
PRETRAIN_EPOCHS = 0
# Networks the Trainer trains, each from its own seed, and exports as one model that
# averages their probabilities (models/export.py). On real covers four scored 45.1%
# and 44.7% top-1 in two measurements against 41.1% for one (benchmarks/README.md,
# "Ensembles"), at four times the Trainer's time: past the quality benchmark's hour
# on 2 cores, so 1 by default.
ENSEMBLE_MEMBERS = 1
# Serialized examples (5-8 KB each) in the training data's shuffle buffer: the
# whole training set, up to MAX_SHUFFLE_BUFFER (160-260 MB). A split's files can hold
# its examples grouped by category (downloads finish roughly in the order they were
# asked for), and a smaller buffer then feeds the network a few categories at a time:
# the pretraining split (21 categories, 5,318 covers) did not learn at all with 2048.
SHUFFLE_BUFFER = 2048
MAX_SHUFFLE_BUFFER = 32_768
# "auto": mixed_float16 when a GPU is present, else float32.
MIXED_PRECISION = "auto"
MIXED_PRECISION_CHOICES = ("auto", "mixed_float16", "float32")

"""Every constant of the bookcover pipeline, defined once."""

import os

PIPELINE_NAME = "bookcover"

# --- Covers -------------------------------------------------------------
# Width x height follows the covers' 1:1.5 aspect ratio.
IMAGE_WIDTH = 100
IMAGE_HEIGHT = 150
IMAGE_CHANNELS = 3
JPEG_QUALITY = 90
# How CoverExampleGen stores covers. The reviewed schema expects JPEG: PNG
# (lossless, several times larger) stops at data validation until the schema
# is changed or the run is allowed through.
COVER_FORMATS = ("JPEG", "PNG")
COVER_FORMAT = "JPEG"

# --- Raw example features (written by CoverExampleGen) ------------------
IMAGE_KEY = "image"
CATEGORY_KEY = "category"
TITLE_KEY = "title"
SOURCE_URL_KEY = "source_url"
CONTENT_HASH_KEY = "content_hash"

# --- Transformed features (written by Transform) ------------------------
LABEL_KEY = "label"
# The decoded, resized cover in [0, 1] before standardisation: the input of
# ImageNet backbones, which bring their own normalisation.
IMAGE_UNIT_KEY = "image_unit"
CATEGORY_VOCABULARY = "category"

# --- Category selection and sampling -------------------------------------
NUM_CATEGORIES = 12
MIN_BOOKS_PER_CATEGORY = 2200
PER_CLASS = 2200
# Balanced: every category sampled down to the smallest selected one (the
# seed's way). Unbalanced (the default): each keeps up to PER_CLASS books and
# the Trainer weighs classes (MODEL_OPTIONS class_weights), so no cover is
# thrown away.
BALANCE_CLASSES = False
SAMPLE_SEED = 42
SPLIT_NAMES = ("train", "eval", "test")
SPLIT_BUCKETS = (3, 1, 1)  # 60 / 20 / 20

# --- Downloading ----------------------------------------------------------
CONNECTIONS_PER_WORKER = 16
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0
# One attempt at one cover, redirects included; a stuck host costs at most this
# x (MAX_RETRIES + 1).
DOWNLOAD_DEADLINE_S = 30.0
MAX_RETRIES = 3
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# The image formats accepted, the same in ingestion and serving: the ones
# TensorFlow's decode_image reads, so a served cover decodes as its training
# twin did. Others (WebP, TIFF, EPS, ...) are refused on both sides.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
MAX_FAILURE_SHARE = 0.2

# --- Embedded default dataset (generated, see pipeline/embedded_data.py) --
EMBEDDED_CATEGORIES = 12
EMBEDDED_PER_CATEGORY = 40
# 288 training covers make 2 steps an epoch at the seed's batch of 128, too few
# for batch normalisation's moving statistics to settle; smaller batches fix it.
EMBEDDED_BATCH_SIZE = 32
# The generated covers are learnt within a few epochs; the cosine schedule runs
# every epoch it is given (see TRAIN_PATIENCE), so the demo run gets few.
EMBEDDED_TRAIN_EPOCHS = 20

# --- Model hyperparameters -------------------------------------------------
# The grid (Tuner choices): the seed's, and the default's (smaller first
# layers: the residual network doubles them at every stage).
SEED_LEARNING_RATES = (1e-4, 5e-4, 1e-3)
SEED_FIRST_FILTERS = (24, 32, 40)
LEARNING_RATES = (5e-4, 1e-3, 2e-3)
# Wider first layers (24) scored no better on real covers and train too slowly for
# the quality benchmark's hour on 2 cores (benchmarks/README.md, "Model quality").
FIRST_FILTERS = (12, 16)
# Every other hyperparameter, fixed during the search. SEED_MODEL_OPTIONS is
# the seed work's exact model and training, kept as the baseline;
# MODEL_OPTIONS is the default (`--model-preset` picks one, `--model-option`
# overrides single values).
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
}
# The best configuration measured on real covers (benchmarks/quality.py,
# benchmarks/README.md): what each change gave is written down there.
MODEL_OPTIONS = {
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
}
MODEL_PRESETS = {"default": MODEL_OPTIONS, "seed": SEED_MODEL_OPTIONS}
GRIDS = {
    "default": (LEARNING_RATES, FIRST_FILTERS),
    "seed": (SEED_LEARNING_RATES, SEED_FIRST_FILTERS),
}
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
BATCH_SIZES = {"default": BATCH_SIZE, "seed": SEED_BATCH_SIZE}
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
# most of the gain comes (validation runs stopped before epoch 60 scored
# 35-37%, those that ran on 38-41%: benchmarks/README.md, "Variants").
TRAIN_STOPPING_METRIC = "val_accuracy"
TRAIN_PATIENCE = 15
SHUFFLE_BUFFER = 2048
# "auto": mixed_float16 when a GPU is present, else float32.
MIXED_PRECISION = "auto"
MIXED_PRECISION_CHOICES = ("auto", "mixed_float16", "float32")

# --- Data validation (schema/README.md) -----------------------------------
# The largest current category share difference allowed between the train
# split and the others (skew), and between this run's train split and the
# pushed model's (drift), as TFDV's L-infinity comparators in the schema.
CATEGORY_SHARE_LINF = 0.1
# Image format shares may differ this much (L-infinity) from the pushed model's data,
# and the mean stored cover size this much (relative).
IMAGE_FORMAT_DRIFT_LINF = 0.1
COVER_BYTES_DRIFT = 0.5
# A stored 100x150 cover larger than this is not a cover this pipeline wrote.
MAX_COVER_BYTES = 45_000
# Pushed beside each pushed model: the statistics of the data it was trained on,
# which the next run's drift check compares against. TF Serving ignores assets.extra.
BASELINE_STATISTICS = os.path.join("assets.extra", "train_statistics.pb")

# --- Evaluation -----------------------------------------------------------
# The model must beat chance (1 / classes) by this factor to be blessed.
ACCURACY_OVER_CHANCE = 1.5

# --- Module paths (referenced by dotted path, not copied) -----------------
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
TUNER_FN = "models.trainer.tuner_fn"
RUN_FN = "models.trainer.run_fn"

# --- The reviewed schema (python -m pipeline.schema writes it) ----------------
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(PROJECT_ROOT, "schema", "schema.pbtxt")
# TFDV SQL checks the schema cannot state (the covers' image format).
VALIDATIONS_FILE = os.path.join(PROJECT_ROOT, "schema", "validations.pbtxt")

# --- Local paths ------------------------------------------------------------
OUTPUT_DIR = os.path.join(os.getcwd(), "outputs")
DIRECT_NUM_WORKERS = 2
# Beam arguments that keep a step in this process on the DirectRunner (CoverExampleGen,
# Evaluator: see why at each); other runners ignore them.
DIRECT_IN_PROCESS_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
# The pinned environment every local Beam worker runs in (see direct_runner_args).
REQUIREMENTS_FILE = os.path.join(PROJECT_ROOT, "requirements.lock")

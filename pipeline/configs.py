"""The pipeline's own settings: its name, the embedded default, validation and blessing bars, paths.

Constants that components/ or models/ also read live below this package
(bookcover/constants.py, models/hyperparameters.py), so that neither imports
pipeline/.
"""

import os

PIPELINE_NAME = "bookcover"

# --- Embedded default dataset (generated, see pipeline/embedded_data.py) --
EMBEDDED_CATEGORIES = 12
EMBEDDED_PER_CATEGORY = 40
# 288 training covers make 2 steps an epoch at the seed's batch of 128, too few
# for batch normalisation's moving statistics to settle; smaller batches fix it.
EMBEDDED_BATCH_SIZE = 32
# The generated covers are learnt within a few epochs; the cosine schedule runs
# every epoch it is given (see models/hyperparameters.TRAIN_PATIENCE), so the demo run gets few.
EMBEDDED_TRAIN_EPOCHS = 20

# --- Data validation (schema/README.md) -----------------------------------
# The largest current category share difference allowed between the train
# split and the others (skew), and between this run's train split and the
# pushed model's (drift), as TFDV's L-infinity comparators in the schema.
CATEGORY_SHARE_LINF = 0.1
# A stored 100x150 cover larger than this is not a cover this pipeline wrote.
MAX_COVER_BYTES = 45_000

# --- Evaluation -----------------------------------------------------------
# The model must beat chance (1 / classes) by this factor to be blessed.
ACCURACY_OVER_CHANCE = 1.5

# --- Module paths (referenced by dotted path, not copied) -----------------
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
TUNER_FN = "models.trainer.tuner_fn"
RUN_FN = "models.trainer.run_fn"
PRETRAIN_FN = "models.trainer.pretrain_fn"

# --- The reviewed schema (python -m pipeline.schema writes it) ----------------
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(PROJECT_ROOT, "schema", "schema.pbtxt")
# The packages behind Transform, the Tuner and the Trainer, whose code is part of
# their cache key (pipeline.model_code_fingerprint).
MODEL_CODE_PACKAGES = ("models", "bookcover")
# TFDV SQL checks the schema cannot state (the covers' image format).
VALIDATIONS_FILE = os.path.join(PROJECT_ROOT, "schema", "validations.pbtxt")

# --- Local paths ------------------------------------------------------------
OUTPUT_DIR = os.path.join(os.getcwd(), "outputs")
# 1: the Beam steps run in this process on the DirectRunner. Measured at the seed's
# setting, StatisticsGen and Transform take 14 and 18 s in process against 35 and 46 s
# in two worker processes, each of which imports TensorFlow (0.4 GB apiece): the run
# then stays under 2 GB (benchmarks/README.md, "Scale").
DIRECT_NUM_WORKERS = 1
# The pinned environment every local Beam worker runs in (see direct_runner_args).
REQUIREMENTS_FILE = os.path.join(PROJECT_ROOT, "requirements.lock")

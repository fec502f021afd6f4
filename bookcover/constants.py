"""What ingestion, validation, the model and serving must agree on, defined once.

The lowest module of the project: components/, models/ and everything above
import their shared constants from here, and it imports nothing but `os` (not
TensorFlow: the runners read it before they set TensorFlow's environment).
Constants that belong to one part live with that part: the model's
hyperparameters in models/hyperparameters.py, the pipeline's own settings in
pipeline/configs.py, DataGate's drift thresholds in components/data_gate/checks.py.
"""

import os

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
# The image formats accepted, the same in ingestion and serving: the ones
# TensorFlow's decode_image reads, so a served cover decodes as its training
# twin did. Others (WebP, TIFF, EPS, ...) are refused on both sides.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# A GIF is walked block by block before it is decoded (models/preprocessing.gif_frames);
# an encoder writes 255-byte sub-blocks, so this is about 5 MB of image data, and the
# walk of the most blocks allowed costs about 2 s of CPU.
MAX_GIF_BLOCKS = 20_000
# What one request to the served model may hold. Images are decoded one at a time and
# go through the model in chunks, so memory does not grow with these (see the README,
# "What bad input gets"); they bound its work. Beam batches at most 10,000 elements,
# so the Evaluator's and RunInference's batches always fit; 200 million pixels are
# 13,000 stored covers, or 5 images at the largest size.
MAX_REQUEST_IMAGES = 10_000
MAX_REQUEST_PIXELS = 200_000_000

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
# The title as token ids into TITLE_VOCABULARY (words and character 3- and 4-grams),
# 0 for padding and for tokens outside the vocabulary: what the cover-and-title
# model reads beside the cover (model option inputs=cover_title).
TITLE_TOKENS_KEY = "title_tokens"
TITLE_VOCABULARY = "title"
# Tokens kept per title: a title of 56 characters (95% of real titles are shorter)
# makes about 110; longer ones are cut.
MAX_TITLE_TOKENS = 160
# Characters of a title read (a longer one is cut first): bounds the work a served
# request's titles can ask for.
MAX_TITLE_CHARS = 400
# The signature of a model that reads titles: images and their titles, in the same order.
COVER_AND_TITLE_SIGNATURE = "serving_cover_and_title"
# The vocabulary: the most frequent tokens of the train split seen at least twice.
TITLE_VOCABULARY_SIZE = 50_000
TITLE_MIN_COUNT = 2

# --- Category selection, sampling and splits ------------------------------
NUM_CATEGORIES = 12
PER_CLASS = 2200
# Balanced: every category sampled down to the smallest selected one (the
# seed's way). Unbalanced (the default): each keeps up to PER_CLASS books and
# the Trainer weighs classes (model option class_weights), so no cover is
# thrown away.
BALANCE_CLASSES = False
# Every sample and shuffle starts from it, so that runs repeat.
SAMPLE_SEED = 42
SPLIT_NAMES = ("train", "eval", "test")
SPLIT_BUCKETS = (3, 1, 1)  # 60 / 20 / 20
# Pretraining (TrainingSettings.pretrain_epochs > 0): CoverExampleGen also writes,
# as this split, the covers of the largest PRETRAIN_MAX_CATEGORIES categories
# with at least PRETRAIN_MIN_BOOKS books that the selection left (up to
# PER_CLASS each), less every book of the eval and test splits.
PRETRAIN_SPLIT = "pretrain"
PRETRAIN_MIN_BOOKS = 10
PRETRAIN_MAX_CATEGORIES = 100

# --- Downloading ----------------------------------------------------------
CONNECTIONS_PER_WORKER = 16
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0
# The whole of one cover: name resolution, connecting, every attempt and redirect,
# the waits between attempts (a wait that would pass it is not waited), or a
# local file's read. A stuck host or file costs at most this.
DOWNLOAD_DEADLINE_S = 60.0
MAX_RETRIES = 3
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_FAILURE_SHARE = 0.2

# --- Pushed models ----------------------------------------------------------
# Pushed beside each pushed model: the statistics of the data it was trained on,
# which the next run's drift check compares against. TF Serving ignores assets.extra.
BASELINE_STATISTICS = os.path.join("assets.extra", "train_statistics.pb")

# --- Beam ---------------------------------------------------------------------
# Beam arguments that keep a step in this process on the DirectRunner (CoverExampleGen,
# Evaluator: see why at each); other runners ignore them.
DIRECT_IN_PROCESS_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")

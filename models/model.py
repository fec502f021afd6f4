"""The cover classifier in Keras 3, every size and rate read from keras_tuner.HyperParameters."""

from __future__ import annotations

import logging

import keras
import keras_tuner

from bookcover import constants
from models import hyperparameters, settings
from models.augmentation import augmentation


def default_hyperparameters(
    learning_rates=hyperparameters.PRESETS["default"].learning_rates,
    first_filters=hyperparameters.PRESETS["default"].first_filters,
    options: dict | None = None,
) -> keras_tuner.HyperParameters:
    """The search space: the grid as choices, every other setting fixed.

    `options` overrides the default preset's fixed values by name
    (hyperparameters.MODEL_OPTION_NAMES); an unknown name is an error, not a silent no-op.
    """
    fixed = {**hyperparameters.DEFAULT_MODEL_OPTIONS, **(options or {})}
    unknown = sorted(set(fixed) - set(hyperparameters.MODEL_OPTION_NAMES))
    if unknown:
        raise ValueError(
            f"unknown model option(s) {unknown}; known: {list(hyperparameters.MODEL_OPTION_NAMES)}"
        )
    for name in hyperparameters.OPTION_CHOICES:  # the same refusal as a flag's
        settings.check_model_option(name, fixed[name])
    if fixed["architecture"] not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {fixed['architecture']!r}; known: {sorted(ARCHITECTURES)}"
        )
    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", list(learning_rates))
    hp.Choice("first_filters", list(first_filters))
    for name, value in fixed.items():
        hp.Fixed(name, value)
    return hp


def _seed_cnn_features(x, hp: keras_tuner.HyperParameters, regulariser):
    """The seed's four conv blocks: F, F+16, F+32, F+48 filters, batch norm, max pooling."""
    for block in range(4):
        filters = hp.get("first_filters") + block * hp.get("filter_step")
        x = keras.layers.Conv2D(
            filters,
            hp.get("kernel_size"),
            padding="same",
            activation="relu",
            kernel_regularizer=regulariser,
            name=f"conv{block + 1}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"bn{block + 1}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{block + 1}")(x)
    return x


def _conv_bn_relu(x, filters: int, strides: int, regulariser, name: str, relu: bool = True):
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_regularizer=regulariser,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _resnet_features(x, hp: keras_tuner.HyperParameters, regulariser):
    """A compact residual network: a stride-2 stem, then four stages of one basic block,
    each stage doubling the filters (F, 2F, 4F, 8F) and halving the resolution."""
    first = hp.get("first_filters")
    x = _conv_bn_relu(x, first, 2, regulariser, "stem")
    for stage in range(4):
        filters, strides = first * 2**stage, (1 if stage == 0 else 2)
        name = f"stage{stage + 1}"
        shortcut = x
        if strides != 1 or x.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(
                filters, 1, strides=strides, use_bias=False, name=f"{name}_proj"
            )(x)
            shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
        y = _conv_bn_relu(x, filters, strides, regulariser, f"{name}_a")
        y = _conv_bn_relu(y, filters, 1, regulariser, f"{name}_b", relu=False)
        x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
        x = keras.layers.ReLU(name=f"{name}_out")(x)
    return x


class BackboneWeightsError(RuntimeError):
    """The pretrained weights asked for cannot be had; training from random weights under a
    pretrained name would be a silent lie, so the run stops."""


def load_backbone(name: str, weights: str, input_shape: tuple[int, int, int]) -> keras.Model:
    """A keras.applications backbone without its classifier, with the weights asked for:
    "imagenet", a path to a weights file, or "random" (explicitly from scratch)."""
    if name not in hyperparameters.BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(hyperparameters.BACKBONES)}")
    if weights == "random":
        logging.warning("backbone %s starts from random weights, as asked: no pretraining", name)
        source = None
    elif weights == "imagenet":
        source = "imagenet"
    else:
        # Imported here: the rest of the model needs Keras alone, so it also builds on
        # other Keras backends (benchmarks/gpu_precision.py runs it on JAX).
        from tfx.dsl.io import fileio

        if not fileio.exists(weights) or fileio.isdir(weights):
            raise BackboneWeightsError(
                f"backbone_weights={weights!r}: no such file; give the path of a {name} "
                "weights file (include_top=False), 'imagenet', or 'random'"
            )
        source = weights
    try:
        return getattr(keras.applications, name)(
            include_top=False, weights=source, input_shape=input_shape
        )
    except Exception as error:  # noqa: BLE001 - any failure to get weights must stop the run
        if source is None:
            raise
        raise BackboneWeightsError(
            f"could not load {weights} weights for backbone {name}: {error}. Without network "
            f"access, download the {name} no-top ImageNet weights elsewhere and pass "
            "--model-option backbone_weights=/path/to/file (or put them in ~/.keras/models); "
            "--model-option backbone_weights=random trains the backbone from scratch"
        ) from error


def _pretrained_features(x, hp: keras_tuner.HyperParameters, regulariser):
    """A keras.applications backbone on the [0, 1] cover, after its own preprocessing."""
    name = hp.get("backbone")
    backbone = load_backbone(name, hp.get("backbone_weights"), tuple(x.shape[1:]))
    preprocess = getattr(keras.applications, hyperparameters.BACKBONES[name]).preprocess_input
    x = keras.layers.Lambda(lambda t: preprocess(t * 255.0), name="backbone_preprocess")(x)
    return backbone(x)


ARCHITECTURES = {
    "seed_cnn": _seed_cnn_features,
    "resnet": _resnet_features,
    "pretrained": _pretrained_features,
}


def input_key(hp: keras_tuner.HyperParameters) -> str:
    """The transformed feature the model reads: standardised covers, or [0, 1] covers for an
    ImageNet backbone (it brings its own normalisation)."""
    return (
        constants.IMAGE_UNIT_KEY if hp.get("architecture") == "pretrained" else constants.IMAGE_KEY
    )


def reads_titles(hp: keras_tuner.HyperParameters) -> bool:
    return hp.get("inputs") == "cover_title"


@keras.saving.register_keras_serializable(package="bookcover")
class TitleBag(keras.layers.Layer):
    """Title token ids [batch, tokens] -> the mean of their vectors [batch, width]; the
    zero vector for a title without a known token. In training, the whole title of a
    `drop_rate` share of examples is withheld, so that the rest of the model learns to
    classify without it too."""

    def __init__(self, vocabulary_size: int, width: int, drop_rate: float, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.width, self.drop_rate = vocabulary_size, width, drop_rate
        self.embedding = keras.layers.Embedding(vocabulary_size, width, name="tokens")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, tokens, training=False):
        present = keras.ops.cast(tokens > 0, self.compute_dtype)
        if training and self.drop_rate:
            draw = keras.random.uniform((keras.ops.shape(tokens)[0], 1), seed=self.seed_generator)
            present = present * keras.ops.cast(draw >= self.drop_rate, self.compute_dtype)
        vectors = self.embedding(tokens) * keras.ops.expand_dims(present, -1)
        count = keras.ops.maximum(keras.ops.sum(present, axis=1, keepdims=True), 1.0)
        return keras.ops.sum(vectors, axis=1) / count

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "width": self.width,
            "drop_rate": self.drop_rate,
        }


@keras.saving.register_keras_serializable(package="bookcover")
class CoverTitleModel(keras.Model):
    """The cover-and-title model: built from its inputs and two outputs, the fused
    probabilities and the cover branch's alone. Called for inference (predict, export)
    it answers the fused ones only. In training it adds `cover_loss` times the loss of
    the cover's own probabilities: with the title in, the cover branch would learn only
    what the title leaves unexplained, and alone (a withheld title) classify worse than
    a cover-only model. The training loss so includes that term; the validation loss
    and the compiled metrics are the fused model's. Two more metrics follow the cover
    branch: `cover_accuracy`, its own, and `both_ways_accuracy`, the mean of the fused
    and the cover's accuracy, per example: the model is served both ways (with titles,
    and from covers alone), and its kept epoch is the best by this mean (selection_metric)."""

    def __init__(self, *args, cover_loss: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.cover_loss = cover_loss
        # One output to compile against (the fused probabilities), so losses and metrics
        # keep the cover-only model's names (accuracy, val_accuracy) that the Tuner's
        # objective and the reports read.
        self.output_names = None
        self.cover_accuracy = keras.metrics.CategoricalAccuracy(name="cover_accuracy")
        self.both_ways_accuracy = keras.metrics.Mean(name="both_ways_accuracy")
        self._both_outputs = False

    def call(self, inputs, training=None, mask=None):
        fused, cover = super().call(inputs, training=training, mask=mask)
        return (fused, cover) if training or self._both_outputs else fused

    def test_step(self, data):
        # Both outputs in validation too, for the cover branch's metrics (read when
        # the step is traced).
        self._both_outputs = True
        try:
            return super().test_step(data)
        finally:
            self._both_outputs = False

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (tuple, list)):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        fused, cover = y_pred
        loss = super().compute_loss(x, y, fused, sample_weight, training=training)
        if not self.cover_loss or not training:
            return loss
        return loss + self.cover_loss * self.loss(y, cover, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):
            y_pred, cover = y_pred
            self.cover_accuracy.update_state(y, cover, sample_weight)
            label = keras.ops.argmax(y, axis=-1)
            right = [
                keras.ops.cast(keras.ops.argmax(p, axis=-1) == label, "float32")
                for p in (y_pred, cover)
            ]
            self.both_ways_accuracy.update_state((right[0] + right[1]) / 2, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "cover_loss": self.cover_loss}


@keras.saving.register_keras_serializable(package="bookcover")
class HeldFixed(keras.layers.Layer):
    """Passes its input on; no gradient flows back through it (fusion=residual: the
    fused loss trains the title branch, not the cover's)."""

    def call(self, x):
        return keras.ops.stop_gradient(x)


def title_logits(
    tokens, hp: keras_tuner.HyperParameters, num_classes: int, vocabulary_size: int, regulariser
):
    """A bag of title tokens (fastText's model: mean token vector, linear classifier).
    Its logits have no bias, so a title without known tokens adds exactly nothing to the
    cover's logits: without a title the model is its cover branch."""
    x = TitleBag(vocabulary_size, hp.get("title_embedding"), hp.get("title_dropout"), name="title")(
        tokens
    )
    x = keras.layers.Dropout(hp.get("dropout"))(x)
    return keras.layers.Dense(
        num_classes, use_bias=False, kernel_regularizer=regulariser, name="title_logits"
    )(x)


def learning_rate(
    hp: keras_tuner.HyperParameters, steps_per_epoch: int | None = None, epochs: int | None = None
):
    """The hyperparameter's rate; under the cosine schedule, when the length of training
    is known, a short warm-up to it and a cosine decay to zero by the last epoch."""
    rate = hp.get("learning_rate")
    if hp.get("lr_schedule") != "cosine" or not (steps_per_epoch and epochs):
        return rate
    warmup = min(hyperparameters.WARMUP_EPOCHS, epochs - 1) * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        rate / 10,
        decay_steps=max(1, epochs * steps_per_epoch - warmup),
        warmup_target=rate,
        warmup_steps=warmup,
    )


def schedule_callbacks(hp: keras_tuner.HyperParameters) -> list[keras.callbacks.Callback]:
    """Callbacks the learning-rate schedule needs during fit (the cosine schedule needs
    none: it lives in the optimiser)."""
    if hp.get("lr_schedule") == "plateau":
        return [
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=hyperparameters.PLATEAU_FACTOR,
                patience=hyperparameters.PLATEAU_PATIENCE,
            )
        ]
    return []


def cover_and_title_model(
    hp: keras_tuner.HyperParameters,
    cover_input,
    cover_logits,
    num_classes: int,
    title_vocabulary_size: int,
    regulariser,
    name: str,
) -> CoverTitleModel:
    """The cover branch's input and logits, with a title branch whose logits add to them."""
    if title_vocabulary_size < 1:
        raise ValueError("inputs=cover_title needs the title vocabulary's size")
    tokens = keras.Input(
        shape=(constants.MAX_TITLE_TOKENS,), dtype="int64", name=constants.TITLE_TOKENS_KEY
    )
    title = title_logits(tokens, hp, num_classes, title_vocabulary_size, regulariser)
    if hp.get("cover_loss") < 0:
        raise ValueError(f"cover_loss is a loss's weight: 0 or more, got {hp.get('cover_loss')}")
    cover = cover_logits
    if hp.get("fusion") == "residual":
        if not hp.get("cover_loss") > 0:
            raise ValueError(
                "fusion=residual trains the cover branch by cover_loss alone: "
                "give cover_loss a weight above 0"
            )
        cover = HeldFixed(name="cover_held")(cover_logits)
    fused = keras.layers.Add(name="cover_and_title")([cover, title])
    return CoverTitleModel(
        {input_key(hp): cover_input, constants.TITLE_TOKENS_KEY: tokens},
        [probabilities(fused, "probabilities"), probabilities(cover_logits, "cover_probabilities")],
        cover_loss=hp.get("cover_loss"),
        name=name,
    )


def probabilities(logits, name: str):
    # float32 softmax keeps the loss stable under mixed_float16.
    return keras.layers.Activation("softmax", dtype="float32", name=name)(logits)


def take_weights(
    target: keras.Model, source: keras.Model, skip: tuple[str, ...] = ("logits",)
) -> list[str]:
    """Copies into `target` the weights of every layer it shares with `source` by name and
    shapes, but those named in `skip` (the logits: a pretrained network's classes are
    others, or the same in another order); returns the names of the layers taken.
    Nothing taken is an error."""
    by_name = {layer.name: layer for layer in source.layers}
    taken = []
    for layer in target.layers:
        other = by_name.get(layer.name)
        if other is None or not layer.weights or layer.name in skip:
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
            taken.append(layer.name)
    if not taken:
        raise ValueError(f"{source.name} shares no layer with {target.name}: nothing to take")
    return taken


def selection_metric(hp: keras_tuner.HyperParameters) -> str:
    """The validation metric the Trainer keeps its best epoch by: accuracy; for a model
    of covers and titles, served both ways, the mean of its accuracy with titles and
    from covers alone (CoverTitleModel), so that the kept epoch is not one where the
    title makes up for a cover branch still far from trained."""
    if hp.get("inputs") == "cover_title":
        return "val_both_ways_accuracy"
    return hyperparameters.TRAIN_STOPPING_METRIC


def build_model(
    hp: keras_tuner.HyperParameters,
    num_classes: int,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
    title_vocabulary_size: int = 0,
) -> keras.Model:
    """Feature extractor, then a flatten or global-average-pooling head, softmax in float32;
    compiled with Adam, label-smoothed categorical cross-entropy, top-1 and top-3 accuracy.

    With inputs=cover_title, a second input, the title's token ids (Transform's
    TITLE_TOKENS_KEY; `title_vocabulary_size` ids, 0 the padding), adds its logits."""
    regulariser = keras.regularizers.L2(hp.get("l2"))
    inputs = keras.Input(
        shape=(constants.IMAGE_HEIGHT, constants.IMAGE_WIDTH, constants.IMAGE_CHANNELS),
        name=input_key(hp),
    )
    if hp.get("augment"):
        value_range = (
            (0.0, 1.0)
            if input_key(hp) == constants.IMAGE_UNIT_KEY
            else hyperparameters.STANDARDISED_RANGE
        )
        x = augmentation(hp, value_range)(inputs)
    else:
        x = inputs
    x = ARCHITECTURES[hp.get("architecture")](x, hp, regulariser)
    if hp.get("head") == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(hp.get("dropout"))(x)
    for i in (1, 2):
        units = hp.get(f"dense_units_{i}")
        if units:
            x = keras.layers.Dense(
                units, activation="relu", kernel_regularizer=regulariser, name=f"dense{i}"
            )(x)
            x = keras.layers.Dropout(hp.get("dropout"))(x)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=regulariser, name="logits")(x)
    name = f"cover_{hp.get('architecture')}"
    if reads_titles(hp):
        model = cover_and_title_model(
            hp, inputs, logits, num_classes, title_vocabulary_size, regulariser, name
        )
    else:
        model = keras.Model(inputs, probabilities(logits, "probabilities"), name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(hp, steps_per_epoch, epochs)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp.get("label_smoothing")),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=3, name="top_3_accuracy"),
        ],
    )
    return model

"""The seed's CNN in Keras 3, every size and rate read from keras_tuner.HyperParameters."""

from __future__ import annotations

import keras
import keras_tuner

from pipeline import configs


def default_hyperparameters(
    learning_rates=configs.LEARNING_RATES, first_filters=configs.FIRST_FILTERS
) -> keras_tuner.HyperParameters:
    """The search space; fixed values are the seed's defaults."""
    hp = keras_tuner.HyperParameters()
    hp.Choice("learning_rate", list(learning_rates))
    hp.Choice("first_filters", list(first_filters))
    hp.Fixed("filter_step", configs.FILTER_STEP)
    hp.Fixed("kernel_size", configs.KERNEL_SIZE)
    hp.Fixed("dense_units_1", configs.DENSE_UNITS[0])
    hp.Fixed("dense_units_2", configs.DENSE_UNITS[1])
    hp.Fixed("dropout", configs.DROPOUT)
    hp.Fixed("l2", configs.L2)
    return hp


def build_model(hp: keras_tuner.HyperParameters, num_classes: int) -> keras.Model:
    """Four conv blocks (F, F+16, F+32, F+48), two dense layers, softmax in float32."""
    regulariser = keras.regularizers.L2(hp.get("l2"))
    inputs = keras.Input(
        shape=(configs.IMAGE_HEIGHT, configs.IMAGE_WIDTH, configs.IMAGE_CHANNELS),
        name=configs.IMAGE_KEY,
    )
    x = inputs
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
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(hp.get("dropout"))(x)
    for i in (1, 2):
        x = keras.layers.Dense(
            hp.get(f"dense_units_{i}"),
            activation="relu",
            kernel_regularizer=regulariser,
            name=f"dense{i}",
        )(x)
        x = keras.layers.Dropout(hp.get("dropout"))(x)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=regulariser, name="logits")(x)
    # float32 softmax keeps the loss stable under mixed_float16.
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name="cover_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(hp.get("learning_rate")),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model

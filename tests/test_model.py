"""The seed CNN: structure, regularisation and precision."""

import keras
import numpy as np
import pytest

from models import model, trainer


def hp_with(first_filters: int):
    return model.default_hyperparameters(learning_rates=(1e-3,), first_filters=(first_filters,))


@pytest.mark.parametrize("first_filters", [24, 32, 40])
def test_four_conv_blocks_grow_by_16_filters(first_filters):
    cnn = model.build_model(hp_with(first_filters), num_classes=12)
    convs = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [first_filters + 16 * i for i in range(4)]
    kinds = [type(layer).__name__ for layer in cnn.layers]
    assert kinds.count("BatchNormalization") == 4 and kinds.count("MaxPooling2D") == 4
    assert kinds.count("Dropout") == 3
    assert cnn.input_shape == (None, 150, 100, 3)
    assert cnn.output_shape == (None, 12)


def test_l2_terms_on_conv_and_dense_layers():
    cnn = model.build_model(hp_with(24), num_classes=5)
    regularised = [
        layer.name for layer in cnn.layers if getattr(layer, "kernel_regularizer", None) is not None
    ]
    assert regularised == ["conv1", "conv2", "conv3", "conv4", "dense1", "dense2", "logits"]
    cnn(np.zeros((1, 150, 100, 3), np.float32))
    assert len(cnn.losses) == 7


def test_softmax_output_stays_float32_under_mixed_precision():
    with trainer.dtype_policy("mixed_float16"):
        cnn = model.build_model(hp_with(24), num_classes=4)
        assert cnn.get_layer("conv1").compute_dtype == "float16"
        out = cnn(np.random.rand(2, 150, 100, 3).astype(np.float32))
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored
    assert out.dtype.name == "float32"
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-3)


def test_grid_is_the_configured_product():
    hp = model.default_hyperparameters((1e-4, 5e-4, 1e-3), (24, 32, 40))
    assert hp.space[0].values == [1e-4, 5e-4, 1e-3]
    assert hp.space[1].values == [24, 32, 40]

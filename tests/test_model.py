"""The cover classifier: architecture, head, augmentation and training options."""

import keras
import numpy as np
import pytest

from bookcover import constants
from models import hyperparameters, model, trainer
from models.augmentation import RandomShiftZoom


def hp_with(first_filters: int):
    """The seed's CNN."""
    return model.default_hyperparameters(
        (1e-3,), (first_filters,), hyperparameters.SEED_MODEL_OPTIONS
    )


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


def test_grid_search_visits_every_point_of_the_configured_grid_once(tmp_path):
    """keras-tuner's grid oracle, given these hyperparameters, runs the product of the two
    lists and stops: no fixed option adds trials."""
    import keras_tuner

    hp = model.default_hyperparameters((1e-4, 5e-4, 1e-3), (24, 32, 40))
    oracle = keras_tuner.oracles.GridSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"), hyperparameters=hp
    )
    oracle._set_project_dir(str(tmp_path), "grid")
    visited = []
    while (trial := oracle.create_trial("tuner0")).status != "STOPPED":
        visited.append(
            (trial.hyperparameters.get("learning_rate"), trial.hyperparameters.get("first_filters"))
        )
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        oracle.end_trial(trial)
        assert len(visited) <= 9
    assert sorted(visited) == [(lr, f) for lr in (1e-4, 5e-4, 1e-3) for f in (24, 32, 40)]


def test_seed_preset_is_the_default_options_unless_overridden():
    hp = model.default_hyperparameters((1e-3,), (24,), hyperparameters.SEED_MODEL_OPTIONS)
    assert {
        k: hp.get(k) for k in hyperparameters.SEED_MODEL_OPTIONS
    } == hyperparameters.SEED_MODEL_OPTIONS
    hp = model.default_hyperparameters((1e-3,), (24,), {"head": "flatten"})
    assert (
        hp.get("head") == "flatten"
        and hp.get("dropout") == hyperparameters.DEFAULT_MODEL_OPTIONS["dropout"]
    )
    assert hp.get("architecture") == hyperparameters.DEFAULT_MODEL_OPTIONS["architecture"]


def test_unknown_option_or_architecture_is_refused():
    with pytest.raises(ValueError, match="unknown model option.*'dropuot'"):
        model.default_hyperparameters((1e-3,), (24,), {"dropuot": 0.1})
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        model.default_hyperparameters((1e-3,), (24,), {"architecture": "vgg"})


def test_augmentation_is_off_by_default_and_only_changes_training_batches():
    plain = model.build_model(hp_with(8), num_classes=3)
    assert "augment" not in [layer.name for layer in plain.layers]
    hp = model.default_hyperparameters(
        (1e-3,), (8,), {**hyperparameters.SEED_MODEL_OPTIONS, "augment": True}
    )
    cnn = model.build_model(hp, num_classes=3)
    augment = cnn.get_layer("augment")
    kinds = [type(layer).__name__ for layer in augment.layers]
    assert kinds == ["RandomShiftZoom", "RandomBrightness", "RandomContrast"]
    assert not any("Flip" in kind for kind in kinds)  # covers carry text
    images = np.random.default_rng(0).normal(size=(4, 150, 100, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(augment(images, training=False)), images)
    assert not np.allclose(np.asarray(augment(images, training=True)), images)
    # Inference through the whole model is deterministic.
    np.testing.assert_array_equal(
        np.asarray(cnn(images, training=False)), np.asarray(cnn(images, training=False))
    )


def _bright_dot(batch: int) -> np.ndarray:
    images = np.zeros((batch, 151, 101, 1), np.float32)
    images[:, 75, 50, 0] = 1.0
    return images


def _dot_positions(images) -> np.ndarray:
    flat = np.asarray(images)[..., 0].reshape(len(images), -1)
    return np.stack(np.unravel_index(flat.argmax(axis=1), images.shape[1:3]), axis=1)


def test_shift_zoom_zooms_about_the_centre_and_shifts_within_bounds():
    dots = _bright_dot(16)
    zoomed = RandomShiftZoom(shift=0.0, zoom=0.3, seed=1)(dots, training=True)
    np.testing.assert_array_equal(_dot_positions(zoomed), [[75, 50]] * 16)
    assert not np.allclose(np.asarray(zoomed), dots)  # the dot spreads or shrinks
    shifted = _dot_positions(RandomShiftZoom(shift=0.2, zoom=0.0, seed=1)(dots, training=True))
    offsets = shifted - [75, 50]
    assert (np.abs(offsets) <= [0.2 * 151 + 1, 0.2 * 101 + 1]).all()
    assert len({tuple(o) for o in offsets}) > 8  # each cover gets its own shift
    np.testing.assert_array_equal(RandomShiftZoom(0.2, 0.3)(dots, training=False), dots)


def test_shift_zoom_survives_a_config_round_trip_and_rejects_bad_factors():
    layer = RandomShiftZoom(shift=0.06, zoom=0.1, seed=3, name="shift_zoom")
    clone = RandomShiftZoom.from_config(layer.get_config())
    assert (clone.shift, clone.zoom, clone.seed, clone.name) == (0.06, 0.1, 3, "shift_zoom")
    with pytest.raises(ValueError, match="shift and zoom"):
        RandomShiftZoom(shift=1.5, zoom=0.1)


def test_gap_head_and_optional_dense_layers():
    options = {
        **hyperparameters.SEED_MODEL_OPTIONS,
        "head": "gap",
        "dense_units_1": 0,
        "dense_units_2": 0,
    }
    hp = model.default_hyperparameters((1e-3,), (8,), options)
    cnn = model.build_model(hp, num_classes=6)
    names = [layer.name for layer in cnn.layers]
    assert "pool" in names and "flatten" not in names
    assert not any(name.startswith("dense") for name in names)
    assert cnn.get_layer("logits").input.shape == (None, 8 + 3 * 16)
    assert cnn.output_shape == (None, 6)


@pytest.mark.parametrize("first_filters", [16, 24])
def test_resnet_stages_double_filters_and_halve_resolution(first_filters):
    hp = model.default_hyperparameters(
        (1e-3,), (first_filters,), {"architecture": "resnet", "head": "gap"}
    )
    cnn = model.build_model(hp, num_classes=12)
    outs = [cnn.get_layer(f"stage{s}_out").output.shape for s in range(1, 5)]
    assert [o[-1] for o in outs] == [first_filters * 2**s for s in range(4)]
    assert [o[1:3] for o in outs] == [(75, 50), (38, 25), (19, 13), (10, 7)]
    assert any(isinstance(layer, keras.layers.Add) for layer in cnn.layers)
    assert cnn.output_shape == (None, 12)


def test_label_smoothing_reaches_the_loss():
    hp = model.default_hyperparameters((1e-3,), (8,), {"label_smoothing": 0.1})
    cnn = model.build_model(hp, num_classes=4)
    assert cnn.loss.get_config()["label_smoothing"] == 0.1


def test_plateau_schedule_drops_the_rate_on_a_validation_loss_plateau():
    hp = model.default_hyperparameters((1e-3,), (8,), {"lr_schedule": "plateau"})
    (drop,) = model.schedule_callbacks(hp)
    assert isinstance(drop, keras.callbacks.ReduceLROnPlateau)
    assert (drop.monitor, drop.factor) == ("val_loss", hyperparameters.PLATEAU_FACTOR)
    cosine = model.default_hyperparameters((1e-3,), (8,), {"lr_schedule": "cosine"})
    assert model.schedule_callbacks(cosine) == []


def test_cosine_schedule_warms_up_then_decays_to_zero():
    hp = model.default_hyperparameters((1e-3,), (8,), {"lr_schedule": "cosine"})
    schedule = model.learning_rate(hp, steps_per_epoch=10, epochs=20)
    warmup = hyperparameters.WARMUP_EPOCHS * 10
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(schedule(warmup)) == pytest.approx(1e-3)
    assert float(schedule(200)) == pytest.approx(0.0, abs=1e-9)
    # Without the length of training (the Tuner), the rate is constant.
    assert model.learning_rate(hp) == 1e-3


def test_augmented_resnet_keeps_float32_softmax_under_mixed_precision():
    hp = model.default_hyperparameters(
        (1e-3,), (8,), {"architecture": "resnet", "head": "gap", "augment": True}
    )
    with trainer.dtype_policy("mixed_float16"):
        cnn = model.build_model(hp, num_classes=4)
        assert cnn.get_layer("stage1_a_conv").compute_dtype == "float16"
        out = cnn(np.random.rand(2, 150, 100, 3).astype(np.float32), training=True)
    assert out.dtype.name == "float32"


@pytest.mark.pipeline
def test_pretrained_backbone_reads_unit_covers_and_trains(tmp_path):
    # No ImageNet weights are reachable here: the wiring is tested from random weights,
    # which must be asked for by name.
    options = {
        "architecture": "pretrained",
        "backbone": "MobileNetV2",
        "backbone_weights": "random",
    }
    hp = model.default_hyperparameters((1e-3,), (8,), options)
    assert model.input_key(hp) == constants.IMAGE_UNIT_KEY
    cnn = model.build_model(hp, num_classes=3)
    assert cnn.inputs[0].name == constants.IMAGE_UNIT_KEY
    assert "mobilenetv2" in [layer.name.split("_1.00")[0] for layer in cnn.layers]
    images = np.random.default_rng(0).random((4, 150, 100, 3)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    history = cnn.fit(images, labels, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_pretrained_backbone_loads_a_weights_file_given_by_path(tmp_path):
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(150, 100, 3)
    )
    path = str(tmp_path / "mobilenet_v2_notop.weights.h5")
    source.save_weights(path)
    loaded = model.load_backbone("MobileNetV2", path, (150, 100, 3))
    for a, b in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_missing_pretrained_weights_stop_the_run_with_the_reason():
    with pytest.raises(model.BackboneWeightsError, match="no such file.*'imagenet', or 'random'"):
        model.load_backbone("MobileNetV2", "/nowhere/weights.h5", (150, 100, 3))
    with pytest.raises(ValueError, match="unknown backbone 'AlexNet'"):
        model.load_backbone("AlexNet", "random", (150, 100, 3))

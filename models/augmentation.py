"""Training-time augmentation for covers: shift and zoom in one resampling, light colour."""

from __future__ import annotations

import keras
import keras_tuner
from keras import ops


@keras.saving.register_keras_serializable(package="bookcover")
class RandomShiftZoom(keras.layers.Layer):
    """Random translation and zoom about the centre, applied as one affine resampling.

    The same distribution as keras.layers.RandomTranslation followed by
    RandomZoom (same factor for height and width, edges filled by the nearest
    pixel), at the cost of one image warp instead of two: on CPU cores the warps
    are a large share of a training step (benchmarks/README.md, row 0876dd3).
    """

    def __init__(self, shift: float, zoom: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not (0.0 <= shift < 1.0 and 0.0 <= zoom < 1.0):
            raise ValueError(f"shift and zoom must lie in [0, 1), got {shift} and {zoom}")
        self.shift, self.zoom, self.seed = shift, zoom, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or (self.shift == 0.0 and self.zoom == 0.0):
            return images
        batch = ops.shape(images)[0]
        height = ops.cast(ops.shape(images)[1], "float32")
        width = ops.cast(ops.shape(images)[2], "float32")
        scale = 1.0 + keras.random.uniform(
            (batch, 1), -self.zoom, self.zoom, seed=self.seed_generator
        )
        shifts = keras.random.uniform((batch, 2), -self.shift, self.shift, seed=self.seed_generator)
        # Output pixel (x, y) samples the input at centre + scale * (p - centre) - shift.
        dx, dy = shifts[:, :1] * width, shifts[:, 1:] * height
        x_offset = (width - 1.0) / 2.0 * (1.0 - scale) - dx
        y_offset = (height - 1.0) / 2.0 * (1.0 - scale) - dy
        zeros = ops.zeros_like(scale)
        transform = ops.concatenate(
            [scale, zeros, x_offset, zeros, scale, y_offset, zeros, zeros], axis=1
        )
        warped = ops.image.affine_transform(
            ops.cast(images, "float32"), transform, interpolation="bilinear", fill_mode="nearest"
        )
        return ops.cast(warped, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "shift": self.shift, "zoom": self.zoom, "seed": self.seed}


def augmentation(
    hp: keras_tuner.HyperParameters, value_range: tuple[float, float]
) -> keras.Sequential:
    """Small shifts and zoom, brightness and contrast; no flips (covers carry text).

    Brightness moves pixel values by a fraction of `value_range`, the model
    input's range. Active only in training.
    """
    return keras.Sequential(
        [
            RandomShiftZoom(hp.get("augment_shift"), hp.get("augment_zoom"), name="shift_zoom"),
            keras.layers.RandomBrightness(hp.get("augment_brightness"), value_range=value_range),
            keras.layers.RandomContrast(hp.get("augment_contrast"), value_range=value_range),
        ],
        name="augment",
    )

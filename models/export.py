"""The exported SavedModel: Transform graph + Keras 3 model behind serving signatures."""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_transform as tft

from bookcover import constants
from models import inputs
from models.inputs import raw_feature_spec

TOP_K = 3


class CoverClassifier(tf.Module):
    """Serves raw cover bytes or tf.Examples; one Transform graph for all paths."""

    def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        self.model = model
        # Every Keras variable, the augmentation layers' seed states included: a
        # served function that captures one the module cannot reach fails to save.
        self.model_variables = list(model.variables)
        self.tft_layer = tf_transform_output.transform_features_layer()
        names = inputs.category_names(tf_transform_output)
        self.class_names = tf.Variable(names, trainable=False, name="class_names")
        self.num_classes = len(names)
        self.image_spec = raw_feature_spec(tf_transform_output, (constants.IMAGE_KEY,))
        # The transformed feature the model takes: its input layer's name.
        self.model_input_key = model.inputs[0].name
        self.category_spec = raw_feature_spec(tf_transform_output, (constants.CATEGORY_KEY,))

    def _classify(self, encoded_images: tf.Tensor) -> dict:
        def run() -> dict:
            shape = [-1, *self.image_spec[constants.IMAGE_KEY].shape]
            raw = {constants.IMAGE_KEY: tf.reshape(encoded_images, shape)}
            features = self.tft_layer(raw)
            probabilities = tf.cast(
                self.model(features[self.model_input_key], training=False), tf.float32
            )
            k = min(TOP_K, self.num_classes)
            top = tf.math.top_k(probabilities, k=k)
            return {
                "probabilities": probabilities,
                "category": tf.gather(self.class_names, top.indices[:, 0]),
                "top_categories": tf.gather(self.class_names, top.indices),
                "top_scores": top.values,
            }

        def empty() -> dict:
            k = min(TOP_K, self.num_classes)
            return {
                "probabilities": tf.zeros([0, self.num_classes], tf.float32),
                "category": tf.zeros([0], tf.string),
                "top_categories": tf.zeros([0, k], tf.string),
                "top_scores": tf.zeros([0, k], tf.float32),
            }

        # An empty request is valid and gets empty answers, not a shape error.
        return tf.cond(tf.size(encoded_images) > 0, run, empty)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(self, images: tf.Tensor) -> dict:
        return self._classify(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(self, examples: tf.Tensor) -> dict:
        raw = tf.io.parse_example(examples, self.image_spec)
        return self._classify(tf.reshape(raw[constants.IMAGE_KEY], [-1]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples: tf.Tensor) -> dict:
        """Labels as the model saw them in training, for TFMA."""
        raw = tf.io.parse_example(examples, self.category_spec)
        # The graph checks every image before decoding it, and those checks run
        # whatever output is asked for: a 1-pixel PNG stands in for the covers.
        placeholder = tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8))
        batch = tf.shape(raw[constants.CATEGORY_KEY])[0]
        raw[constants.IMAGE_KEY] = tf.fill([batch, 1], placeholder)
        transformed = self.tft_layer(raw)
        return {constants.LABEL_KEY: transformed[constants.LABEL_KEY]}


def export_model(
    model: keras.Model, tf_transform_output: tft.TFTransformOutput, export_dir: str
) -> None:
    module = CoverClassifier(model, tf_transform_output)
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            "serving_default": module.serve_images,
            "serving_tf_example": module.serve_tf_examples,
            "transform_features": module.transform_features,
        },
    )

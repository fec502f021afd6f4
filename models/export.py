"""The exported SavedModel: Transform graph + Keras 3 model behind serving signatures."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from bookcover import constants
from models import inputs, preprocessing
from models.inputs import raw_feature_spec

TOP_K = 3
# The signature for batch inference through tfx_bsl (TFX's BulkInferrer).
BULK_INFERENCE_SIGNATURE = "bulk_inference"
# Images through the Transform graph and the model at a time, in every signature.
CHUNK = 64


def reads_titles(model: keras.Model) -> bool:
    """Whether the model has a title input (inputs=cover_title) beside the cover's."""
    return any(tensor.name == constants.TITLE_TOKENS_KEY for tensor in model.inputs)


def members_of(model: keras.Model | Sequence[keras.Model]) -> list[keras.Model]:
    """The networks behind one exported model: the model, or an ensemble's members, which
    must read the same inputs and answer the same classes (a ValueError otherwise)."""
    members = [model] if isinstance(model, keras.Model) else list(model)
    if not members:
        raise ValueError("an ensemble needs at least one model")
    shapes = {
        (tuple((t.name, tuple(t.shape)) for t in m.inputs), tuple(m.outputs[0].shape))
        for m in members
    }
    if len(shapes) > 1:
        raise ValueError(f"an ensemble's members must take and answer alike; got {shapes}")
    return members


def averaged(members: list[keras.Model]):
    """The members' mean probabilities, as one model's (float32, whatever their policy)."""

    def probabilities(features):
        found = [tf.cast(m(features, training=False), tf.float32) for m in members]
        return found[0] if len(found) == 1 else tf.add_n(found) / len(found)

    return probabilities


class CoverClassifier(tf.Module):
    """Serves raw cover bytes or tf.Examples; one Transform graph for all paths."""

    def __init__(self, members: list[keras.Model], tf_transform_output: tft.TFTransformOutput):
        """`members`: the networks whose mean probabilities it serves, as members_of
        gives them (one, for a single network)."""
        super().__init__()
        # TF Serving's loader (C++ LoadSavedModel, like a TF1 Session) restores only
        # the tf.Variables the SavedModel's saver knows; a Keras 3 variable is a
        # wrapper the saver records under another object, and the graph's reads of
        # the tf.Variable inside it then find nothing ("Could not find variable").
        # So the module tracks the backing tf.Variables themselves, every one, the
        # augmentation layers' seed states included (a served function that captures
        # one the module cannot reach fails to save), and holds the Keras model only
        # in a closure, untracked. An ensemble's members are all called, and their
        # probabilities averaged, in every signature.
        self.model_variables = [variable.value for m in members for variable in m.variables]
        self._model = averaged(members)
        self.tft_layer = tf_transform_output.transform_features_layer()
        names = inputs.category_names(tf_transform_output)
        self.class_names = tf.Variable(names, trainable=False, name="class_names")
        self.num_classes = len(names)
        self.image_spec = raw_feature_spec(tf_transform_output, (constants.IMAGE_KEY,))
        # The transformed features the model takes: its input layers' names.
        self.reads_titles = reads_titles(members[0])
        (self.model_input_key,) = [
            t.name for t in members[0].inputs if t.name != constants.TITLE_TOKENS_KEY
        ]
        self.category_spec = raw_feature_spec(tf_transform_output, (constants.CATEGORY_KEY,))
        # A missing title is an empty one: a served example may leave it out.
        self.title_spec = {
            constants.TITLE_KEY: tf.io.FixedLenFeature([1], tf.string, default_value=[""])
        }

    def _model_inputs(self, features: dict):
        if not self.reads_titles:
            return features[self.model_input_key]
        return {
            self.model_input_key: features[self.model_input_key],
            constants.TITLE_TOKENS_KEY: features[constants.TITLE_TOKENS_KEY],
        }

    def _probabilities(self, encoded_images: tf.Tensor, titles: tf.Tensor | None) -> tf.Tensor:
        """[n] image bytes and [n] titles -> [n, classes], CHUNK images at a time: the
        Transform layer and the model hold one chunk's tensors, whatever the size of the
        request. Titles go to the Transform graph only for a model that reads them."""
        shape = [-1, *self.image_spec[constants.IMAGE_KEY].shape]

        def chunk(start: tf.Tensor, found: tf.TensorArray) -> tuple:
            raw = {constants.IMAGE_KEY: tf.reshape(encoded_images[start : start + CHUNK], shape)}
            if self.reads_titles:
                raw[constants.TITLE_KEY] = tf.reshape(titles[start : start + CHUNK], [-1, 1])
            features = self.tft_layer(raw)
            probabilities = self._model(self._model_inputs(features))
            return start + CHUNK, found.write(start // CHUNK, probabilities)

        found = tf.TensorArray(
            tf.float32,
            size=0,
            dynamic_size=True,
            infer_shape=False,
            element_shape=[None, self.num_classes],
        )
        _, found = tf.while_loop(
            lambda start, _: start < tf.size(encoded_images),
            chunk,
            [tf.constant(0), found],
            parallel_iterations=1,
        )
        return found.concat()

    @staticmethod
    def _checked_titles(encoded_images: tf.Tensor, titles: tf.Tensor | None) -> tf.Tensor:
        """One title per image (empty ones where none are given); InvalidArgument otherwise."""
        if titles is None:
            return tf.fill(tf.shape(encoded_images), "")
        titles = tf.reshape(titles, [-1])
        check = tf.debugging.assert_equal(
            tf.size(titles),
            tf.size(encoded_images),
            message="a request needs as many titles as images",
        )
        with tf.control_dependencies([check]):
            return tf.identity(titles)

    def _classify(self, encoded_images: tf.Tensor, titles: tf.Tensor | None = None) -> dict:
        """Answers for the images; `titles` (one per image) for a model that reads them,
        empty titles where none are given."""
        encoded_images = preprocessing.checked_request(encoded_images)
        if self.reads_titles:  # a cover-only model's graph gets no title ops at all
            titles = self._checked_titles(encoded_images, titles)
        k = min(TOP_K, self.num_classes)

        def run() -> dict:
            probabilities = self._probabilities(encoded_images, titles)
            top = tf.math.top_k(probabilities, k=k)
            return {
                "probabilities": probabilities,
                "category": tf.gather(self.class_names, top.indices[:, 0]),
                "top_categories": tf.gather(self.class_names, top.indices),
                "top_scores": top.values,
            }

        def empty() -> dict:
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
        spec = {**self.image_spec, **(self.title_spec if self.reads_titles else {})}
        raw = tf.io.parse_example(examples, spec)
        titles = raw[constants.TITLE_KEY] if self.reads_titles else None
        return self._classify(tf.reshape(raw[constants.IMAGE_KEY], [-1]), titles)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def bulk_inference(self, examples: tf.Tensor) -> dict:
        """serving_tf_example's answers with every output of rank 2, as tfx_bsl's
        RunInference (TFX's BulkInferrer) splits them into one PredictionLog per
        example: it takes each row's `.dtype`, which a row of a rank-1 string
        tensor (`category`) has not; `top_categories[:, 0]` is that category."""
        result = self.serve_tf_examples(examples)
        return {name: result[name] for name in ("probabilities", "top_categories", "top_scores")}

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


class CoverTitleClassifier(CoverClassifier):
    """The cover-and-title model: CoverClassifier's signatures (serving_default takes every
    title as empty; serving_tf_example reads the examples' titles), and one for both."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="images"),
            tf.TensorSpec([None], tf.string, name="titles"),
        ]
    )
    def serve_images_and_titles(self, images: tf.Tensor, titles: tf.Tensor) -> dict:
        return self._classify(images, titles)


def export_model(
    model: keras.Model | Sequence[keras.Model],
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
) -> None:
    """The model, or an ensemble of models (their probabilities averaged), behind the
    serving signatures, with the Transform graph, in export_dir."""
    members = members_of(model)
    module = (CoverTitleClassifier if reads_titles(members[0]) else CoverClassifier)(
        members, tf_transform_output
    )
    signatures = {
        "serving_default": module.serve_images,
        "serving_tf_example": module.serve_tf_examples,
        BULK_INFERENCE_SIGNATURE: module.bulk_inference,
        "transform_features": module.transform_features,
    }
    if module.reads_titles:
        signatures[constants.COVER_AND_TITLE_SIGNATURE] = module.serve_images_and_titles
    tf.saved_model.save(module, export_dir, signatures=signatures)

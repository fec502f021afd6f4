"""The exported SavedModel's serving contract, in process: every signature through every
loader its consumers use, the outputs, the refusals and the memory bounds.
(tests/test_model_server.py: the same model behind TF Serving's REST and gRPC APIs.)"""

import json
import resource
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from bookcover import constants
from models import export, inputs, predict, serving_client
from tests import cover_server as cs
from tests import images, saved_model_loaders, serving_memory, tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test


def serve(loaded, data):
    return loaded.signatures["serving_default"](images=tf.constant(data, dtype=tf.string))


def example(image: bytes | None = None, category: str | None = None) -> bytes:
    feature = {}
    if image is not None:
        feature[constants.IMAGE_KEY] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[image])
        )
    if category is not None:
        feature[constants.CATEGORY_KEY] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[category.encode()])
        )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


COVERS = [
    images.jpeg(size=(146, 220), color=(220, 30, 30)),
    images.png(size=(300, 450), color=(30, 30, 220, 255)),
    images.encode(Image.new("RGB", (120, 180), (40, 200, 40)), "GIF"),
    images.encode(Image.new("RGB", (120, 180), (90, 10, 160)), "BMP"),
]
SIGNATURE_INPUTS = {
    "serving_default": {"images": COVERS},
    "serving_tf_example": {"examples": [example(c) for c in COVERS]},
    export.BULK_INFERENCE_SIGNATURE: {"examples": [example(c) for c in COVERS]},
    "transform_features": {"examples": [example(category=c) for c in tiny_model.CATEGORIES]},
}


def test_the_model_has_the_signatures_its_consumers_call(exported):
    _, _, _, loaded = exported
    assert set(loaded.signatures) == set(SIGNATURE_INPUTS)


@pytest.mark.parametrize("signature", sorted(SIGNATURE_INPUTS))
def test_every_loader_gives_the_same_outputs(exported, signature, tmp_path):
    """TF2's loader, a TF1 Session (TF Serving's C++ loader restores variables through
    the saver and runs tensors by name, as it does) and saved_model_cli agree."""
    _, _, export_dir, _ = exported
    feeds = {
        name: np.array(values, dtype=object) for name, values in SIGNATURE_INPUTS[signature].items()
    }
    tf2 = saved_model_loaders.run_tf2(export_dir, signature, feeds)
    tf1 = saved_model_loaders.run_tf1(export_dir, signature, feeds)
    cli = saved_model_loaders.run_cli(export_dir, signature, feeds, str(tmp_path))
    saved_model_loaders.assert_same_outputs(tf2, tf1)
    saved_model_loaders.assert_same_outputs(tf2, cli)
    if signature != "transform_features":  # a trained model tells the covers apart
        assert len({tuple(p) for p in np.round(tf2["probabilities"], 4)}) > 1


def test_bulk_inference_is_serving_tf_example_with_outputs_of_rank_two(exported):
    _, _, _, loaded = exported
    examples = tf.constant(SIGNATURE_INPUTS["serving_tf_example"]["examples"])
    full = loaded.signatures["serving_tf_example"](examples=examples)
    bulk = loaded.signatures[export.BULK_INFERENCE_SIGNATURE](examples=examples)
    assert sorted(bulk) == ["probabilities", "top_categories", "top_scores"]
    assert all(len(tensor.shape) == 2 for tensor in bulk.values())
    for name, tensor in bulk.items():
        np.testing.assert_array_equal(tensor.numpy(), full[name].numpy())
    np.testing.assert_array_equal(bulk["top_categories"].numpy()[:, 0], full["category"].numpy())


def test_serving_default_classifies_jpeg_and_png_of_any_size(exported):
    _, _, _, loaded = exported
    batch = [
        images.jpeg(size=(146, 220), color=(220, 30, 30)),
        images.png(size=(300, 450), color=(30, 30, 220, 255)),
        images.jpeg(size=(100, 150), mode="L", color=100),
    ]
    result = serve(loaded, batch)
    probabilities = result["probabilities"].numpy()
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    names = [n.decode() for n in result["category"].numpy()]
    assert set(names) <= set(tiny_model.CATEGORIES)
    top = result["top_categories"].numpy()
    assert top.shape == (3, 3) and [t[0].decode() for t in top] == names
    scores = result["top_scores"].numpy()
    assert (np.diff(scores, axis=1) <= 0).all()  # sorted, best first
    np.testing.assert_allclose(scores[:, 0], probabilities.max(axis=1), rtol=1e-6)


def test_class_names_come_from_the_transform_vocabulary(exported):
    _, output, _, loaded = exported
    vocabulary = [v.decode() for v in output.vocabulary_by_name(constants.CATEGORY_VOCABULARY)]
    assert [n.decode() for n in loaded.class_names.numpy()] == vocabulary


def test_no_training_serving_skew(exported, tmp_path):
    cnn, output, _, loaded = exported
    rows = tiny_model.raw_rows(6)
    path = tiny_model.write_tfrecords(str(tmp_path / "covers.gz"), rows)
    train_images, _ = next(iter(inputs.input_fn([path], output, batch_size=6, shuffle=False)))
    through_training = cnn.predict(train_images, verbose=0)
    raw = [row[constants.IMAGE_KEY][0] for row in rows]
    through_serving = serve(loaded, raw)["probabilities"].numpy()
    np.testing.assert_allclose(through_serving, through_training, atol=1e-5)
    examples = [example(r) for r in raw]
    via_examples = loaded.signatures["serving_tf_example"](examples=tf.constant(examples))
    np.testing.assert_allclose(via_examples["probabilities"].numpy(), through_training, atol=1e-5)


def test_bytes_that_are_not_an_image_give_invalid_argument(exported):
    _, _, _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an image in an accepted"):
        serve(loaded, [images.jpeg(), b"<html>not an image</html>"])


def test_a_pixel_bomb_is_refused_from_its_header_and_the_next_request_served(exported):
    _, _, _, loaded = exported
    bomb = images.bomb_png(20000)  # about 50 KB, 400 million pixels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(tf.errors.InvalidArgumentError, match="over 40000000 pixels") as e:
        serve(loaded, [images.jpeg(), bomb])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # decoding it would take 1.2 GB
    assert serving_client.error_line(e.value.message).startswith("image over 40000000 pixels")
    assert serve(loaded, [images.jpeg()])["probabilities"].shape == (1, 3)


def test_images_over_the_byte_limit_are_refused(exported):
    _, _, _, loaded = exported
    padded = images.jpeg() + b"\0" * constants.MAX_IMAGE_BYTES
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=f"over {constants.MAX_IMAGE_BYTES} bytes"
    ):
        serve(loaded, [padded])


def test_every_worst_case_is_refused_or_served_within_the_memory_bound(exported):
    """Each accepted format at its largest, each way a file can make its decoder
    allocate more than its header says, and the largest requests, served by TF2's
    loader in a process of its own: each refused with its own message, or served,
    and none takes more than LIMIT_MB above the loaded model."""
    _, _, export_dir, _ = exported
    done = subprocess.run(
        [sys.executable, "-m", "tests.serving_memory", export_dir],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert_worst_cases(outcomes)


def assert_worst_cases(outcomes: list[dict]) -> None:
    assert [o["case"] for o in outcomes] == [c[0] for c in serving_memory.worst_cases()]
    for outcome in outcomes:
        if outcome["expected"] is None:
            assert outcome.get("served", 0) >= 1, outcome
        else:
            assert outcome["expected"] in outcome.get("refused", ""), outcome
        assert outcome["grown_mb"] < serving_memory.LIMIT_MB, outcome


def test_empty_batch_returns_empty_outputs(exported):
    _, _, _, loaded = exported
    result = serve(loaded, [])
    assert result["probabilities"].shape == (0, 3)
    assert result["category"].shape == (0,)
    assert result["top_categories"].shape == (0, 3)


def test_predict_command_reads_files_and_urls(exported, tmp_path, capsys):
    _, _, export_dir, _ = exported
    cover_file = tmp_path / "cover.jpg"
    cover_file.write_bytes(images.jpeg(color=(30, 30, 220)))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    server = cs.CoverServer()
    server.routes["/c.png"] = cs.send_bytes(images.png())
    try:
        results = predict.main([export_dir, str(cover_file), server.url + "/c.png", str(junk)])
    finally:
        server.close()
    captured = capsys.readouterr()
    assert [r["source"] for r in results] == [str(cover_file), server.url + "/c.png"]
    assert all(r["category"] in tiny_model.CATEGORIES and len(r["top"]) == 3 for r in results)
    assert "top 3:" in captured.out
    assert "junk.jpg: not a usable image (not an image in an accepted format" in captured.err
    assert all(len(line) < 300 for line in captured.err.splitlines())


def test_transform_features_gives_labels_from_the_category_alone(exported):
    """TFMA's path: examples without usable images still get their one-hot labels."""
    _, output, _, loaded = exported
    vocabulary = [v.decode() for v in output.vocabulary_by_name(constants.CATEGORY_VOCABULARY)]
    examples = [example(category=name) for name in reversed(vocabulary)]
    labels = loaded.signatures["transform_features"](examples=tf.constant(examples))
    np.testing.assert_array_equal(labels[constants.LABEL_KEY].numpy(), np.eye(3)[::-1])

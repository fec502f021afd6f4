"""The exported SavedModel's serving contract, in process (and against TF Serving if present)."""

import base64
import http.server
import json
import os
import resource
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from bookcover import constants
from models import inputs, predict, serving_client
from tests import cover_server as cs
from tests import images, tiny_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("serving"))
    cnn, output, export_dir = tiny_model.train_and_export(out)
    loaded = tf.saved_model.load(export_dir)
    return cnn, output, export_dir, loaded


def serve(loaded, data):
    return loaded.signatures["serving_default"](images=tf.constant(data, dtype=tf.string))


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
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    constants.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[r]))
                }
            )
        ).SerializeToString()
        for r in raw
    ]
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


def test_empty_batch_returns_empty_outputs(exported):
    _, _, _, loaded = exported
    result = serve(loaded, [])
    assert result["probabilities"].shape == (0, 3)
    assert result["category"].shape == (0,)
    assert result["top_categories"].shape == (0, 3)


def decode_like_tf_serving(body: dict, signature) -> dict:
    """TF Serving's REST row format: one named input, so each instance is its value, and a
    {"b64": ...} object is binary data."""
    (input_name,) = signature.structured_input_signature[1]
    values = []
    for instance in body["instances"]:
        assert isinstance(instance, dict) and set(instance) == {"b64"}
        values.append(base64.b64decode(instance["b64"]))
    return {input_name: tf.constant(values, dtype=tf.string)}


def encode_like_tf_serving(outputs: dict) -> dict:
    """Row format answer: one object per instance; UTF-8 strings stay strings."""
    n = next(iter(outputs.values())).shape[0]
    rows = []
    for i in range(n):
        row = {}
        for name, tensor in outputs.items():
            value = tensor.numpy()[i]
            row[name] = (
                value.decode()
                if isinstance(value, bytes)
                else np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)(
                    value
                ).tolist()
            )
        rows.append(row)
    return {"predictions": rows}


def test_rest_body_round_trips_as_tf_serving_decodes_it(exported):
    _, _, _, loaded = exported
    covers = [images.jpeg(color=(220, 30, 30)), images.png(color=(30, 200, 30, 255))]
    body = serving_client.predict_request(covers)
    assert body["signature_name"] == "serving_default"
    signature = loaded.signatures[body["signature_name"]]
    outputs = signature(**decode_like_tf_serving(body, signature))
    parsed = serving_client.parse_predictions(encode_like_tf_serving(outputs))
    direct = serve(loaded, covers)
    assert [p["category"] for p in parsed] == [c.decode() for c in direct["category"].numpy()]
    np.testing.assert_allclose(
        [p["probabilities"] for p in parsed], direct["probabilities"].numpy(), rtol=1e-6
    )
    assert len(parsed[0]["top"]) == 3


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="tensorflow_model_server is not on PATH (no TF Serving binary here)",
)
def test_tensorflow_model_server_serves_the_model_over_rest(exported):
    _, _, export_dir, loaded = exported
    port = free_port()
    server = subprocess.Popen(
        [
            "tensorflow_model_server",
            f"--rest_api_port={port}",
            "--port=0",
            "--model_name=cover",
            f"--model_base_path={os.path.dirname(export_dir)}",
        ]
    )
    try:
        url, covers = f"http://127.0.0.1:{port}", [images.jpeg(color=(220, 30, 30))]
        for _ in range(100):
            try:
                predictions = serving_client.predict_rest(url, "cover", covers)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.3)
        else:
            pytest.fail("tensorflow_model_server did not answer")
        direct = serve(loaded, covers)
        np.testing.assert_allclose(
            predictions[0]["probabilities"], direct["probabilities"].numpy()[0], rtol=1e-5
        )
    finally:
        server.terminate()
        server.wait(10)


class RestLikeTfServing:
    """The real SavedModel behind TF Serving's REST predict API on 127.0.0.1: the row
    format in and out, and a 400 with {"error": ...} when the graph refuses a batch."""

    def __init__(self, loaded):
        signature = loaded.signatures["serving_default"]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    status, answer = (
                        200,
                        encode_like_tf_serving(
                            signature(**decode_like_tf_serving(body, signature))
                        ),
                    )
                except tf.errors.InvalidArgumentError as e:
                    status, answer = 400, {"error": e.message}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_rest_client_reports_each_bad_image_in_one_line_and_classifies_the_rest(exported, capsys):
    _, _, _, loaded = exported
    server = RestLikeTfServing(loaded)
    batch = [images.jpeg(), images.bomb_png(20000), b"junk", images.png()]
    try:
        results = serving_client.predict_each(server.url, "bookcover", batch)
    finally:
        server.close()
    assert [("error" in r) for r in results] == [False, True, True, False]
    assert results[1]["error"].startswith("image over 40000000 pixels")
    assert results[2]["error"].startswith("not an image in an accepted format")
    assert results[0]["category"] in tiny_model.CATEGORIES
    err = capsys.readouterr().err.splitlines()
    assert err == [f"image 1: {results[1]['error']}", f"image 2: {results[2]['error']}"]


def test_transform_features_gives_labels_from_the_category_alone(exported):
    """TFMA's path: examples without usable images still get their one-hot labels."""
    _, output, _, loaded = exported
    vocabulary = [v.decode() for v in output.vocabulary_by_name(constants.CATEGORY_VOCABULARY)]
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    constants.CATEGORY_KEY: tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[name.encode()])
                    )
                }
            )
        ).SerializeToString()
        for name in reversed(vocabulary)
    ]
    labels = loaded.signatures["transform_features"](examples=tf.constant(examples))
    np.testing.assert_array_equal(labels[constants.LABEL_KEY].numpy(), np.eye(3)[::-1])

"""The pushed model behind TF Serving's REST and gRPC APIs on 127.0.0.1.

The server is `tensorflow_model_server` where it is on PATH; elsewhere (here: no
binary, no Docker) tests/model_server.py, which takes the same flags and loads the
model as TF Serving does, through a TF1 Session, never tf.saved_model.load. The
clients under test are the project's own: models/serving_client.py (REST, gRPC)
and `python -m models.predict` given the served model's URL.
"""

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
import tensorflow as tf

from models import export, predict, serving_client
from tests import images, serving_memory, tiny_model
from tests.test_serving import SIGNATURE_INPUTS, assert_worst_cases

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test

MODEL = "bookcover"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def model_server(export_dir: str):
    """(REST URL, gRPC target, process) of a model server serving `export_dir`'s folder."""
    rest_port, grpc_port = free_port(), free_port()
    binary = shutil.which("tensorflow_model_server")
    command = [binary] if binary else [sys.executable, "-m", "tests.model_server"]
    process = subprocess.Popen(
        [
            *command,
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_name={MODEL}",
            f"--model_base_path={os.path.dirname(export_dir)}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, "the model server exited"
        try:
            status = requests.get(f"{url}/v1/models/{MODEL}", timeout=2).json()
            if status["model_version_status"][0]["state"] == "AVAILABLE":
                break
        except (requests.ConnectionError, KeyError, ValueError):
            pass
        assert time.monotonic() < deadline, "the model server did not come up"
        time.sleep(0.3)
    try:
        yield url, f"127.0.0.1:{grpc_port}", process
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(exported):
    _, _, export_dir, _ = exported
    with model_server(export_dir) as served:
        yield served


def predict_body(url: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/v1/models/{MODEL}:predict", json=body, timeout=60)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def test_the_served_version_is_the_pushed_one(server, exported):
    url, _, _ = server
    _, _, export_dir, _ = exported
    status = requests.get(f"{url}/v1/models/{MODEL}", timeout=10).json()
    (version,) = status["model_version_status"]
    assert version["version"] == os.path.basename(export_dir)
    metadata = requests.get(f"{url}/v1/models/{MODEL}/metadata", timeout=10).json()
    served = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(served) >= set(SIGNATURE_INPUTS)


@pytest.mark.parametrize("signature", sorted(SIGNATURE_INPUTS))
def test_rest_row_and_columnar_formats_answer_as_the_model_does(server, exported, signature):
    url, _, _ = server
    _, _, export_dir, loaded = exported
    ((name, values),) = SIGNATURE_INPUTS[signature].items()
    direct = loaded.signatures[signature](**{name: tf.constant(values)})
    rows = predict_body(url, {"signature_name": signature, "instances": [b64(v) for v in values]})
    columns = predict_body(url, {"signature_name": signature, "inputs": [b64(v) for v in values]})
    assert rows.status_code == columns.status_code == 200, (rows.text, columns.text)
    predictions, outputs = rows.json()["predictions"], columns.json()["outputs"]
    assert len(predictions) == len(values)
    for output, tensor in direct.items():
        expected = tensor.numpy()
        by_row = [p[output] for p in predictions] if len(direct) > 1 else predictions
        by_column = outputs[output] if len(direct) > 1 else outputs
        for answer in (by_row, by_column):
            if expected.dtype == object:  # strings come back as JSON strings
                assert answer == np.vectorize(bytes.decode)(expected).tolist()
            else:
                np.testing.assert_allclose(answer, expected, atol=1e-5)


def test_rest_client_classifies_as_the_model_does(server, exported):
    url, _, _ = server
    _, _, _, loaded = exported
    covers = SIGNATURE_INPUTS["serving_default"]["images"]
    results = serving_client.predict_rest(url, MODEL, covers)
    direct = loaded.signatures["serving_default"](images=tf.constant(covers))
    assert [r["category"] for r in results] == [c.decode() for c in direct["category"].numpy()]
    np.testing.assert_allclose(
        [r["probabilities"] for r in results], direct["probabilities"].numpy(), atol=1e-5
    )
    assert [len(r["top"]) for r in results] == [3] * len(covers)


def test_grpc_client_classifies_as_the_rest_client_does(server):
    url, target, _ = server
    covers = SIGNATURE_INPUTS["serving_default"]["images"]
    over_grpc = serving_client.predict_grpc(target, MODEL, covers)
    over_rest = serving_client.predict_rest(url, MODEL, covers)
    assert [r["category"] for r in over_grpc] == [r["category"] for r in over_rest]
    assert [[n for n, _ in r["top"]] for r in over_grpc] == [
        [n for n, _ in r["top"]] for r in over_rest
    ]
    np.testing.assert_allclose(
        [r["probabilities"] for r in over_grpc], [r["probabilities"] for r in over_rest], atol=1e-5
    )


def test_refusals_name_their_reason_over_rest_and_grpc(server):
    url, target, _ = server
    bomb = images.bomb_png(20000)
    with pytest.raises(ValueError, match="400") as rest_error:
        serving_client.predict_rest(url, MODEL, [images.jpeg(), bomb])
    with pytest.raises(ValueError, match="INVALID_ARGUMENT") as grpc_error:
        serving_client.predict_grpc(target, MODEL, [bomb])
    for error in (rest_error, grpc_error):
        assert serving_client.error_line(str(error.value)).startswith("image over 40000000 pixels")
    unknown = predict_body(url, {"signature_name": "nope", "instances": [b64(images.jpeg())]})
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]
    missing = requests.post(f"{url}/v1/models/other:predict", json={"instances": []}, timeout=10)
    assert missing.status_code == 404
    # and the server goes on serving
    assert len(serving_client.predict_grpc(target, MODEL, [images.jpeg()])) == 1


def test_rest_client_reports_each_bad_image_in_one_line_and_classifies_the_rest(server, capsys):
    url, _, _ = server
    batch = [images.jpeg(), images.bomb_png(20000), b"junk", images.png()]
    results = serving_client.predict_each(url, MODEL, batch)
    assert [("error" in r) for r in results] == [False, True, True, False]
    assert results[1]["error"].startswith("image over 40000000 pixels")
    assert results[2]["error"].startswith("not an image in an accepted format")
    assert results[0]["category"] in tiny_model.CATEGORIES
    err = capsys.readouterr().err.splitlines()
    assert err == [f"image 1: {results[1]['error']}", f"image 2: {results[2]['error']}"]


def test_predict_command_gives_the_same_answers_from_the_server(server, exported, tmp_path, capsys):
    url, _, _ = server
    _, _, export_dir, _ = exported
    covers = []
    for i, data in enumerate([images.jpeg(color=(30, 30, 220)), images.png(), b"not an image"]):
        covers.append(str(tmp_path / f"cover{i}.img"))
        with open(covers[-1], "wb") as f:
            f.write(data)
    local = predict.main([export_dir, *covers])
    local_err = capsys.readouterr().err
    served = predict.main([f"{url}/v1/models/{MODEL}", *covers])
    served_err = capsys.readouterr().err
    assert [r["category"] for r in served] == [r["category"] for r in local]
    for mine, theirs in zip(served, local, strict=True):
        np.testing.assert_allclose(
            [s for _, s in mine["top"]], [s for _, s in theirs["top"]], atol=1e-5
        )
    assert len(served) == 2
    assert "cover2.img: not a usable image (not an image in an accepted format" in local_err
    (line,) = served_err.splitlines()
    assert line.startswith(f"{covers[2]}: not classified (not an image in an accepted format")
    assert line.endswith("(HTTP 400))")


class ErrorPageProxy:
    """What sits in front of a server in production and fails: every POST gets an HTML
    error page with `status`, as nginx sends when its upstream is down."""

    PAGE = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body></body></html>\r\n"

    def __init__(self, status: int = 502):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(ErrorPageProxy.PAGE)))
                self.end_headers()
                self.wfile.write(ErrorPageProxy.PAGE)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


def test_clients_say_the_status_and_first_line_of_any_failed_answer_and_carry_on(tmp_path, capsys):
    proxy = ErrorPageProxy(502)
    try:
        with pytest.raises(serving_client.ServingError) as e:
            serving_client.predict_rest(proxy.url, MODEL, [images.jpeg()])
        assert (e.value.status, e.value.detail) == ("HTTP 502", "502 Bad Gateway")
        results = serving_client.predict_each(proxy.url, MODEL, [images.jpeg(), images.png()])
        assert results == [{"error": "502 Bad Gateway (HTTP 502)"}] * 2
        assert capsys.readouterr().err.splitlines() == [
            "image 0: 502 Bad Gateway (HTTP 502)",
            "image 1: 502 Bad Gateway (HTTP 502)",
        ]
        covers = [tmp_path / "a.jpg", tmp_path / "b.png"]
        covers[0].write_bytes(images.jpeg())
        covers[1].write_bytes(images.png())
        assert predict.main([f"{proxy.url}/v1/models/{MODEL}", *map(str, covers)]) == []
        assert capsys.readouterr().err.splitlines() == [
            f"{c}: not classified (502 Bad Gateway (HTTP 502))" for c in covers
        ]
    finally:
        proxy.close()
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(serving_client.ServingError) as e:
        serving_client.predict_grpc(closed, MODEL, [images.jpeg()], timeout_s=5)
    assert e.value.status in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    with pytest.raises(serving_client.ServingError) as e:
        serving_client.predict_rest(f"http://{closed}", MODEL, [images.jpeg()], timeout_s=5)
    assert e.value.status == "no answer"


def test_every_worst_case_is_refused_or_served_within_the_memory_bound_by_the_server(server):
    """The worst cases of tests/serving_memory.py, sent over REST; the server's peak
    resident memory is read from /proc after each."""
    url, _, process = server

    def classify(batch: list[bytes]) -> int:
        return len(serving_client.predict_rest(url, MODEL, batch, timeout_s=300))

    assert_worst_cases(
        serving_memory.serve_cases(classify, lambda: serving_memory.peak_mb(process.pid))
    )


def test_bulk_inference_runs_through_the_server_as_batch_tools_call_it(server):
    """A batch job's request: serialized tf.Examples in, rank-2 outputs out."""
    _, target, _ = server
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    examples = SIGNATURE_INPUTS[export.BULK_INFERENCE_SIGNATURE]["examples"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = export.BULK_INFERENCE_SIGNATURE
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples, dtype=tf.string))
    request.output_filter.append("top_categories")
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 60)
    assert list(response.outputs) == ["top_categories"]
    top = tf.make_ndarray(response.outputs["top_categories"])
    assert top.shape == (len(examples), 3)

"""TF Serving clients for the cover classifier (DT_STRING image input): REST and gRPC."""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Sequence

import requests

from bookcover import constants

SIGNATURE = "serving_default"
INPUT = "images"
TITLES = "titles"  # the second input of a cover-and-title model's signature
BODY_LINE_CHARS = 200


class ServingError(ValueError):
    """A request the server did not answer with predictions: `status` is the HTTP
    status ("HTTP 502"), the gRPC code ("UNAVAILABLE") or "no answer"; `detail` is the
    server's error text, or the first line of a body that is not TF Serving's."""

    def __init__(self, status: str, detail: str):
        super().__init__(f"TF Serving answered {status}: {detail}")
        self.status = status
        self.detail = detail


def first_line(text: str) -> str:
    """The first line of a body that has text once markup is dropped (a proxy's HTML
    error page), at most BODY_LINE_CHARS long."""
    for line in text.splitlines():
        line = " ".join(re.sub(r"<[^>]*>", " ", line).split())
        if line:
            return line[:BODY_LINE_CHARS]
    return "(empty body)"


def predict_request(images: Sequence[bytes], titles: Sequence[str] | None = None) -> dict:
    """The body TF Serving expects: row format, binary values as {"b64": ...}; with
    `titles` (one per image), the cover-and-title signature's named inputs."""
    encoded = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
    if titles is None:
        return {"signature_name": SIGNATURE, "instances": encoded}
    _same_count(images, titles)
    return {
        "signature_name": constants.COVER_AND_TITLE_SIGNATURE,
        "instances": [
            {INPUT: image, TITLES: title} for image, title in zip(encoded, titles, strict=True)
        ],
    }


def _same_count(images: Sequence[bytes], titles: Sequence[str]) -> None:
    if len(titles) != len(images):
        raise ValueError(f"{len(images)} images and {len(titles)} titles: give one title each")


def parse_predictions(response: dict) -> list[dict]:
    """Per image: category, top-3 (name, score) pairs and all probabilities."""
    if "error" in response:
        raise ServingError("an error", str(response["error"]))
    return [_result(row) for row in response["predictions"]]


def _result(row: dict) -> dict:
    return {
        "category": row["category"],
        "top": list(zip(row["top_categories"], row["top_scores"], strict=True)),
        "probabilities": row["probabilities"],
    }


def predict_rest(
    base_url: str,
    model_name: str,
    images: Sequence[bytes],
    timeout_s: float = 30.0,
    titles: Sequence[str] | None = None,
) -> list[dict]:
    """POST to <base_url>/v1/models/<model_name>:predict and parse the answer; any other
    answer raises ServingError with its status, checked before the body is read as JSON.
    With `titles`, through a cover-and-title model's serving_cover_and_title."""
    body = predict_request(images, titles)
    try:
        response = requests.post(
            f"{base_url.rstrip('/')}/v1/models/{model_name}:predict",
            json=body,
            timeout=timeout_s,
        )
    except requests.RequestException as e:
        raise ServingError("no answer", first_line(str(e))) from None
    status = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        raise ServingError(status, first_line(response.text)) from None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        raise ServingError(status, str(error) if error else first_line(response.text))
    if not isinstance(body, dict) or not isinstance(body.get("predictions"), list):
        raise ServingError(status, f"not a predict answer: {first_line(response.text)}")
    return parse_predictions(body)


def predict_grpc(
    target: str,
    model_name: str,
    images: Sequence[bytes],
    timeout_s: float = 30.0,
    titles: Sequence[str] | None = None,
) -> list[dict]:
    """PredictionService.Predict at `target` (host:port); the same results as predict_rest."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = SIGNATURE
    request.inputs[INPUT].CopyFrom(
        tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)])
    )
    if titles is not None:
        _same_count(images, titles)
        request.model_spec.signature_name = constants.COVER_AND_TITLE_SIGNATURE
        request.inputs[TITLES].CopyFrom(
            tf.make_tensor_proto(list(titles), dtype=tf.string, shape=[len(titles)])
        )
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout_s)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details() or "") from None
    outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    return [
        _result(
            {
                "category": outputs["category"][i].decode(),
                "top_categories": [name.decode() for name in outputs["top_categories"][i]],
                "top_scores": outputs["top_scores"][i].tolist(),
                "probabilities": outputs["probabilities"][i].tolist(),
            }
        )
        for i in range(len(images))
    ]


def error_line(message: str) -> str:
    """The reason in a TensorFlow or TF Serving error, as one line: the served graph's
    own check message ("image over 40000000 pixels ...") when there is one, else the
    first line that is not TensorFlow's framing ("Graph execution error:", "Detected
    at node ...", its stack traces), without the op's {{...}} prefix."""
    found = re.search(r"assertion failed: \[([^\]]*)\]", message)
    if found:
        return found.group(1)
    for line in message.strip().splitlines():
        line = re.sub(r"^TF Serving answered [^:]*: ", "", line.strip())
        line = re.sub(r"^.*?\{\{function_node [^}]*\}\}\s*", "", line)
        if line and not line.startswith(_FRAMING):
            return line
    return "unknown error"


_FRAMING = (
    "Graph execution error",
    "Detected at node",
    "in user code",
    "File ",
    "<stack traces unavailable>",
)


def failure_line(error: ServingError) -> str:
    """One line for a request that failed: the reason, then the status it came with."""
    return f"{error_line(error.detail)} ({error.status})"


def predict_each(
    base_url: str,
    model_name: str,
    images: Sequence[bytes],
    timeout_s: float = 30.0,
    titles: Sequence[str] | None = None,
) -> list[dict]:
    """One result per image, in order. TF Serving fails a whole batch for one bad image,
    so after a failed batch each image is asked for alone; a bad one gets
    {"error": one line}, printed to stderr, and the rest are still classified."""
    try:
        return predict_rest(base_url, model_name, images, timeout_s, titles)
    except ServingError:
        pass
    results = []
    for i, image in enumerate(images):
        title = None if titles is None else [titles[i]]
        try:
            (result,) = predict_rest(base_url, model_name, [image], timeout_s, title)
        except ServingError as e:
            result = {"error": failure_line(e)}
            print(f"image {i}: {result['error']}", file=sys.stderr)
        results.append(result)
    return results

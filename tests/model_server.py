"""A stand-in for tensorflow_model_server on 127.0.0.1, for machines without the binary.

It takes the binary's flags (`--port`, `--rest_api_port`, `--model_name`,
`--model_base_path`), serves the highest numbered version under the base path as
TF Serving's default policy does, and loads it the way TF Serving does: into a TF1
Session through the MetaGraph's saver (tests/saved_model_loaders.SessionModel),
never through tf.saved_model.load. It answers TF Serving's REST API (model status
and metadata, `:predict` in the row and the columnar format, binary values as
{"b64": ...}, strings out as JSON strings unless the output's name ends in
"_bytes", errors as {"error": ...}) and gRPC's PredictionService.Predict.

    python -m tests.model_server --port 8500 --rest_api_port 8501 \\
        --model_name bookcover --model_base_path outputs/serving_model
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import re
import sys
import threading
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.saved_model_loaders import SessionModel

HOST = "127.0.0.1"
DEFAULT_SIGNATURE = "serving_default"


class RequestError(Exception):
    """A request TF Serving refuses: its HTTP status and gRPC code."""

    def __init__(self, message: str, http_status: int = 400, code=grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.http_status = http_status
        self.code = code


def latest_version(base_path: str) -> int:
    versions = [
        int(name)
        for name in os.listdir(base_path)
        if name.isdigit() and os.path.exists(os.path.join(base_path, name, "saved_model.pb"))
    ]
    if not versions:
        raise SystemExit(f"no servable version under {base_path}")
    return max(versions)


class Servable:
    """The loaded version and how a request reaches it."""

    def __init__(self, model_name: str, base_path: str):
        self.name = model_name
        self.version = latest_version(base_path)
        self.model = SessionModel(os.path.join(base_path, str(self.version)))

    def signature(self, name: str):
        name = name or DEFAULT_SIGNATURE
        if name not in self.model.signatures:
            raise RequestError(
                f'Serving signature name: "{name}" not found in signature def',
                400,
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        return name, self.model.signatures[name]

    def run(self, signature_name: str, inputs: dict, output_filter=None) -> dict:
        name, signature = self.signature(signature_name)
        missing = set(signature.inputs) - set(inputs)
        extra = set(inputs) - set(signature.inputs)
        if missing or extra:
            raise RequestError(
                f"inputs {sorted(inputs)} do not match signature inputs {sorted(signature.inputs)}"
            )
        unknown = set(output_filter or ()) - set(signature.outputs)
        if unknown:
            raise RequestError(f"output tensor alias not found in signature: {sorted(unknown)}")
        try:
            return self.model.run(name, inputs, list(output_filter or ()) or None)
        except tf.errors.OpError as e:
            raise RequestError(e.message, 400, _grpc_code(e)) from None


def _grpc_code(error: tf.errors.OpError) -> grpc.StatusCode:
    """The gRPC status of TensorFlow's error (they share their code numbers)."""
    codes = (code for code in grpc.StatusCode if code.value[0] == error.error_code)
    return next(codes, grpc.StatusCode.UNKNOWN)


# --- REST ----------------------------------------------------------------------


def _from_json(value, dtype: tf.DType):
    """A JSON value as TF Serving reads it for a tensor of `dtype`."""
    if isinstance(value, list):
        return [_from_json(v, dtype) for v in value]
    if dtype == tf.string:
        if isinstance(value, dict):
            if set(value) != {"b64"}:
                raise RequestError('JSON object for a string must be {"b64": ...}')
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError):
                raise RequestError("Unable to base64 decode") from None
        if not isinstance(value, str):
            raise RequestError(f"JSON value {value!r} is not a string for a DT_STRING input")
        return value.encode()
    if isinstance(value, (dict, str)):
        raise RequestError(f"JSON value {value!r} is not a number for a {dtype.name} input")
    return value


def _to_json(name: str, value):
    if isinstance(value, np.ndarray):
        return [_to_json(name, v) for v in value]
    if isinstance(value, bytes):
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode("ascii")}
        return value.decode("utf-8", "replace")
    return value.item() if isinstance(value, np.generic) else value


def _array(values, dtype: tf.DType) -> np.ndarray:
    if dtype == tf.string:
        return np.array(values, dtype=object)
    return np.array(values, dtype=dtype.as_numpy_dtype)


def rest_inputs(body: dict, signature) -> tuple[dict, bool]:
    """The named input arrays of a :predict body, and whether it is in the row format."""
    dtypes = {name: tf.as_dtype(info.dtype) for name, info in signature.inputs.items()}
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("JSON body must hold one of 'instances' (row) or 'inputs' (columnar)")
    if "inputs" in body:
        value = body["inputs"]
        named = value if isinstance(value, dict) and set(value) <= set(dtypes) and value else None
        if named is None:
            if len(dtypes) != 1:
                raise RequestError("'inputs' must name each input of a multi-input signature")
            named = {next(iter(dtypes)): value}
        return {k: _array(_from_json(v, dtypes[k]), dtypes[k]) for k, v in named.items()}, False
    instances = body["instances"]
    if not isinstance(instances, list):
        raise RequestError("'instances' must be a list")
    columns: dict[str, list] = {name: [] for name in dtypes}
    for instance in instances:
        if isinstance(instance, dict) and set(instance) != {"b64"}:
            if set(instance) != set(dtypes):
                raise RequestError(f"instance keys {sorted(instance)} are not {sorted(dtypes)}")
            for name, value in instance.items():
                columns[name].append(_from_json(value, dtypes[name]))
        elif len(dtypes) == 1:
            columns[next(iter(dtypes))].append(_from_json(instance, next(iter(dtypes.values()))))
        else:
            raise RequestError("each instance of a multi-input signature must be an object")
    return {name: _array(values, dtypes[name]) for name, values in columns.items()}, True


def rest_answer(outputs: dict, row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return {"outputs": _to_json(name, value)}
        return {"outputs": {name: _to_json(name, value) for name, value in outputs.items()}}
    sizes = {value.shape[0] if value.ndim else None for value in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise RequestError("output tensors of the row format must share their 0th dimension")
    (size,) = sizes
    rows = []
    for i in range(size):
        row = {name: _to_json(name, value[i]) for name, value in outputs.items()}
        rows.append(next(iter(row.values())) if len(row) == 1 else row)
    return {"predictions": rows}


PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
STATUS_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(/metadata)?$")


def make_rest_handler(servable: Servable):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, answer: dict) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _check_model(self, name: str, version: str | None) -> None:
            if name != servable.name or (version and int(version) != servable.version):
                raise RequestError(
                    f"Servable not found for request: {name} {version or 'Latest'}",
                    404,
                    grpc.StatusCode.NOT_FOUND,
                )

        def do_GET(self):  # noqa: N802 - http.server's naming
            found = STATUS_PATH.match(self.path)
            try:
                if not found:
                    raise RequestError(f"Malformed request: GET {self.path}", 404)
                self._check_model(found.group(1), found.group(2))
                if found.group(3):
                    signatures = {
                        name: json_format.MessageToDict(signature)
                        for name, signature in servable.model.signatures.items()
                    }
                    answer = {
                        "model_spec": {"name": servable.name, "version": str(servable.version)},
                        "metadata": {"signature_def": {"signature_def": signatures}},
                    }
                else:
                    answer = {
                        "model_version_status": [
                            {
                                "version": str(servable.version),
                                "state": "AVAILABLE",
                                "status": {"error_code": "OK", "error_message": ""},
                            }
                        ]
                    }
                self._send(200, answer)
            except RequestError as e:
                self._send(e.http_status, {"error": str(e)})

        def do_POST(self):  # noqa: N802 - http.server's naming
            body_bytes = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            found = PREDICT_PATH.match(self.path)
            try:
                if not found:
                    raise RequestError(f"Malformed request: POST {self.path}", 404)
                self._check_model(found.group(1), found.group(2))
                try:
                    body = json.loads(body_bytes)
                except ValueError as e:
                    raise RequestError(f"JSON Parse error: {e}") from None
                if not isinstance(body, dict):
                    raise RequestError("JSON body must be an object")
                name, signature = servable.signature(body.get("signature_name", ""))
                inputs, row_format = rest_inputs(body, signature)
                self._send(200, rest_answer(servable.run(name, inputs), row_format))
            except RequestError as e:
                self._send(e.http_status, {"error": str(e)})

        def log_message(self, *args):
            pass

    return Handler


# --- gRPC ----------------------------------------------------------------------


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, servable: Servable):
        self.servable = servable

    def Predict(self, request, context):  # noqa: N802 - gRPC's naming
        spec = request.model_spec
        try:
            if spec.name != self.servable.name or (
                spec.HasField("version") and spec.version.value != self.servable.version
            ):
                raise RequestError(
                    f"Servable not found for request: {spec.name}", 404, grpc.StatusCode.NOT_FOUND
                )
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            name, _ = self.servable.signature(spec.signature_name)
            outputs = self.servable.run(name, inputs, list(request.output_filter))
        except RequestError as e:
            context.abort(e.code, str(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.servable.name
        response.model_spec.version.value = self.servable.version
        response.model_spec.signature_name = name
        for output_name, value in outputs.items():
            response.outputs[output_name].CopyFrom(tf.make_tensor_proto(value))
        return response


def serve(args: argparse.Namespace) -> None:
    servable = Servable(args.model_name, args.model_base_path)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(servable), grpc_server
    )
    grpc_port = grpc_server.add_insecure_port(f"{HOST}:{args.port}")
    grpc_server.start()
    rest = http.server.ThreadingHTTPServer((HOST, args.rest_api_port), make_rest_handler(servable))
    print(
        f"serving {servable.name} version {servable.version}: "
        f"gRPC on {HOST}:{grpc_port}, REST on {HOST}:{rest.server_address[1]}",
        flush=True,
    )
    threading.Thread(target=grpc_server.wait_for_termination, daemon=True).start()
    try:
        rest.serve_forever()
    finally:
        grpc_server.stop(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.model_server", description=__doc__)
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free one)")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port")
    parser.add_argument("--model_name", default="default")
    parser.add_argument("--model_base_path", required=True)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

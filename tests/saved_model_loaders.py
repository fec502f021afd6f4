"""The exported SavedModel through each loader its consumers use: TF2's Python loader,
a TF1 Session (TF Serving's C++ LoadSavedModel restores and runs a model the same
way: variables through the MetaGraph's saver, tensors by their SignatureDef names),
and the saved_model_cli command."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

SERVE_TAG = "serve"


class SessionModel:
    """A SavedModel loaded as TF Serving loads it, run by signature and tensor names."""

    def __init__(self, export_dir: str):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        meta_graph = tf.compat.v1.saved_model.loader.load(self.session, [SERVE_TAG], export_dir)
        self.signatures = dict(meta_graph.signature_def)

    def run(
        self, signature_name: str, inputs: dict, output_filter: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The signature's outputs (or those in `output_filter`) for inputs by alias;
        KeyError for an unknown signature, input or output."""
        signature = self.signatures[signature_name]
        unknown = set(inputs) - set(signature.inputs)
        if unknown or len(inputs) != len(signature.inputs):
            raise KeyError(
                f"signature {signature_name} takes {sorted(signature.inputs)}, got {sorted(inputs)}"
            )
        names = output_filter or list(signature.outputs)
        fetches = {name: signature.outputs[name].name for name in names}
        feeds = {signature.inputs[name].name: value for name, value in inputs.items()}
        return self.session.run(fetches, feeds)

    def close(self) -> None:
        self.session.close()


def run_tf2(export_dir: str, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
    signature = tf.saved_model.load(export_dir).signatures[signature_name]
    outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def run_tf1(export_dir: str, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
    model = SessionModel(export_dir)
    try:
        return model.run(signature_name, inputs)
    finally:
        model.close()


def run_cli(
    export_dir: str, signature_name: str, inputs: dict, work_dir: str
) -> dict[str, np.ndarray]:
    """`saved_model_cli run`, inputs as .npy files, outputs read back from --outdir."""
    os.makedirs(work_dir, exist_ok=True)
    arguments = []
    for name, value in inputs.items():
        path = os.path.join(work_dir, f"{name}.npy")
        np.save(path, np.asarray(value, dtype=object), allow_pickle=True)
        arguments.append(f"{name}={path}")
    out_dir = os.path.join(work_dir, "out")
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    done = subprocess.run(
        [
            cli,
            "run",
            "--dir",
            export_dir,
            "--tag_set",
            SERVE_TAG,
            "--signature_def",
            signature_name,
            "--inputs",
            ";".join(arguments),
            "--outdir",
            out_dir,
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"saved_model_cli failed:\n{done.stderr[-3000:]}")
    return {
        name[: -len(".npy")]: np.load(os.path.join(out_dir, name), allow_pickle=True)
        for name in os.listdir(out_dir)
    }


def assert_same_outputs(first: dict, second: dict) -> None:
    """The same output names; strings equal, numbers within float tolerance."""
    assert sorted(first) == sorted(second)
    for name, value in first.items():
        value, other = np.asarray(value), np.asarray(second[name])
        assert value.shape == other.shape, name
        if value.dtype == object or value.dtype.kind in "SU":
            np.testing.assert_array_equal(value, other, err_msg=name)
        else:
            np.testing.assert_allclose(value, other, atol=1e-5, err_msg=name)

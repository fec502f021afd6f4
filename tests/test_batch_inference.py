"""Batch inference with TFX's own tool: the real BulkInferrer executor (tfx_bsl's
RunInference, on a TF1 Session) over the pushed model's bulk_inference signature."""

import glob
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.components.bulk_inferrer import executor as bulk_inferrer_executor
from tfx.proto import bulk_inferrer_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from bookcover import constants
from models import export
from tests import tiny_model

pytestmark = pytest.mark.pipeline  # runs a pipeline, a TFX step or training: make test


def test_bulk_inferrer_classifies_every_example_as_the_model_does(exported, tmp_path):
    _, _, export_dir, loaded = exported
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    shutil.copytree(export_dir, os.path.join(model.uri, "Format-Serving"))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["test"])
    os.makedirs(os.path.join(examples.uri, "Split-test"))
    rows = tiny_model.raw_rows(9)
    tiny_model.write_tfrecords(os.path.join(examples.uri, "Split-test", "data.gz"), rows)
    result = standard_artifacts.InferenceResult()
    result.uri = str(tmp_path / "inference")
    os.makedirs(result.uri)

    bulk_inferrer_executor.Executor().Do(
        {"examples": [examples], "model": [model]},
        {"inference_result": [result]},
        {
            "model_spec": proto_utils.proto_to_json(
                bulk_inferrer_pb2.ModelSpec(model_signature_name=[export.BULK_INFERENCE_SIGNATURE])
            ),
            "data_spec": proto_utils.proto_to_json(bulk_inferrer_pb2.DataSpec()),
        },
    )

    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for path in glob.glob(os.path.join(result.uri, "*.gz"))
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP")
    ]
    assert len(logs) == len(rows)
    covers = [row[constants.IMAGE_KEY][0] for row in rows]
    direct = loaded.signatures["serving_default"](images=tf.constant(covers))
    expected = {
        cover: (top.tolist(), scores)
        for cover, top, scores in zip(
            covers, direct["top_categories"].numpy(), direct["top_scores"].numpy(), strict=True
        )
    }
    for log in logs:
        request = log.predict_log.request.inputs["examples"].string_val[0]
        cover = tf.train.Example.FromString(request).features.feature[constants.IMAGE_KEY]
        outputs = log.predict_log.response.outputs
        top, scores = expected[cover.bytes_list.value[0]]
        assert tf.make_ndarray(outputs["top_categories"]).tolist() == [top]
        np.testing.assert_allclose(tf.make_ndarray(outputs["top_scores"]), [scores], atol=1e-5)

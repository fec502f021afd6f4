"""CoverPusher: TFX's Pusher, published atomically, with the statistics of the data the model
learnt from.

A version appears in the serving directory in one rename, complete: the model
and its statistics are copied under a name TF Serving ignores (not all digits),
then renamed to the version number. A push killed mid-copy leaves only that
ignored name, which the next push removes. Version numbers are the push's
UNIX time, or one more than the newest version when that is not later, so two
pushes never share one. The statistics (under assets.extra/, which TF Serving
ignores) are what the next run's DataGate compares its data with (drift).
"""

from __future__ import annotations

import logging
import os
import time
import uuid

import tensorflow as tf
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, proto_utils

from bookcover import constants, split_statistics
from bookcover.model_versions import STAGING_PREFIX, versions

STATISTICS_KEY = "statistics"
# A staging directory this old belongs to a push that died: the next push removes it.
STALE_STAGING_S = 3600


class CoverPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
    }


def publish(model_dir: str, statistics_file: str | None, serving_dir: str) -> tuple[str, str]:
    """Copies the model (and its statistics) into `serving_dir` as a new version, visible
    only once complete; returns (version, its path)."""
    fileio.makedirs(serving_dir)
    remove_stale_staging(serving_dir)
    staging = os.path.join(serving_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    io_utils.copy_dir(model_dir, staging)
    if statistics_file:
        target = os.path.join(staging, constants.BASELINE_STATISTICS)
        fileio.makedirs(os.path.dirname(target))
        fileio.copy(statistics_file, target, overwrite=True)
    while True:
        version = max([int(time.time()), *(v + 1 for v in versions(serving_dir))])
        path = os.path.join(serving_dir, str(version))
        try:
            fileio.rename(staging, path, overwrite=False)
        except tf.errors.OpError:
            if not fileio.exists(path):
                raise
            continue  # another push took this number between the listing and the rename
        return str(version), path


def remove_stale_staging(serving_dir: str, older_than_s: float = STALE_STAGING_S) -> list[str]:
    """Removes staging directories of pushes that died; returns what it removed."""
    removed = []
    for name in fileio.listdir(serving_dir):
        name = name.rstrip("/")
        path = os.path.join(serving_dir, name)
        if not name.startswith(STAGING_PREFIX):
            continue
        age = time.time() - fileio.stat(path).mtime_nsec / 1e9
        if age >= older_than_s:
            fileio.rmtree(path)
            removed.append(path)
            logging.info("CoverPusher: removed %s, left by a push that did not finish", path)
    return removed


class Executor(pusher_executor.Executor):
    """TFX's Pusher, publishing through `publish`, with the train split's statistics."""

    # TFX calls this.
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("CoverPusher pushes to a filesystem destination only")
        statistics_uri = artifact_utils.get_single_uri(input_dict[STATISTICS_KEY])
        model_dir = self.GetModelPath(input_dict)
        version, path = publish(
            model_dir,
            split_statistics.split_file(statistics_uri, "train"),
            destination.filesystem.base_directory,
        )
        io_utils.copy_dir(model_dir, pushed.uri)  # TFX's archive copy in the artifact
        self._MarkPushed(pushed, pushed_destination=path, pushed_version=version)
        logging.info("CoverPusher: model published as %s", path)


class CoverPusher(pusher_component.Pusher):
    """Pusher(model, model_blessing, push_destination) plus the data's statistics."""

    SPEC_CLASS = CoverPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, statistics, push_destination):
        spec = CoverPusherSpec(
            model=model,
            model_blessing=model_blessing,
            statistics=statistics,
            push_destination=push_destination,
            custom_config="null",
            pushed_model=channel.Channel(type=standard_artifacts.PushedModel),
        )
        base_component.BaseComponent.__init__(self, spec=spec)

"""CoverPusher: TFX's Pusher that also pushes the statistics of the data the model learnt from.

The next run's DataGate compares its data with these (drift), whatever the
orchestrator: they travel with the pushed model, under assets.extra/, which
TF Serving ignores.
"""

from __future__ import annotations

import os

from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter

from bookcover import constants

STATISTICS_KEY = "statistics"


class CoverPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
    }


class Executor(pusher_executor.Executor):
    """Pushes as TFX does; when it pushed, copies the train split's statistics beside it."""

    # TFX calls this.
    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 - TFX's name
        super().Do(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if int(pushed.get_custom_property("pushed") or 0) != 1:
            return
        destination = pushed.get_custom_property("pushed_destination")
        statistics_uri = artifact_utils.get_single_uri(input_dict[STATISTICS_KEY])
        source = os.path.join(statistics_uri, "Split-train", "FeatureStats.pb")
        target = os.path.join(destination, constants.BASELINE_STATISTICS)
        fileio.makedirs(os.path.dirname(target))
        fileio.copy(source, target, overwrite=True)


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

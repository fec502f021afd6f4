"""DataGate: the component that stops the run before Transform on anomalies, skew or drift."""

from __future__ import annotations

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from bookcover import DataVerdict
from components.data_gate.executor import Executor


class DataGateSpec(ComponentSpec):
    PARAMETERS = {
        "allow_anomalies": ExecutionParameter(type=int),
        "serving_model_dir": ExecutionParameter(type=str),
        "custom_validations": ExecutionParameter(type=str),
        # 1: the model reads titles (inputs=cover_title), so empty ones are a finding.
        "titles_read": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        # The latest push: read for nothing, there so that a new push changes the cache
        # key and the drift check runs against the newly pushed model's data.
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel, optional=True),
    }
    OUTPUTS = {"verdict": ChannelParameter(type=DataVerdict)}


class DataGate(base_component.BaseComponent):
    """Stops the pipeline on anomalies, skew or drift; Transform waits for it."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        statistics: channel.BaseChannel,
        schema: channel.BaseChannel,
        anomalies: channel.BaseChannel,
        serving_model_dir: str,
        allow_anomalies: bool = False,
        custom_validations: str = "",
        pushed_model: channel.BaseChannel | None = None,
        titles_read: bool = False,
    ):
        super().__init__(
            spec=DataGateSpec(
                statistics=statistics,
                schema=schema,
                anomalies=anomalies,
                pushed_model=pushed_model,
                serving_model_dir=serving_model_dir,
                allow_anomalies=int(allow_anomalies),
                custom_validations=custom_validations,
                titles_read=int(titles_read),
                verdict=channel.Channel(type=DataVerdict),
            )
        )

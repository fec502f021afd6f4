"""ClassifyCatalogue: the step after the Pusher that classifies the CSV's rows without a
category with the model just pushed (local_runner.py --classify-uncategorised)."""

from __future__ import annotations

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from bookcover import CataloguePredictions
from components.catalogue.classify import CatalogueSettings
from components.catalogue.executor import Executor


class ClassifyCatalogueSpec(ComponentSpec):
    PARAMETERS = {
        "books_csv": ExecutionParameter(type=str),
        "settings": ExecutionParameter(type=str),  # CatalogueSettings as JSON
    }
    INPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS = {"predictions": ChannelParameter(type=CataloguePredictions)}


class ClassifyCatalogue(base_beam_component.BaseBeamComponent):
    """Predictions for a books CSV's covers from the pushed model, as an artifact."""

    SPEC_CLASS = ClassifyCatalogueSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self, pushed_model: channel.BaseChannel, books_csv: str, settings: CatalogueSettings
    ):
        import json

        super().__init__(
            spec=ClassifyCatalogueSpec(
                pushed_model=pushed_model,
                books_csv=books_csv,
                settings=json.dumps(settings.to_dict(), sort_keys=True),
                predictions=channel.Channel(type=CataloguePredictions),
            )
        )

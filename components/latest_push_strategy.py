"""DataGate's view of the latest push: the newest PushedModel, or none before the first."""

from __future__ import annotations

from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy


class LatestOrNoneStrategy(LatestArtifactStrategy):
    """LatestArtifactStrategy that resolves to no artifact when there is none yet, where
    TFX's own fails its resolver step (and logs a traceback) on a first run. KFP's
    compiler knows only TFX's own, so Kubeflow runs LatestArtifactStrategy."""

    def resolve_artifacts(self, store, input_dict):
        return self._resolve(input_dict)

"""The Evaluator's baseline: the latest blessed model other than the candidate itself."""

from __future__ import annotations

from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)

CANDIDATE_KEY = "candidate"
MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"


class PreviousBlessedModelStrategy(LatestBlessedModelStrategy):
    """LatestBlessedModelStrategy that skips the candidate model itself.

    Plain LatestBlessedModelStrategy, on a rerun with nothing changed, returns
    the very model it is to be compared with, which changes the Evaluator's
    inputs and defeats TFX's cache. Comparing a model with itself proves
    nothing, so the candidate (the Trainer's output, a channel of this
    resolver) is left out.
    """

    def resolve_artifacts(self, store, input_dict):
        candidates = input_dict.get(CANDIDATE_KEY, [])
        excluded = {artifact.id for artifact in candidates}
        models = [m for m in input_dict.get(MODEL_KEY, []) if m.id not in excluded]
        blessings = input_dict.get(BLESSING_KEY, [])
        result = {MODEL_KEY: [], BLESSING_KEY: []}
        if models and blessings:
            result = self._resolve(
                {MODEL_KEY: models, BLESSING_KEY: blessings}, MODEL_KEY, BLESSING_KEY
            )
        result[CANDIDATE_KEY] = candidates
        return result

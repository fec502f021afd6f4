"""The Evaluator's baseline: the latest blessed model that is not the candidate itself."""

from tfx.types import standard_artifacts

from components import previous_blessed_model_strategy as strategy


def model(model_id: int):
    artifact = standard_artifacts.Model()
    artifact.id = model_id
    return artifact


def blessing(model_id: int, blessed: bool):
    artifact = standard_artifacts.ModelBlessing()
    artifact.set_int_custom_property("current_model_id", model_id)
    artifact.set_int_custom_property("blessed", int(blessed))
    return artifact


def resolve(models, blessings, candidate):
    return strategy.PreviousBlessedModelStrategy().resolve_artifacts(
        None,
        {
            strategy.MODEL_KEY: models,
            strategy.BLESSING_KEY: blessings,
            strategy.CANDIDATE_KEY: candidate,
        },
    )


def test_the_candidate_is_never_its_own_baseline():
    models = [model(1), model(2), model(3)]
    blessings = [blessing(1, True), blessing(2, False), blessing(3, True)]
    # Model 3, blessed by an earlier run, is the candidate again (a cached rerun).
    result = resolve(models, blessings, candidate=[models[2]])
    assert [m.id for m in result[strategy.MODEL_KEY]] == [1]
    assert result[strategy.BLESSING_KEY][0].get_int_custom_property("current_model_id") == 1
    assert result[strategy.CANDIDATE_KEY] == [models[2]]


def test_the_latest_blessed_other_model_wins_and_unblessed_ones_never_do():
    models = [model(1), model(2), model(3), model(4)]
    blessings = [blessing(1, True), blessing(2, True), blessing(3, False)]
    result = resolve(models, blessings, candidate=[models[3]])
    assert [m.id for m in result[strategy.MODEL_KEY]] == [2]


def test_no_blessed_model_means_no_baseline():
    models = [model(1), model(2)]
    result = resolve(models, [blessing(1, False)], candidate=[models[1]])
    assert result[strategy.MODEL_KEY] == [] and result[strategy.BLESSING_KEY] == []
    assert resolve([], [], candidate=[])[strategy.MODEL_KEY] == []

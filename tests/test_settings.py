"""The typed settings that travel from a runner to the steps: unknown keys refused."""

import json

import pytest

from bookcover.downloader import FetchConfig
from components.cover_example_gen.settings import IngestSettings
from models import hyperparameters
from models.settings import TRAINER_ONLY, TUNER_ONLY, TrainingSettings
from pipeline import presets


def test_training_settings_round_trip_through_json():
    settings = TrainingSettings(
        learning_rates=(1e-3,), first_filters=(8, 16), batch_size=4, model_options={"mixup": 0}
    )
    data = json.loads(json.dumps(settings.to_dict()))
    assert TrainingSettings.from_dict(data) == settings
    # An int for a float option is the float it means; every option is present.
    assert settings.model_options["mixup"] == 0.0
    assert set(settings.model_options) == set(hyperparameters.MODEL_OPTION_NAMES)


def test_a_misspelt_key_is_refused_by_name_not_taken_as_the_default():
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'batchsize'; known: learning_rates"):
        TrainingSettings.from_dict({"batchsize": 8})
    with pytest.raises(ValueError, match="unknown model option 'lable_smoothing'"):
        TrainingSettings.from_dict({"model_options": {"lable_smoothing": 0.1}})
    with pytest.raises(ValueError, match="model option augment takes a bool"):
        TrainingSettings(model_options={"augment": "yes"})
    with pytest.raises(ValueError, match="model_options takes an object of NAME: VALUE"):
        presets.resolve("default", model_options=["augment"])
    with pytest.raises(ValueError, match="model_options takes an object of NAME: VALUE"):
        TrainingSettings.from_dict({"model_options": ["augment"]})
    with pytest.raises(ValueError, match="mixed_precision 'half'"):
        TrainingSettings(mixed_precision="half")
    with pytest.raises(ValueError, match=r"ingest settings: unknown key\(s\) 'top_n'"):
        IngestSettings.from_dict({"top_n": 3})
    with pytest.raises(ValueError, match=r"fetch: unknown key\(s\) 'timeout'"):
        IngestSettings.from_dict({"fetch": {"timeout": 3}})


def test_each_step_gets_the_keys_it_reads_and_the_trainer_epochs_do_not_reach_the_tuner():
    settings = TrainingSettings(train_epochs=7, tuner_epochs=2, backup_dir="/b")
    tuner, trainer = settings.for_tuner(), settings.for_trainer()
    assert not set(tuner) & set(TRAINER_ONLY) and not set(trainer) & set(TUNER_ONLY)
    assert tuner["tuner_epochs"] == 2 and trainer["train_epochs"] == 7
    # Changing the Trainer's epochs leaves the Tuner's config, its cache key, as it was.
    assert TrainingSettings(train_epochs=8).for_tuner() == TrainingSettings().for_tuner()
    assert TrainingSettings.from_dict(trainer).train_epochs == 7


def test_a_preset_is_one_object_and_its_overrides_apply_one_by_one():
    seed = hyperparameters.PRESETS["seed"]
    resolved = presets.resolve("seed", first_filters=[8], model_options={"augment": True})
    assert resolved.learning_rates == seed.learning_rates and resolved.first_filters == (8,)
    assert resolved.batch_size == seed.batch_size
    assert resolved.model_options == {**seed.model_options, "augment": True}
    assert resolved.train_epochs == hyperparameters.TRAIN_EPOCHS
    embedded = presets.resolve("default", embedded=True, tuner_epochs=None)
    assert embedded.tuner_epochs == hyperparameters.TUNER_EPOCHS  # None: not given
    with pytest.raises(ValueError, match="unknown model preset 'sed'; known: default, seed"):
        presets.resolve("sed")
    with pytest.raises(TypeError):  # presets cannot be edited in place
        seed.model_options["augment"] = True


def test_ingest_settings_round_trip_with_their_fetch_settings():
    settings = IngestSettings(
        top_k=None, min_books=5, fetch=FetchConfig(connections=3, allowed_hosts=("a.example",))
    )
    assert IngestSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_a_flag_or_key_not_given_takes_the_settings_own_default():
    """No runner decides a default again: what is not given is the settings class's."""
    import local_runner
    from kubeflow import runner

    args = local_runner.parse_args(["--books-csv", "b.csv"])
    local = local_runner.ingest_settings_from(args, 12, "/out")
    cluster = runner.ingest_settings({"categories": 12}, "gs://b/r")
    default = IngestSettings()
    for ingest in (local, cluster):
        assert (ingest.top_k, ingest.per_class, ingest.balance) == (
            default.top_k,
            default.per_class,
            default.balance,
        )
        assert ingest.max_failure_share == default.max_failure_share
        for name in ("connections", "deadline_s", "cover_format", "max_bytes"):
            assert getattr(ingest.fetch, name) == getattr(default.fetch, name), name
    for training in (
        local_runner.training_settings_from(args),
        runner.training_settings({}, "gs://b/r"),
    ):
        plain = TrainingSettings()
        assert (training.tuner_epochs, training.mixed_precision) == (
            plain.tuner_epochs,
            plain.mixed_precision,
        )
        assert (training.batch_size, training.train_epochs) == (
            plain.batch_size,
            plain.train_epochs,
        )
        assert training.model_options == plain.model_options

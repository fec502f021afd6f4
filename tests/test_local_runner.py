"""local_runner's flags: the documented ones exist and reach the settings."""

import os

import pytest

import local_runner
from pipeline import configs


def test_defaults_are_the_configured_ones():
    args = local_runner.parse_args([])
    assert args.books_csv is None
    assert local_runner.grid_from(args) == (configs.LEARNING_RATES, configs.FIRST_FILTERS)
    seed = local_runner.parse_args(["--model-preset", "seed", "--first-filters", "8"])
    assert local_runner.grid_from(seed) == (configs.SEED_LEARNING_RATES, (8,))
    assert args.direct_num_workers == configs.DIRECT_NUM_WORKERS


def test_batch_size_follows_the_preset_unless_given():
    default, seed = local_runner.parse_args([]), local_runner.parse_args(["--model-preset", "seed"])
    assert local_runner.batch_size_from(default, embedded=False) == configs.BATCH_SIZE == 64
    assert local_runner.batch_size_from(seed, embedded=False) == configs.SEED_BATCH_SIZE == 128
    assert local_runner.batch_size_from(seed, embedded=True) == configs.EMBEDDED_BATCH_SIZE
    given = local_runner.parse_args(["--model-preset", "seed", "--batch-size", "16"])
    assert local_runner.batch_size_from(given, embedded=False) == 16


def test_epochs_follow_the_data_unless_given():
    default = local_runner.parse_args([])
    assert local_runner.epochs_from(default, embedded=False) == configs.TRAIN_EPOCHS
    assert local_runner.epochs_from(default, embedded=True) == configs.EMBEDDED_TRAIN_EPOCHS
    given = local_runner.parse_args(["--epochs", "7"])
    assert local_runner.epochs_from(given, embedded=True) == 7


def test_every_documented_flag_parses():
    args = local_runner.parse_args(
        [
            "--books-csv",
            "b.csv",
            "--categories",
            "5",
            "--min-books",
            "30",
            "--per-class",
            "9",
            "--epochs",
            "2",
            "--tuner-epochs",
            "1",
            "--learning-rates",
            "1e-3",
            "5e-4",
            "--first-filters",
            "16",
            "--batch-size",
            "8",
            "--accuracy-floor",
            "0.3",
            "--connections",
            "4",
            "--download-deadline",
            "12.5",
            "--output-dir",
            "o",
            "--direct-num-workers",
            "1",
            "--no-balance",
        ]
    )
    assert args.balance is False
    assert args.download_deadline == 12.5
    assert (args.categories, args.min_books, args.per_class) == (5, 30, 9)
    assert args.learning_rates == [1e-3, 5e-4] and args.first_filters == [16]


def test_help_documents_the_flags(capsys):
    with pytest.raises(SystemExit):
        local_runner.parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--books-csv",
        "--categories",
        "--per-class",
        "--epochs",
        "--output-dir",
        "--direct-num-workers",
        "--learning-rates",
        "--first-filters",
        "--min-books",
    ):
        assert flag in text


def test_model_preset_and_options_reach_the_model_options():
    args = local_runner.parse_args(
        [
            "--model-preset",
            "seed",
            "--model-option",
            "augment=true",
            "--model-option",
            "head=gap",
            "--model-option",
            "dropout=1",
            "--mixed-precision",
            "float32",
        ]
    )
    options = local_runner.model_options_from(args)
    assert options == {
        **configs.SEED_MODEL_OPTIONS,
        "augment": True,
        "head": "gap",
        "dropout": 1.0,
    }
    assert args.mixed_precision == "float32"
    assert local_runner.model_options_from(local_runner.parse_args([])) == configs.MODEL_OPTIONS


@pytest.mark.parametrize(
    "option, message",
    [
        ("augmnet=true", "NAME one of"),
        ("augment", "NAME one of"),
        ("augment=maybe", "augment takes a bool"),
        ("dense_units_1=true", "dense_units_1 takes a int"),
    ],
)
def test_bad_model_options_are_refused_with_the_reason(option, message, capsys):
    with pytest.raises(SystemExit):
        local_runner.parse_args(["--model-option", option])
    assert message in capsys.readouterr().err


def test_direct_runner_args_spare_tfx_its_ephemeral_package():
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    from tfx.utils import dependency_utils

    from pipeline.pipeline import direct_runner_args

    args = direct_runner_args(3)
    options = PipelineOptions(args).view_as(DirectOptions)
    assert (options.direct_running_mode, options.direct_num_workers) == ("multi_processing", 3)
    # TFX appends --extra_package=<a freshly built sdist of itself> unless the
    # arguments already name the workers' dependencies.
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert os.path.isfile(configs.REQUIREMENTS_FILE)

"""local_runner's flags: the documented ones exist and reach the settings."""

import os

import pytest

import local_runner
from models import hyperparameters
from pipeline import configs


def settings(argv):
    return local_runner.training_settings_from(local_runner.parse_args(argv))


def test_defaults_are_the_configured_ones():
    args = local_runner.parse_args([])
    assert args.books_csv is None
    default = settings(["--books-csv", "b.csv"])
    assert (default.learning_rates, default.first_filters) == (
        hyperparameters.PRESETS["default"].learning_rates,
        hyperparameters.PRESETS["default"].first_filters,
    )
    seed = settings(["--model-preset", "seed", "--first-filters", "8"])
    assert (seed.learning_rates, seed.first_filters) == (hyperparameters.SEED_LEARNING_RATES, (8,))
    assert args.direct_num_workers == configs.DIRECT_NUM_WORKERS


def test_batch_size_follows_the_preset_unless_given():
    real = ["--books-csv", "b.csv"]
    assert settings(real).batch_size == hyperparameters.PRESETS["default"].batch_size == 64
    assert (
        settings([*real, "--model-preset", "seed"]).batch_size
        == hyperparameters.PRESETS["seed"].batch_size
        == 128
    )
    assert settings(["--model-preset", "seed"]).batch_size == configs.EMBEDDED_BATCH_SIZE
    assert settings([*real, "--model-preset", "seed", "--batch-size", "16"]).batch_size == 16


def test_epochs_follow_the_data_unless_given():
    assert settings(["--books-csv", "b.csv"]).train_epochs == hyperparameters.TRAIN_EPOCHS
    assert settings([]).train_epochs == configs.EMBEDDED_TRAIN_EPOCHS
    assert settings(["--epochs", "7"]).train_epochs == 7


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
    options = local_runner.training_settings_from(args).model_options
    assert options == {
        **hyperparameters.SEED_MODEL_OPTIONS,
        "augment": True,
        "head": "gap",
        "dropout": 1.0,
    }
    assert args.mixed_precision == "float32"
    assert settings([]).model_options == hyperparameters.DEFAULT_MODEL_OPTIONS


@pytest.mark.parametrize(
    "option, message",
    [
        ("augmnet=true", "unknown model option 'augmnet'; known: architecture"),
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
    alone = PipelineOptions(direct_runner_args(1)).view_as(DirectOptions)
    assert (alone.direct_running_mode, alone.direct_num_workers) == ("in_memory", 1)
    # TFX appends --extra_package=<a freshly built sdist of itself> unless the
    # arguments already name the workers' dependencies.
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert os.path.isfile(configs.REQUIREMENTS_FILE)


@pytest.mark.pipeline
def test_a_failed_run_says_what_failed_and_where_its_log_is(tmp_path):
    """Quiet output still shows an error: one message and the log, the traceback in the log."""
    import shutil
    import subprocess
    import sys

    from pipeline import embedded_data

    csv_path = embedded_data.generate(str(tmp_path / "data"), categories=2, per_category=4)
    shutil.rmtree(tmp_path / "data" / "covers")  # every cover fails: over the allowed share
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "local_runner.py", "--books-csv", csv_path, "--categories", "2"]
        + ["--output-dir", str(out)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert done.returncode == 1
    assert "bookcover: the run failed: RuntimeError: 8 of 8 covers (100%) failed" in done.stdout
    assert "Traceback" not in done.stdout
    (log,) = (out / "logs").iterdir()
    assert f"full log: {log}" in done.stdout
    assert "Traceback" in log.read_text()


@pytest.mark.parametrize(
    "flag, value, accepted",
    [
        ("--categories", "-1", "an integer at least 2"),
        ("--categories", "0", "an integer at least 2"),
        ("--categories", "1", "an integer at least 2"),
        ("--per-class", "0", "an integer at least 1"),
        ("--min-books", "0", "an integer at least 1"),
        ("--epochs", "0", "an integer at least 1"),
        ("--tuner-epochs", "-3", "an integer at least 1"),
        ("--connections", "0", "an integer at least 1 and at most 1024"),
        ("--batch-size", "0", "an integer at least 1 and at most 65536"),
        ("--first-filters", "0", "an integer at least 1 and at most 1024"),
        ("--learning-rates", "0", "a number over 0 and at most 10"),
        ("--learning-rates", "nan", "a number over 0 and at most 10"),
        ("--accuracy-floor", "-0.1", "a number at least 0"),
        ("--download-deadline", "0", "a number over 0 and at most 86400"),
        ("--direct-num-workers", "-1", "an integer at least 0 and at most 1024"),
        ("--connections", "four", "an integer at least 1"),
        ("--allow-network", "10.0.0.0/40", "not an address or CIDR block"),
        ("--allow-host", "http://x/", "not a host name"),
    ],
)
def test_numeric_and_policy_flags_are_range_checked_in_one_line(flag, value, accepted, capsys):
    with pytest.raises(SystemExit) as e:
        local_runner.parse_args([flag, value])
    assert e.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert f"argument {flag}" in line and accepted in line


def test_url_policy_flags_reach_the_fetch_settings():
    args = local_runner.parse_args(
        ["--refuse-private-addresses", "--allow-network", "10.1.0.0/16", "--allow-host",
         "Covers.Example.com", "--allow-host", ".img.example.org", "--covers-root", "/data"]
    )  # fmt: skip
    assert args.refuse_private_addresses
    assert args.allow_network == ["10.1.0.0/16"]
    assert args.allow_host == ["covers.example.com", ".img.example.org"]
    assert args.covers_root == "/data"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "Title,image,categories\nA,http://x/a.jpg,['Art']\n\"open,http://x/b.jpg,[]\n"
            + "B,http://x/c.jpg,['Art']\n" * 3,
            "never closed",
        ),
        ("Title,image,categories\nA,http://x/a.jpg,['Fiction']\n", "fewer than 2 categories"),
    ],
)
def test_min_books_errors_are_the_one_line_csv_errors(text, message, tmp_path, capsys):
    csv_path = tmp_path / "books.csv"
    csv_path.write_text(text)
    with pytest.raises(SystemExit) as e:
        local_runner.main(["--books-csv", str(csv_path), "--min-books", "1",
                           "--output-dir", str(tmp_path / "out")])  # fmt: skip
    assert str(e.value.code).startswith("bookcover: ") and message in str(e.value.code)
    assert "\n" not in str(e.value.code)
    assert "Traceback" not in capsys.readouterr().err


def test_a_second_run_on_one_output_dir_stops_in_one_line_and_a_dead_runs_lock_is_taken(
    tmp_path,
):
    import signal
    import subprocess
    import sys
    import time

    from pipeline import local_run

    out = tmp_path / "out"
    code = (
        "import sys, time; from pipeline import local_run\n"
        "with local_run.output_lock(sys.argv[1]):\n"
        "    print('held', flush=True); time.sleep(300)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as e:
            local_runner.main(["--output-dir", str(out)])
        message = str(e.value.code)
        assert message.startswith(f"bookcover: {out} is in use by pid {holder.pid} (started ")
        assert "\n" not in message
        assert sorted(os.listdir(out)) == [local_run.LOCK_FILE]  # nothing of the second run
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    started = time.monotonic()
    with local_run.output_lock(str(out)) as lock:  # the dead run's lock is taken over
        assert open(lock).read().startswith(f"pid {os.getpid()} ")
    assert time.monotonic() - started < 1


def test_a_failed_run_says_so_and_moves_the_last_report_aside(tmp_path, capsys):
    import json

    out = tmp_path / "out"
    (out / "report").mkdir(parents=True)
    (out / "report" / "index.html").write_text("the last run's report")
    (out / "run_summary.json").write_text(
        json.dumps({"run_id": "run-1", "state": "finished", "blessed": True, "pushed_model": "x"})
    )
    csv_path = tmp_path / "books.csv"
    csv_path.write_text(
        "Title,image,categories\nA,http://x/a.jpg,['Art']\n\"open,http://x/b.jpg,[]\n"
        + "B,http://x/c.jpg,['Art']\n" * 3
    )
    with pytest.raises(SystemExit) as e:
        local_runner.main(["--books-csv", str(csv_path), "--output-dir", str(out)])
    assert "never closed" in str(e.value.code)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["state"] == "failed" and "never closed" in summary["error"]
    assert (summary["blessed"], summary["pushed_model"], summary["report"]) == (False, None, None)
    assert os.path.exists(summary["log"])
    moved = summary["previous_run"]["report"]
    assert moved == str(out / "reports" / "run-1" / "index.html")
    assert open(moved).read() == "the last run's report"
    assert not (out / "report").exists()
    assert [n for n in os.listdir(out) if n.endswith(".tmp")] == []


def test_pretraining_flags_reach_the_trainer_and_ingestion_settings(capsys):
    assert settings([]).pretrain_epochs == hyperparameters.PRETRAIN_EPOCHS == 0
    assert settings(["--pretrain-epochs", "20"]).pretrain_epochs == 20
    args = local_runner.parse_args(["--pretrain-split"])
    assert local_runner.ingest_settings_from(args, 12, "o").pretrain is True
    plain = local_runner.parse_args([])
    assert local_runner.ingest_settings_from(plain, 12, "o").pretrain is False
    with pytest.raises(SystemExit):
        local_runner.parse_args(["--pretrain-epochs", "-1"])
    assert "argument --pretrain-epochs" in capsys.readouterr().err


def test_ensemble_members_flag_reaches_the_trainer_settings(capsys):
    assert settings([]).ensemble_members == hyperparameters.ENSEMBLE_MEMBERS == 1
    assert settings(["--ensemble-members", "3"]).ensemble_members == 3
    with pytest.raises(SystemExit):
        local_runner.parse_args(["--ensemble-members", "0"])
    assert "argument --ensemble-members" in capsys.readouterr().err

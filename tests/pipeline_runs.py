"""What the pipeline tests share: every step of a run and the steps it waits for, and the
flags of a tiny, quick training."""

UPSTREAM = {
    "CoverExampleGen": set(),
    "ImportSchemaGen": set(),
    "StatisticsGen": {"CoverExampleGen", "ImportSchemaGen"},
    "ExampleValidator": {"StatisticsGen", "ImportSchemaGen"},
    "DataGate": {"StatisticsGen", "ImportSchemaGen", "ExampleValidator"},
    "Transform": {"CoverExampleGen", "ImportSchemaGen", "DataGate"},
    "Tuner": {"CoverExampleGen", "Transform"},
    "Trainer": {"CoverExampleGen", "Transform", "Tuner"},
    "Evaluator": {"CoverExampleGen", "Trainer"},
    "Pusher": {"Trainer", "Evaluator", "StatisticsGen"},
    "ReportGen": {
        "CoverExampleGen",
        "StatisticsGen",
        "ExampleValidator",
        "DataGate",
        "Transform",
        "Tuner",
        "Trainer",
        "Evaluator",
        "Pusher",
    },
}

# The steps every run has (the Evaluator's baseline resolver aside: it has no executor).
STEPS = frozenset(UPSTREAM)

# local_runner flags for a training that only has to run: one epoch, one grid point.
TINY_TRAINING = [
    "--epochs",
    "1",
    "--tuner-epochs",
    "1",
    "--learning-rates",
    "1e-3",
    "--first-filters",
    "8",
    "--batch-size",
    "16",
    "--accuracy-floor",
    "0.0",
]

"""Runs models.trainer.run_fn from a JSON job description (for the kill-and-resume test)."""

import json
import sys

from tfx import v1 as tfx

from models import trainer

if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        job = json.load(f)
    trainer.run_fn(tfx.components.FnArgs(**job))

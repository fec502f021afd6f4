"""ClassifyCatalogue's executor: the catalogue pipeline over the model the Pusher just
pushed, on the step's Beam arguments; nothing to classify when nothing was pushed."""

from __future__ import annotations

import json
import logging
from typing import Any

from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from bookcover import artifacts
from components.catalogue import classify

NOT_PUSHED = "the model was not blessed, so it was not pushed: nothing classified"


class Executor(base_beam_executor.BaseBeamExecutor):
    # TFX calls this.
    def Do(  # noqa: N802 - TFX API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(input_dict["pushed_model"])
        out_dir = artifact_utils.get_single_uri(output_dict["predictions"])
        if not artifacts.flag(pushed, "pushed"):
            logging.info("ClassifyCatalogue: %s", NOT_PUSHED)
            classify.write_json({"skipped": NOT_PUSHED}, f"{out_dir}/{classify.SUMMARY_FILE}")
            return
        settings = classify.CatalogueSettings.from_dict(json.loads(exec_properties["settings"]))
        summary = classify.classify_catalogue(
            exec_properties["books_csv"],
            pushed.uri,
            out_dir,
            settings,
            self._beam_pipeline_args,
            version=pushed.get_string_custom_property("pushed_version"),
        )
        logging.info(
            "ClassifyCatalogue: %d of %d rows classified (%s)",
            summary["classified"],
            summary["rows_taken"],
            ", ".join(f"{k} {v}" for k, v in summary["failed"].items()) or "no failures",
        )

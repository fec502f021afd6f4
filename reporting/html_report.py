"""The human report of a pipeline run: index.html with its pictures beside it, on any filesystem.

Each section's figures are gathered here; templates/report.html lays them out
(Jinja2, autoescaped).
"""

from __future__ import annotations

import csv
import io
import os

import jinja2
import numpy as np
from tfx.dsl.io import fileio

from bookcover import constants, split_statistics, spreadsheet
from components import grid_tuner
from components.catalogue import classify as catalogue
from components.cover_example_gen import analysis
from models import history as training_history
from reporting import evaluation, plots
from reporting.run_artifacts import RunArtifacts
from reporting.summary import read_json

INDEX = "index.html"
TEMPLATE = "report.html"
GALLERY_DIR = "gallery"
CATALOGUE_DIR = "catalogue"
GALLERY_PER_KIND = 12  # covers shown classified right, and as many wrong
CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class.png"
TRIALS_PNG = "grid_search.png"
CATEGORY_ROWS_SHOWN = 40


def write_report(artifacts: RunArtifacts, summary: dict, report_dir: str) -> str:
    """Writes index.html and its pictures into `report_dir` (any fileio filesystem);
    returns the page's path."""
    if fileio.exists(report_dir):
        fileio.rmtree(report_dir)
    fileio.makedirs(report_dir)
    class_names = category_names(artifacts.transform_graph)
    context = {
        "header": _header(summary),
        "categories": _categories(artifacts.category_analysis, report_dir),
        "data": _data(summary, artifacts.statistics),
        "validation": _validation(summary, artifacts.anomalies),
        "trials": _trials(artifacts.tuner_results, report_dir),
        "training": _training(artifacts.model_run, report_dir),
        "evaluation": (
            _evaluation(artifacts.evaluation, class_names, report_dir)
            if artifacts.evaluation and class_names
            else None
        ),
        "gallery": (
            _gallery(artifacts.model, artifacts.examples, report_dir)
            if artifacts.model and artifacts.examples
            else None
        ),
        "catalogue": _catalogue(artifacts.catalogue_predictions, report_dir),
    }
    path = os.path.join(report_dir, INDEX)
    with fileio.open(path, "w") as f:
        f.write(render(context))
    return path


def render(context: dict) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(TEMPLATE).render(**context)


# --- Sections: the figures each one shows ----------------------------------------


def _header(summary: dict) -> dict:
    accuracy, top3 = summary.get("test_accuracy"), summary.get("test_top_3_accuracy")
    verdict = "blessed and pushed" if summary.get("pushed_model") else "blessed, not pushed"
    if not summary.get("blessed"):
        verdict = "NOT blessed: the previous pushed model stays in place"
    if summary.get("stopped"):
        verdict = f"stopped: {summary['stopped']}"
    facts = [
        ("Run", summary.get("run_id")),
        ("Test accuracy", _pct(accuracy)),
        ("Top-3 test accuracy", _pct(top3)),
        ("Test covers", _int(summary.get("test_examples"))),
        ("Categories", len(summary.get("categories", []))),
        ("Model", verdict),
        ("Pushed to", summary.get("pushed_model") or "nothing pushed"),
    ]
    return {"facts": facts, "blocked_reasons": summary.get("blocked_reasons", [])}


def _categories(analysis_uri: str | None, report_dir: str) -> dict | None:
    facts = read_json(analysis_uri, analysis.ANALYSIS_FILE) if analysis_uri else None
    if facts is None:
        return None
    with fileio.open(os.path.join(analysis_uri, analysis.COUNTS_FILE)) as f:
        counts = list(csv.DictReader(io.StringIO(f.read())))
    selected = set(facts["selected_categories"])
    return {
        "usable_rows": f"{facts['usable_rows']:,}",
        "rows_read": f"{facts['rows_read']:,}",
        "skipped": _skipped_rows(facts),
        "total": facts["categories_total"],
        "covering_half": facts["categories_covering_half"],
        "selected": len(selected),
        "selected_books": f"{facts['selected_books']:,}",
        "plot": _copy(os.path.join(analysis_uri, analysis.PLOT_FILE), report_dir),
        "rows": [
            {
                "category": spreadsheet.text_of(r["category"]),
                "count": r["count"],
                "share": f"{float(r['cumulative_share']):.1%}",
                "selected": spreadsheet.text_of(r["category"]) in selected,
            }
            for r in counts[:CATEGORY_ROWS_SHOWN]
        ],
        "more": max(0, len(counts) - CATEGORY_ROWS_SHOWN),
        "counts_file": analysis.COUNTS_FILE,
    }


def _skipped_rows(facts: dict) -> str:
    """Why rows were left out, and how the file's lines reconcile with its rows."""
    skipped = facts.get("skipped_rows") or {}
    parts = [f"{n:,} {reason.replace('_', ' ')}" for reason, n in skipped.items()]
    text = f" (skipped: {', '.join(parts)})" if parts else ""
    if facts.get("data_lines") is not None:
        text += (
            f"; {facts['data_lines']:,} data lines, {facts['lines_not_starting_a_row']:,} "
            "of them inside quoted line breaks or blank"
        )
    if facts.get("undecodable_bytes"):
        text += f"; {facts['undecodable_bytes']:,} bytes not {facts['csv_encoding']}, replaced"
    return text


def _data(summary: dict, statistics_uri: str | None) -> dict:
    ingestion = summary.get("ingestion", {})
    examples = summary.get("examples", {})
    splits = [s for s in constants.SPLIT_NAMES if s in examples]
    categories = sorted({c for split in examples.values() for c in split})
    failures = ", ".join(f"{k}: {v}" for k, v in ingestion.get("failed_by_reason", {}).items())
    return {
        "selected": ingestion.get("selected", "n/a"),
        "downloaded": ingestion.get("downloaded", "n/a"),
        "cached": ingestion.get("cached", "n/a"),
        "failed": ingestion.get("failed", "n/a"),
        "failures": failures,
        "duplicates": ingestion.get("duplicates_dropped", "n/a"),
        "splits": splits,
        "rows": [
            {"category": c, "counts": [examples[s].get(c, 0) for s in splits]} for c in categories
        ],
        "totals": [sum(examples[s].values()) for s in splits],
        "statistics": _statistics_rows(statistics_uri) if statistics_uri else [],
    }


def _statistics_rows(statistics_uri: str) -> list[dict]:
    import tensorflow_data_validation as tfdv

    rows = []
    for split, path in split_statistics.split_files(statistics_uri).items():
        (dataset,) = tfdv.load_stats_binary(path).datasets
        for feature in sorted(dataset.features, key=lambda f: f.path.step[-1]):
            common = _common_stats(feature)
            detail = ""
            if feature.HasField("bytes_stats"):
                detail = f"avg {feature.bytes_stats.avg_num_bytes:,.0f} bytes"
            elif feature.HasField("string_stats"):
                detail = f"{feature.string_stats.unique} unique"
            rows.append(
                {
                    "split": split,
                    "feature": feature.path.step[-1],
                    "examples": dataset.num_examples,
                    "missing": common.num_missing if common else 0,
                    "detail": detail,
                }
            )
    return rows


def _common_stats(feature):
    for kind in ("num_stats", "string_stats", "bytes_stats"):
        if feature.HasField(kind):
            return getattr(feature, kind).common_stats
    return None


def _validation(summary: dict, anomalies_uri: str | None) -> dict | None:
    """The DataGate's findings (schema anomalies, SQL checks, skew, drift) and their fate."""
    verdict = summary.get("data_validation")
    if verdict is None and anomalies_uri:
        from components.data_gate import schema_anomalies

        verdict = {"findings": schema_anomalies(anomalies_uri), "allowed": False}
    return verdict


def _trials(results_uri: str | None, report_dir: str) -> dict | None:
    trials = read_json(results_uri, grid_tuner.TRIALS_JSON)
    if trials is None:
        return None
    plots.plot_trials(trials, os.path.join(report_dir, TRIALS_PNG))
    best = max((t for t in trials if t["score"] is not None), key=lambda t: t["score"])
    rows = [
        {
            "trial_id": t["trial_id"],
            "learning_rate": f"{t['learning_rate']:g}",
            "first_filters": t["first_filters"],
            "score": _pct(t["score"]),
            "epochs_run": t["epochs_run"],
            "best_epoch": t["best_epoch"],
            "status": t["status"],
            "best": t is best,
        }
        for t in trials
    ]
    return {"rows": rows, "plot": TRIALS_PNG}


def _training(model_run_uri: str | None, report_dir: str) -> dict | None:
    """The network's training, and each later member's of an ensemble (`members`)."""
    first = _network(model_run_uri, report_dir)
    if first is None:
        return None
    later = training_history.later_member_dirs(model_run_uri)
    members = []
    for number, run_dir in enumerate(later, 2):
        found = _network(run_dir, report_dir, f"{training_history.MEMBER_DIR_PREFIX}{number}_")
        if found:  # a member without a history is counted, not shown
            members.append({"number": number, **found})
    return {**first, "networks": 1 + len(later), "members": members}


def _network(run_dir: str | None, report_dir: str, plot_prefix: str = "") -> dict | None:
    """One network's epochs, best validation accuracy and its epoch, and curves plot."""
    history = read_json(run_dir, training_history.HISTORY_FILE)
    if history is None:
        return None
    best = int(np.argmax(history["val_accuracy"])) if history.get("val_accuracy") else None
    curves = os.path.join(run_dir, training_history.CURVES_FILE)
    return {
        "epochs": len(history.get("loss", [])),
        "best_epoch": None if best is None else best + 1,
        "best_accuracy": None if best is None else _pct(history["val_accuracy"][best]),
        "plot": _copy(curves, report_dir, plot_prefix + training_history.CURVES_FILE),
    }


def _evaluation(evaluation_uri: str, class_names: list[str], report_dir: str) -> dict:
    matrix = evaluation.confusion_matrix(evaluation_uri, len(class_names))
    rows = evaluation.per_class(matrix, class_names)
    plots.plot_confusion_matrix(matrix, class_names, os.path.join(report_dir, CONFUSION_PNG))
    plots.plot_per_class(rows, os.path.join(report_dir, PER_CLASS_PNG))
    return {"rows": rows, "confusion_plot": CONFUSION_PNG, "per_class_plot": PER_CLASS_PNG}


def _gallery(model_uri: str, examples_uri: str, report_dir: str) -> list[dict]:
    from models import predict

    test_files = sorted(fileio.glob(os.path.join(examples_uri, "Split-test", "*")))
    # The first few of each category, right and wrong: the report holds a bounded
    # number of covers however large the test split.
    right: dict[str, list[dict]] = {}
    wrong: dict[str, list[dict]] = {}
    for cover in predict.classify_examples(os.path.join(model_uri, "Format-Serving"), test_files):
        kept = right if cover["true"] == cover["predicted"] else wrong
        shelf = kept.setdefault(cover["true"], [])
        if len(shelf) < GALLERY_PER_KIND:
            shelf.append(cover)
    gallery_dir = os.path.join(report_dir, GALLERY_DIR)
    fileio.makedirs(gallery_dir)
    kinds = []
    for kind, label, chosen in (
        ("right", "Classified right", _spread(right)),
        ("wrong", "Classified wrong", _spread(wrong)),
    ):
        for i, cover in enumerate(chosen):
            suffix = ".png" if cover["image"].startswith(b"\x89PNG") else ".jpg"
            name = f"{kind}_{i:02d}{suffix}"
            with fileio.open(os.path.join(gallery_dir, name), "wb") as f:
                f.write(cover["image"])
            cover["src"] = f"{GALLERY_DIR}/{name}"
        kinds.append({"name": kind, "label": label, "covers": chosen})
    return kinds


def _catalogue(predictions_uri: str | None, report_dir: str) -> dict | None:
    """The catalogue step's counts, and its most confident covers per predicted category."""
    found = read_json(predictions_uri, catalogue.SUMMARY_FILE)
    if found is None:
        return None
    covers = read_json(predictions_uri, catalogue.GALLERY_FILE) or []
    target = os.path.join(report_dir, CATALOGUE_DIR)
    fileio.makedirs(target)
    for cover in covers:
        name = os.path.basename(cover["file"])
        fileio.copy(os.path.join(predictions_uri, cover["file"]), os.path.join(target, name))
        cover["src"] = f"{CATALOGUE_DIR}/{name}"
    return {"summary": found, "covers": covers}


# --- Data ------------------------------------------------------------------------


def _spread(by_category: dict[str, list[dict]]) -> list[dict]:
    """Up to GALLERY_PER_KIND covers, taking the categories in turn so all are shown."""
    chosen = []
    while len(chosen) < GALLERY_PER_KIND and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and len(chosen) < GALLERY_PER_KIND:
                chosen.append(by_category[category].pop(0))
    return chosen


def category_names(transform_graph_uri: str | None) -> list[str]:
    if not transform_graph_uri:
        return []
    import tensorflow_transform as tft

    from models import inputs

    return inputs.category_names(tft.TFTransformOutput(transform_graph_uri))


# --- Formatting ----------------------------------------------------------------------


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _int(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _copy(path: str, report_dir: str, name: str = "") -> str | None:
    """The file copied into the report (as `name`, or its own), and its name there."""
    if not fileio.exists(path):
        return None
    name = name or os.path.basename(path)
    fileio.copy(path, os.path.join(report_dir, name), overwrite=True)
    return name

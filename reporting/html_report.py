"""The human report of a pipeline run: index.html with its pictures beside it, on any filesystem."""

from __future__ import annotations

import csv
import html
import io
import os

import numpy as np
from tfx.dsl.io import fileio

from components import grid_tuner
from components.cover_example_gen import analysis
from models import history as training_history
from pipeline import configs
from reporting import evaluation, plots
from reporting.run_artifacts import RunArtifacts
from reporting.summary import read_json

INDEX = "index.html"
GALLERY_DIR = "gallery"
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
    sections = [
        _header(summary),
        _categories_section(artifacts.category_analysis, report_dir),
        _data_section(summary, artifacts.statistics, artifacts.anomalies),
        _grid_search_section(artifacts.tuner_results, report_dir),
        _training_section(artifacts.model_run, report_dir),
    ]
    class_names = category_names(artifacts.transform_graph)
    if artifacts.evaluation and class_names:
        sections.append(_evaluation_section(artifacts.evaluation, class_names, report_dir))
    if artifacts.model and artifacts.examples:
        sections.append(_gallery_section(artifacts.model, artifacts.examples, report_dir))
    path = os.path.join(report_dir, INDEX)
    with fileio.open(path, "w") as f:
        f.write(_page("\n".join(sections)))
    return path


# --- Sections -------------------------------------------------------------------


def _header(summary: dict) -> str:
    accuracy, top3 = summary.get("test_accuracy"), summary.get("test_top_3_accuracy")
    verdict = "blessed and pushed" if summary.get("pushed_model") else "blessed, not pushed"
    if not summary.get("blessed"):
        verdict = "NOT blessed: the previous pushed model stays in place"
    if summary.get("stopped"):
        verdict = f"stopped: {summary['stopped']}"
    reasons = "".join(f"<li>{_escape(r)}</li>" for r in summary.get("blocked_reasons", []))
    facts = [
        ("Run", summary.get("run_id")),
        ("Test accuracy", _pct(accuracy)),
        ("Top-3 test accuracy", _pct(top3)),
        ("Test covers", _int(summary.get("test_examples"))),
        ("Categories", len(summary.get("categories", []))),
        ("Model", verdict),
        ("Pushed to", summary.get("pushed_model") or "nothing pushed"),
    ]
    rows = "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in facts)
    blocked = f"<p class='bad'>Why it was blocked:</p><ul>{reasons}</ul>" if reasons else ""
    return (
        f"<h1>bookcover: run report</h1><table class='facts' id='summary'>{rows}</table>{blocked}"
    )


def _categories_section(analysis_uri: str | None, report_dir: str) -> str:
    if not analysis_uri:
        return _missing("Category analysis", "no CoverExampleGen output")
    facts = read_json(analysis_uri, analysis.ANALYSIS_FILE)
    with fileio.open(os.path.join(analysis_uri, analysis.COUNTS_FILE)) as f:
        counts = list(csv.DictReader(io.StringIO(f.read())))
    plot = _copy(os.path.join(analysis_uri, analysis.PLOT_FILE), report_dir)
    selected = set(facts["selected_categories"])
    rows = "".join(
        f"<tr{' class=selected' if r['category'] in selected else ''}>"
        f"<td>{_escape(r['category'])}</td><td>{_escape(r['count'])}</td>"
        f"<td>{float(r['cumulative_share']):.1%}</td></tr>"
        for r in counts[:CATEGORY_ROWS_SHOWN]
    )
    more = (
        f"<p>… and {len(counts) - CATEGORY_ROWS_SHOWN} smaller categories "
        f"(all in <code>{analysis.COUNTS_FILE}</code>).</p>"
        if len(counts) > CATEGORY_ROWS_SHOWN
        else ""
    )
    return (
        "<h2 id='categories'>Category analysis</h2>"
        f"<p>{facts['usable_rows']:,} usable books of {facts['rows_read']:,} rows read"
        f"{_skipped_rows(facts)}, in "
        f"{facts['categories_total']} categories; the {facts['categories_covering_half']} "
        f"largest cover half of the books. Selected (highlighted): "
        f"{len(selected)} categories, {facts['selected_books']:,} books sampled.</p>"
        f"{_img(plot, 'Cumulative share of books by category')}"
        "<table><tr><th>category</th><th>books</th><th>cumulative share</th></tr>"
        f"{rows}</table>{more}"
    )


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
    return html.escape(text)


def _data_section(summary: dict, statistics_uri: str | None, anomalies_uri: str | None) -> str:
    ingestion = summary.get("ingestion", {})
    examples = summary.get("examples", {})
    splits = [s for s in configs.SPLIT_NAMES if s in examples]
    categories = sorted({c for split in examples.values() for c in split})
    header = "".join(f"<th>{_escape(s)}</th>" for s in splits)
    rows = "".join(
        f"<tr><td>{_escape(c)}</td>"
        + "".join(f"<td>{examples[s].get(c, 0)}</td>" for s in splits)
        + "</tr>"
        for c in categories
    )
    totals = "".join(f"<td><b>{sum(examples[s].values())}</b></td>" for s in splits)
    failures = ", ".join(f"{k}: {v}" for k, v in ingestion.get("failed_by_reason", {}).items())
    parts = [
        "<h2 id='data'>Data</h2>",
        f"<p>Covers selected {ingestion.get('selected', 'n/a')}, downloaded "
        f"{ingestion.get('downloaded', 'n/a')}, from the cache {ingestion.get('cached', 'n/a')}, "
        f"failed {ingestion.get('failed', 'n/a')}{f' ({_escape(failures)})' if failures else ''}, "
        f"duplicates dropped {ingestion.get('duplicates_dropped', 'n/a')}.</p>",
        f"<table><tr><th>category</th>{header}</tr>{rows}"
        f"<tr><td><b>total</b></td>{totals}</tr></table>",
    ]
    if statistics_uri:
        parts.append(_statistics_table(statistics_uri))
    parts.append(_anomalies(summary, anomalies_uri))
    return "\n".join(parts)


def _statistics_table(statistics_uri: str) -> str:
    import tensorflow_data_validation as tfdv

    rows = []
    for path in sorted(fileio.glob(os.path.join(statistics_uri, "Split-*", "FeatureStats.pb"))):
        split = os.path.basename(os.path.dirname(path))[len("Split-") :]
        (dataset,) = tfdv.load_stats_binary(path).datasets
        for feature in sorted(dataset.features, key=lambda f: f.path.step[-1]):
            common = _common_stats(feature)
            missing = common.num_missing if common else 0
            detail = ""
            if feature.HasField("bytes_stats"):
                detail = f"avg {feature.bytes_stats.avg_num_bytes:,.0f} bytes"
            elif feature.HasField("string_stats"):
                detail = f"{feature.string_stats.unique} unique"
            rows.append(
                f"<tr><td>{_escape(split)}</td><td>{_escape(feature.path.step[-1])}</td>"
                f"<td>{dataset.num_examples}</td><td>{missing}</td><td>{_escape(detail)}</td></tr>"
            )
    return (
        "<h3>TFDV statistics</h3><table><tr><th>split</th><th>feature</th><th>examples</th>"
        f"<th>missing</th><th>values</th></tr>{''.join(rows)}</table>"
    )


def _common_stats(feature):
    for kind in ("num_stats", "string_stats", "bytes_stats"):
        if feature.HasField(kind):
            return getattr(feature, kind).common_stats
    return None


def _anomalies(summary: dict, anomalies_uri: str | None) -> str:
    """The DataGate's findings (schema anomalies, SQL checks, skew, drift) and their fate."""
    verdict = summary.get("data_validation")
    if verdict is None:
        if not anomalies_uri:
            return _missing("Data validation", "no DataGate or ExampleValidator output")
        from components.data_gate import schema_anomalies

        verdict = {"findings": schema_anomalies(anomalies_uri), "allowed": False}
    findings = verdict["findings"]
    if not findings:
        return (
            "<h3>Data validation</h3><p class='good' id='anomalies'>No anomalies: every split "
            "matches the reviewed schema, no skew between splits, no drift from the pushed "
            "model's data.</p>"
        )
    fate = (
        "Allowed through with --allow-anomalies."
        if verdict.get("allowed")
        else "The run stopped here, before Transform."
    )
    rows = "".join(
        f"<tr><td>{_escape(f['split'])}</td><td>{_escape(f['feature'])}</td>"
        f"<td>{_escape(f['problem'])}</td><td>{_escape(f['detail'])}</td></tr>"
        for f in findings
    )
    return (
        f"<h3>Data validation</h3><p class='bad'>{len(findings)} problem(s). {fate}</p>"
        "<table id='anomalies'><tr><th>split</th><th>feature</th><th>problem</th>"
        f"<th>detail</th></tr>{rows}</table>"
    )


def _grid_search_section(results_uri: str | None, report_dir: str) -> str:
    trials = read_json(results_uri, grid_tuner.TRIALS_JSON)
    if trials is None:
        return _missing("Grid search", "no Tuner trial table")
    plots.plot_trials(trials, os.path.join(report_dir, TRIALS_PNG))
    best = max((t for t in trials if t["score"] is not None), key=lambda t: t["score"])
    rows = "".join(
        f"<tr{' class=selected' if t is best else ''}><td>{_escape(t['trial_id'])}</td>"
        f"<td>{t['learning_rate']:g}</td><td>{t['first_filters']}</td>"
        f"<td>{_pct(t['score'])}</td><td>{t['epochs_run']}</td><td>{t['best_epoch']}</td>"
        f"<td>{_escape(t['status'])}</td></tr>"
        for t in trials
    )
    return (
        "<h2 id='grid-search'>Grid search</h2>"
        "<table id='trials'><tr><th>trial</th><th>learning rate</th><th>first filters</th>"
        "<th>validation accuracy</th><th>epochs run</th><th>best epoch</th><th>status</th></tr>"
        f"{rows}</table>{_img(TRIALS_PNG, 'Validation accuracy of each trial')}"
    )


def _training_section(model_run_uri: str | None, report_dir: str) -> str:
    history = read_json(model_run_uri, training_history.HISTORY_FILE)
    if history is None:
        return _missing("Training", "no Trainer history")
    curves = _copy(os.path.join(model_run_uri, training_history.CURVES_FILE), report_dir)
    best = int(np.argmax(history["val_accuracy"])) if history.get("val_accuracy") else None
    text = (
        f"<p>{len(history.get('loss', []))} epochs; best validation accuracy "
        f"{_pct(history['val_accuracy'][best])} at epoch {best + 1} (the weights kept).</p>"
        if best is not None
        else ""
    )
    return f"<h2 id='training'>Training</h2>{text}{_img(curves, 'Training curves')}"


def _evaluation_section(evaluation_uri: str, class_names: list[str], report_dir: str) -> str:
    matrix = evaluation.confusion_matrix(evaluation_uri, len(class_names))
    rows = evaluation.per_class(matrix, class_names)
    plots.plot_confusion_matrix(matrix, class_names, os.path.join(report_dir, CONFUSION_PNG))
    plots.plot_per_class(rows, os.path.join(report_dir, PER_CLASS_PNG))
    table = "".join(
        f"<tr><td>{_escape(r['category'])}</td><td>{r['precision']:.3f}</td>"
        f"<td>{r['recall']:.3f}</td><td>{r['f1']:.3f}</td><td>{r['support']}</td></tr>"
        for r in rows
    )
    return (
        "<h2 id='evaluation'>Evaluation on the test set</h2>"
        f"{_img(CONFUSION_PNG, 'Confusion matrix, rows normalised')}"
        "<table id='per-class'><tr><th>category</th><th>precision</th><th>recall</th>"
        f"<th>F1</th><th>support</th></tr>{table}</table>"
        f"{_img(PER_CLASS_PNG, 'Precision and recall per category')}"
    )


def _gallery_section(model_uri: str, examples_uri: str, report_dir: str) -> str:
    covers = classify_test_covers(model_uri, examples_uri)
    right = [c for c in covers if c["true"] == c["predicted"]]
    wrong = [c for c in covers if c["true"] != c["predicted"]]
    gallery_dir = os.path.join(report_dir, GALLERY_DIR)
    fileio.makedirs(gallery_dir)
    parts = ["<h2 id='gallery'>Test covers</h2>"]
    for kind, chosen in (("right", _spread(right)), ("wrong", _spread(wrong))):
        cards = []
        for i, cover in enumerate(chosen):
            name = f"{kind}_{i:02d}.jpg"
            with fileio.open(os.path.join(gallery_dir, name), "wb") as f:
                f.write(cover["jpeg"])
            src, alt = f"{GALLERY_DIR}/{name}", _escape(cover["title"])
            cards.append(
                f"<figure class='{kind}'><img src='{src}' alt='{alt}'>"
                f"<figcaption><b>{_escape(cover['title'][:60])}</b><br>"
                f"true: {_escape(cover['true'])}<br>predicted: {_escape(cover['predicted'])} "
                f"({cover['score']:.0%})</figcaption></figure>"
            )
        label = "Classified right" if kind == "right" else "Classified wrong"
        body = "".join(cards) or "<p>none</p>"
        parts.append(f"<h3>{label} ({len(chosen)} shown)</h3><div class='gallery'>{body}</div>")
    return "\n".join(parts)


# --- Data ------------------------------------------------------------------------


def classify_test_covers(model_uri: str, examples_uri: str, batch_size: int = 64) -> list[dict]:
    """Every test cover with its true category, the model's top category and its score."""
    import tensorflow as tf

    serving_dir = os.path.join(model_uri, "Format-Serving")
    classify = tf.saved_model.load(serving_dir).signatures["serving_tf_example"]
    files = sorted(fileio.glob(os.path.join(examples_uri, "Split-test", "*")))
    covers = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        result = classify(examples=batch)
        for serialized, category, score in zip(
            batch.numpy(),
            result["category"].numpy(),
            result["top_scores"].numpy()[:, 0],
            strict=True,
        ):
            example = tf.train.Example.FromString(serialized)
            feature = example.features.feature
            covers.append(
                {
                    "jpeg": feature[configs.IMAGE_KEY].bytes_list.value[0],
                    "title": feature[configs.TITLE_KEY].bytes_list.value[0].decode(),
                    "true": feature[configs.CATEGORY_KEY].bytes_list.value[0].decode(),
                    "predicted": category.decode(),
                    "score": float(score),
                }
            )
    return covers


def _spread(covers: list[dict]) -> list[dict]:
    """Up to GALLERY_PER_KIND covers, taking the categories in turn so all are shown."""
    by_category: dict[str, list[dict]] = {}
    for cover in covers:
        by_category.setdefault(cover["true"], []).append(cover)
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


# --- HTML --------------------------------------------------------------------------


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _int(value) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _copy(path: str, report_dir: str) -> str | None:
    if not fileio.exists(path):
        return None
    fileio.copy(path, os.path.join(report_dir, os.path.basename(path)), overwrite=True)
    return os.path.basename(path)


def _img(name: str | None, alt: str) -> str:
    return f"<img class='plot' src='{_escape(name)}' alt='{_escape(alt)}'>" if name else ""


def _missing(title: str, why: str) -> str:
    return f"<h2>{_escape(title)}</h2><p>Not available: {_escape(why)}.</p>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
tr.selected td { background: #e8f0fe; font-weight: 600; }
table.facts th { background: #f4f4f4; }
img.plot { max-width: 100%; display: block; margin: 1em 0; }
.bad { color: #b00020; } .good { color: #17752f; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure { width: 150px; margin: 0; font-size: 0.8em; }
figure img { width: 100px; height: 150px; display: block; }
figure.right img { outline: 3px solid #17752f; } figure.wrong img { outline: 3px solid #b00020; }
"""


def _page(body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>bookcover run report</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )

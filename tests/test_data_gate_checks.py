"""DataGate's checks, each at its threshold, on statistics TFDV computes from small data frames."""

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from bookcover import constants
from components.data_gate import checks
from pipeline import configs
from tests import images


@pytest.fixture(scope="module")
def schema():
    return tfdv.load_schema_text(configs.SCHEMA_FILE)


def statistics(schema, categories: dict[str, int], covers: list[bytes] | None = None):
    """TFDV statistics of a split: `categories` as counts, one cover per row (JPEG by default)."""
    labels = [name.encode() for name, n in categories.items() for _ in range(n)]
    covers = covers or [images.jpeg()] * len(labels)
    rows = pd.DataFrame({constants.CATEGORY_KEY: labels, constants.IMAGE_KEY: covers})
    options = tfdv.StatsOptions(schema=schema, enable_semantic_domain_stats=True)
    return tfdv.generate_statistics_from_dataframe(rows, options)


def problems(findings: list[dict]) -> list[tuple[str, str]]:
    return [(f["split"], f["problem"]) for f in findings]


def test_a_category_of_the_train_split_missing_from_another_split_is_a_finding(schema):
    by_split = {
        "train": statistics(schema, {"Art": 3, "History": 3}),
        "eval": statistics(schema, {"Art": 2}),
        "test": statistics(schema, {"Art": 1, "History": 1}),
    }
    (finding,) = checks.missing_categories(by_split)
    assert problems([finding]) == [("eval", "a selected category is missing")]
    assert finding["detail"].startswith("'History' has 3 train covers and none in eval")


def test_split_skew_is_a_finding_only_above_the_schemas_threshold(schema):
    train = statistics(schema, {"Art": 50, "History": 50})
    at_threshold = statistics(schema, {"Art": 60, "History": 40})  # L-infinity 0.10
    above = statistics(schema, {"Art": 62, "History": 38})  # 0.12
    assert checks.comparator_findings(schema, train, "eval", serving=at_threshold) == []
    (finding,) = checks.comparator_findings(schema, train, "eval", serving=above)
    assert problems([finding]) == [("eval", "skew above threshold")]
    assert finding["feature"] == constants.CATEGORY_KEY
    assert "from the train split is 0.120, expected at most 0.1" in finding["detail"]


def test_drift_from_the_pushed_models_data_is_a_finding_only_above_the_threshold(schema):
    pushed = statistics(schema, {"Art": 50, "History": 50})
    assert (
        checks.comparator_findings(
            schema, statistics(schema, {"Art": 40, "History": 60}), "train", previous=pushed
        )
        == []
    )
    (finding,) = checks.comparator_findings(
        schema, statistics(schema, {"Art": 35, "History": 65}), "train", previous=pushed
    )
    assert problems([finding]) == [("train", "drift above threshold")]
    assert "from the pushed model's data is 0.150" in finding["detail"]


def covers(jpegs: int, pngs: int) -> list[bytes]:
    return [images.jpeg()] * jpegs + [images.png()] * pngs


def test_image_format_drift_is_a_finding_only_above_its_threshold(schema):
    # TFDV computes format shares for 100 covers or more.
    pushed = statistics(schema, {"Art": 100}, covers(50, 50))
    near = statistics(schema, {"Art": 100}, covers(60, 40))  # L-infinity 0.10
    far = statistics(schema, {"Art": 100}, covers(75, 25))
    assert checks.image_formats(near) == {"jpeg": 0.6, "png": 0.4}
    assert [f["problem"] for f in checks.image_drift(near, pushed)] == []
    (finding,) = checks.image_drift(far, pushed)
    assert finding["problem"] == "image format drift above threshold"
    assert "format shares jpeg 75%, png 25% against jpeg 50%, png 50%" in finding["detail"]
    assert checks.image_drift(statistics(schema, {"Art": 10}), pushed) == []  # too few


def test_a_change_of_mean_cover_size_is_a_finding_only_above_its_threshold(schema):
    small, large = images.jpeg(size=(40, 60)), images.jpeg(size=(146, 220))
    pushed = statistics(schema, {"Art": 4}, [small] * 4)
    grown = statistics(schema, {"Art": 4}, [large] * 4)
    change = checks.mean_cover_bytes(grown) / checks.mean_cover_bytes(pushed) - 1
    assert change > checks.COVER_BYTES_DRIFT  # the case is above the threshold
    (finding,) = checks.image_drift(grown, pushed)
    assert finding["problem"] == "cover size drift above threshold"
    assert f"{change:.0%} change, expected at most 50%" in finding["detail"]
    # One large cover in four moves the mean by less than the threshold.
    mixed = statistics(schema, {"Art": 4}, [small] * 3 + [large])
    mixed_change = checks.mean_cover_bytes(mixed) / checks.mean_cover_bytes(pushed) - 1
    assert 0 < mixed_change < checks.COVER_BYTES_DRIFT
    assert checks.image_drift(mixed, pushed) == []


def test_the_reviewed_sql_check_finds_covers_that_are_not_jpeg(schema):
    with open(configs.VALIDATIONS_FILE) as f:
        validations = f.read()
    by_split = {
        "train": statistics(schema, {"Art": 100}),
        "eval": statistics(schema, {"Art": 100}, covers(90, 10)),
    }
    (finding,) = checks.custom_findings(by_split, schema, validations)
    assert (finding["split"], finding["feature"]) == ("eval", constants.IMAGE_KEY)
    assert finding["detail"] == "found jpeg 90%, png 10%"
    assert checks.custom_findings(by_split, schema, "") == []

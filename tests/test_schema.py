"""The reviewed schema: what `python -m pipeline.schema` writes, and what is committed."""

import io

import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from PIL import Image

from bookcover import constants
from pipeline import configs, schema


def cover(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT), color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def statistics_file(tmp_path_factory):
    rows = pd.DataFrame(
        {
            constants.IMAGE_KEY: [cover((i, 0, 0)) for i in range(20)],
            constants.CATEGORY_KEY: [b"Art", b"History"] * 10,
            constants.TITLE_KEY: [f"Book {i}".encode() for i in range(20)],
            constants.SOURCE_URL_KEY: [f"http://x/{i}.jpg".encode() for i in range(20)],
            constants.CONTENT_HASH_KEY: [f"{i:040x}".encode() for i in range(20)],
        }
    )
    path = str(tmp_path_factory.mktemp("stats") / "FeatureStats.pb")
    with open(path, "wb") as f:
        f.write(tfdv.generate_statistics_from_dataframe(rows).SerializeToString())
    return path


def assert_project_rules(reviewed) -> None:
    category = tfdv.get_feature(reviewed, constants.CATEGORY_KEY)
    assert not category.HasField("domain") and not reviewed.string_domain  # vocabulary per run
    assert category.skew_comparator.infinity_norm.threshold == configs.CATEGORY_SHARE_LINF
    assert category.drift_comparator.infinity_norm.threshold == configs.CATEGORY_SHARE_LINF
    image = tfdv.get_feature(reviewed, constants.IMAGE_KEY)
    assert image.image_domain.max_image_byte_size == configs.MAX_COVER_BYTES
    assert not image.image_domain.HasField("minimum_supported_image_fraction")
    assert tfdv.get_feature(reviewed, constants.TITLE_KEY).HasField("natural_language_domain")
    for name in schema.REQUIRED:
        assert tfdv.get_feature(reviewed, name).presence.min_fraction == 1.0, name


def test_the_command_infers_and_applies_the_project_rules(statistics_file, tmp_path, capsys):
    target = tmp_path / "schema" / "schema.pbtxt"
    schema.main(["--statistics", statistics_file, "--schema-file", str(target)])
    assert str(target) in capsys.readouterr().out
    assert_project_rules(tfdv.load_schema_text(str(target)))


def test_the_committed_schema_follows_the_same_rules():
    assert_project_rules(tfdv.load_schema_text(configs.SCHEMA_FILE))


def test_a_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no StatisticsGen output"):
        schema.main(["--output-dir", str(tmp_path)])

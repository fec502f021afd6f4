"""DataGate's baseline: the pushed model's statistics, read or reported, never a traceback."""

import os

import pandas as pd
import tensorflow_data_validation as tfdv

from bookcover import constants
from components.data_gate import checks, executor


def push_statistics(serving_model_dir, version: str, data: bytes) -> str:
    path = os.path.join(serving_model_dir, version, constants.BASELINE_STATISTICS)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(data)
    return path


def real_statistics() -> bytes:
    rows = pd.DataFrame({constants.CATEGORY_KEY: [b"Art", b"History"] * 5})
    return tfdv.generate_statistics_from_dataframe(rows).SerializeToString()


def test_the_newest_pushed_version_with_statistics_is_the_baseline(tmp_path):
    assert executor.pushed_baseline(str(tmp_path / "nothing pushed yet")) is None
    push_statistics(tmp_path, "9", real_statistics())
    newest = push_statistics(tmp_path, "10", real_statistics())  # 10 > 9 as numbers
    os.makedirs(tmp_path / "11")  # pushed without statistics (before they were pushed)
    assert executor.pushed_baseline(str(tmp_path)) == newest
    statistics, findings = executor.load_baseline(newest)
    assert findings == [] and checks.category_counts(statistics) == {"Art": 5, "History": 5}


def test_unreadable_baseline_statistics_are_one_finding_naming_the_file(tmp_path):
    for version, data in (("1", b"\x00\xffnot a protobuf\x12"), ("2", b"")):
        path = push_statistics(tmp_path, version, data)
        statistics, findings = executor.load_baseline(path)
        assert statistics is None and len(findings) == 1, findings
        line = checks.finding_line(findings[0])
        assert line.startswith("train: (all): unreadable baseline statistics: " + path), line
        assert "drift from the pushed model's data cannot be checked" in line

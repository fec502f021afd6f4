"""Shared fixtures: the misbehaving cover server, a small exported cover model."""

import pytest

from tests import cover_server


@pytest.fixture
def server():
    s = cover_server.CoverServer()
    yield s
    s.close()


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(keras model, transform output, export dir, the export loaded by TF2's loader)."""
    import tensorflow as tf

    from tests import tiny_model

    out = str(tmp_path_factory.mktemp("serving"))
    cnn, output, export_dir = tiny_model.train_and_export(out)
    return cnn, output, export_dir, tf.saved_model.load(export_dir)


@pytest.fixture(scope="session")
def exported_with_titles(tmp_path_factory):
    """As `exported`, for the cover-and-title model (model option inputs=cover_title)."""
    import tensorflow as tf

    from tests import tiny_model

    out = str(tmp_path_factory.mktemp("serving_titles"))
    cnn, output, export_dir = tiny_model.train_and_export(
        out, epochs=6, options={"inputs": "cover_title"}
    )
    return cnn, output, export_dir, tf.saved_model.load(export_dir)


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Ends the process once pytest has reported: tearing down TensorFlow's, Beam's and
    TFX's modules at interpreter exit takes half a minute here and checks nothing."""
    import os
    import sys

    if EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[EXIT_STATUS])

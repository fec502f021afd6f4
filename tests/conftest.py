"""Shared fixtures: the misbehaving cover server."""

import pytest

from tests import cover_server


@pytest.fixture
def server():
    s = cover_server.CoverServer()
    yield s
    s.close()

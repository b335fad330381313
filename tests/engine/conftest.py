"""Fixtures shared by the engine tests."""

import pytest

from paramstore.name import NameManager


@pytest.fixture
def fresh_names():
    """Automatic block names start again at 0 (`dense0`, `sequential0`), as in a new process."""
    with NameManager():
        yield

"""Fixtures shared by the engine tests."""

import pytest

import paramstore.random
from paramstore.name import NameManager


@pytest.fixture
def fresh_names():
    """Automatic block names start again at 0 (`dense0`, `sequential0`), as in a new process."""
    with NameManager():
        yield


@pytest.fixture(autouse=True)
def seeded_engine():
    """Every test draws the same random numbers, run alone or in any order."""
    paramstore.random.seed(0)

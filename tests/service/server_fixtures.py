"""Fixtures of a `paramstore serve` process shared by a test module. A test module loads them
with `pytest_plugins = ("server_fixtures",)`."""

from collections.abc import Iterator

import pytest
from chapter_nets import mlp
from server_process import ServerProcess, running_server

from paramstore.client import Client, RemoteStore


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `paramstore serve` process shared by a test module."""
    with running_server(tmp_path_factory.mktemp("served") / "data") as server:
        yield server


@pytest.fixture
def remote(served: ServerProcess) -> Iterator[Client]:
    """A client of the module's server; the stores a test creates are deleted after it."""
    with served.connect() as client:
        yield client
        for name in client.list_stores():
            client.delete_store(name)


@pytest.fixture
def mlp_store(remote: Client) -> RemoteStore:
    """A store "mlp" holding the chapter's MLP (prefix `sequential0_`, `dense0_`, `dense1_`)."""
    store = remote.create_store("mlp")
    store.push(mlp().collect_params())
    return store

"""Real servers on loopback for the service tests: in-process, or as a `python -m
paramstore.server` subprocess for tests that kill it."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from etcd_server import etcd_server
from s3_server import moto_server, new_bucket
from server_process import wait_for_health
from service_types import RunningServer, Storage

from paramstore.client import Client
from paramstore.server import ParamStoreServer, create_server
from paramstore.server.process import start_serve
from paramstore.server.storage import LocalBackend


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server, one for the session (each test uses its own bucket)."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def etcd_endpoint() -> Iterator[str]:
    """A real etcd on loopback, one for the session (each cluster uses its own key prefix)."""
    with etcd_server() as address:
        yield address


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each backend in turn: a local folder, and a bucket of the S3-compatible server."""
    if request.param == "local":
        folder = tmp_path / "data"
        return Storage(str(folder), (), lambda: LocalBackend(folder))
    from paramstore.server.storage.s3 import S3Backend

    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = new_bucket(endpoint)
    return Storage(f"s3://{bucket}/data", ("--s3-endpoint", endpoint),
                   lambda: S3Backend(bucket, "data", endpoint=endpoint))


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start in-process servers: `make_server(token=..., keep=..., data_dir=...)`."""
    started: list[ParamStoreServer] = []

    def make(data_dir: Path | None = None, **options: Any) -> RunningServer:
        data_dir = data_dir or tmp_path / f"data{len(started)}"
        server, port = create_server("127.0.0.1:0", data_dir=data_dir, **options)
        server.start()
        started.append(server)
        return RunningServer(f"127.0.0.1:{port}", data_dir, options.get("token"), server)

    yield make
    for server in started:
        server.stop(None).wait()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server()


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with server.connect() as opened:
        yield opened


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start `python -m paramstore.server` subprocesses: `spawn_server(data_dir, *flags)`.
    They are killed at teardown if still running."""
    processes: list[subprocess.Popen] = []

    def spawn(data_dir: Path | None = None, *flags: str) -> RunningServer:
        data_dir = data_dir or tmp_path / "data"
        log: list[str] = []
        process, address = start_serve(data_dir, *flags, log=log)
        processes.append(process)
        wait_until_serving(address)
        return RunningServer(address, data_dir, process=process, log=log)

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stderr:
            process.stderr.close()


def wait_until_serving(address: str, timeout: float = 10.0) -> None:
    """Poll the standard health service until the server reports SERVING."""
    wait_for_health(grpc.insecure_channel(address), timeout)

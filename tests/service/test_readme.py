"""Every Python and shell block of README.md runs as written, twice (a block that serves, once:
each run starts its servers afresh), against real servers that the test starts on free ports,
so the README cannot drift from what paramstore does.

What each block needs, and how it is checked, is said by the comment before it
(`readme_blocks` lists the directives). A block that fails here fails the suite: fix the
README, or say in its comment what the block needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from etcd_server import etcd_server
from readme_blocks import (
    PARAMSTORE_ADDRESS,
    README,
    README_ADDRESSES,
    AnnotationError,
    Block,
    check_command,
    commands,
    parse_annotation,
    readme_blocks,
    substitute,
)
from replicas import Cluster
from s3_server import free_port, moto_server
from server_process import running_server, wait_for_health

from paramstore.client import connect

BLOCKS = readme_blocks(README.read_text())
RUNS = 2  # every block runs more than once: it must clean up after itself or pick new names
# A block that serves starts new servers on new ports at each run: a second run repeats the
# first (its servers are stopped, nothing of theirs is left to clean up).
SERVES_RUNS = 1
BIN = Path(sys.executable).parent
REPOSITORY = README.parent
BLOCK_TIMEOUT = 300


class Services:
    """The servers the README's blocks need, each started at its first use on a free port and
    stopped at the end of the module."""

    def __init__(self, stack: contextlib.ExitStack, folder: Path) -> None:
        self._stack, self._folder = stack, folder
        self._started: dict[str, dict[str, str]] = {}  # service -> README name -> address

    def addresses(self, needs: frozenset[str]) -> dict[str, str]:
        """README address -> actual address, for a block that needs the services `needs`; the
        other README addresses get free ports, for servers the block starts itself."""
        provided: dict[str, str] = {}
        for service in sorted(needs):
            if service not in self._started:
                self._started[service] = getattr(self, f"_start_{service}")()
            provided.update(self._started[service])
        ports = {name: provided.get(name) or f"127.0.0.1:{free_port()}"
                 for name in set(README_ADDRESSES.values())}
        return {spelling: _spelled(spelling, ports[name])
                for spelling, name in README_ADDRESSES.items()}

    def _start_paramstore(self) -> dict[str, str]:
        server = self._stack.enter_context(running_server(self._folder / "paramstore-data"))
        return {"paramstore": server.address}

    def _start_moto(self) -> dict[str, str]:
        return {"moto": self._stack.enter_context(moto_server()).removeprefix("http://")}

    def _start_etcd(self) -> dict[str, str]:
        return {"etcd": self._stack.enter_context(etcd_server())}

    def _start_cluster(self) -> dict[str, str]:
        """Three replicas, on an etcd and a moto of their own, at the README's three
        paramstore addresses."""
        etcd = self._stack.enter_context(etcd_server())
        cluster = Cluster(etcd, self._stack.enter_context(moto_server()), lease_ttl=10)
        self._stack.callback(cluster.stop_all)
        cluster.start_all()
        return dict(zip(("paramstore", "replica-2", "replica-3"),
                        (replica.address for replica in cluster.replicas), strict=True))


def _spelled(spelling: str, address: str) -> str:
    """`address` (host:port) written as the README writes `spelling`."""
    port = address.rsplit(":", 1)[1]
    if spelling.startswith("http://"):
        return f"http://{address}"
    if spelling.startswith("-p "):
        return f"-p {port}"
    return address


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        yield Services(stack, tmp_path_factory.mktemp("readme-services"))


def environment(addresses: dict[str, str]) -> dict[str, str]:
    """The blocks' environment: this Python's tools first on PATH, and the CLI pointed at the
    test's paramstore (a block that omits `--address` must not reach a real server)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PARAMSTORE_ADDRESS": addresses[PARAMSTORE_ADDRESS]}


def prepared(block: Block, addresses: dict[str, str]) -> str:
    return substitute(block.code, {**addresses, ".venv/bin/": f"{BIN}/"})


def run_block(block: Block, addresses: dict[str, str], folder: Path) -> str:
    """Run a Python or shell block in `folder`; returns what it printed."""
    code = prepared(block, addresses)
    command = ([sys.executable, "-c", code] if block.language == "python"
               else ["bash", "-e", "-o", "pipefail", "-c", code])
    done = subprocess.run(command, cwd=folder, env=environment(addresses), capture_output=True,
                          text=True, timeout=BLOCK_TIMEOUT)
    assert done.returncode == 0, (
        f"README block at line {block.line} failed:\n{code}\n--- stdout\n{done.stdout}\n"
        f"--- stderr\n{done.stderr}")
    return done.stdout


def serve_block(block: Block, addresses: dict[str, str], folder: Path) -> None:
    """Start a block that keeps serving, wait until paramstore answers where the README says,
    use it as a client would, then stop the block and everything it started."""
    assert PARAMSTORE_ADDRESS in block.code, (
        f"README block at line {block.line} serves: it must listen on {PARAMSTORE_ADDRESS}")
    address = addresses[PARAMSTORE_ADDRESS]
    log = folder / "block.log"  # a file, not a pipe: servers the block leaves behind hold it
    with log.open("w") as output:
        process = subprocess.Popen(["bash", "-e", "-c", prepared(block, addresses)],
                                   cwd=folder, env=environment(addresses), stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for_health(grpc.insecure_channel(address), 60)
        except grpc.RpcError:
            raise AssertionError(f"README block at line {block.line} did not serve on "
                                 f"{address}:\n{log.read_text()}") from None
        with connect(address) as client:
            store = client.create_store(f"readme-{uuid.uuid4().hex[:8]}")
            store.push({"w": np.arange(6, dtype=np.float32)})
            snapshot = store.snapshot(step=1)
            assert [info.id for info in store.snapshots()] == [snapshot.id]
            client.delete_store(store.name)
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the block's process group (its servers too), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def check_commands(block: Block) -> None:
    for words in commands(block.code):
        checked = check_command([substitute(word, {".venv/bin/": f"{BIN}/"}) for word in words])
        done = subprocess.run(checked, cwd=REPOSITORY, env=environment({PARAMSTORE_ADDRESS: ""}),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (
            f"README block at line {block.line}: `{' '.join(words)}` does not exist "
            f"(`{' '.join(checked)}` failed):\n{done.stdout}{done.stderr}")


@pytest.mark.parametrize("block", [block for block in BLOCKS if block.mode != "skip"],
                         ids=lambda block: block.name)
def test_readme_block_runs_as_written(block: Block, services: Services,
                                      tmp_path: Path) -> None:
    if block.mode == "commands exist":
        check_commands(block)
        return
    for _ in range(SERVES_RUNS if block.mode == "serves" else RUNS):
        addresses = services.addresses(block.needs)
        if block.mode == "serves":
            serve_block(block, addresses, tmp_path)
            continue
        printed = run_block(block, addresses, tmp_path)
        if block.output is not None:
            assert _lines(printed) == _lines(block.output), (
                f"README block at line {block.line} printed something else than the README "
                f"shows after it:\n{printed}")


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def test_the_readme_has_blocks_of_every_kind() -> None:
    modes = {block.mode for block in BLOCKS}
    assert {"run", "serves", "commands exist"} <= modes
    assert any(block.output is not None for block in BLOCKS)


def test_make_serve_listens_where_address_says() -> None:
    shown = subprocess.run(["make", "-n", "serve", "ADDRESS=127.0.0.1:50061"], cwd=REPOSITORY,
                           capture_output=True, text=True, timeout=60)
    assert "paramstore serve --address 127.0.0.1:50061 " in shown.stdout, shown.stderr


def test_an_unknown_directive_is_refused() -> None:
    with pytest.raises(AnnotationError, match="unknown readme-test directive 'runs'"):
        parse_annotation(" runs ", 3)
    with pytest.raises(AnnotationError, match="unknown service"):
        parse_annotation(" needs redis ", 3)


def test_directives_combine() -> None:
    assert parse_annotation(" serves; needs moto, etcd ", 1) == ("serves",
                                                                 frozenset({"moto", "etcd"}))


def test_addresses_are_replaced_once_and_whole() -> None:
    addresses = {"127.0.0.1:50051": "127.0.0.1:4000", "127.0.0.1:5000": "127.0.0.1:50051"}
    assert substitute("a 127.0.0.1:50051 b 127.0.0.1:5000 c 127.0.0.1:50000",
                      addresses) == "a 127.0.0.1:4000 b 127.0.0.1:50051 c 127.0.0.1:50000"


def test_a_block_that_needs_etcd_and_moto_reaches_them(services: Services,
                                                       tmp_path: Path) -> None:
    block = Block(0, "python", (
        "import urllib.request\n"
        "health = urllib.request.urlopen('http://127.0.0.1:2379/health', timeout=5).read()\n"
        "assert b'true' in health, health\n"
        "urllib.request.urlopen('http://127.0.0.1:5000', timeout=5)\n"
        "print('ok')\n"), needs=frozenset({"etcd", "moto"}))
    assert run_block(block, services.addresses(block.needs), tmp_path) == "ok\n"

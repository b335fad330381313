"""`paramstore serve` as a child process on loopback, and the `paramstore` CLI run against it.

For the end-to-end tests that need a real server process: to kill it with SIGKILL, restart it
on the same data, or reach it from the command line as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from paramstore.client import Client, connect
from paramstore.server.process import START_TIMEOUT_SECONDS, start_serve


def paramstore_command() -> list[str]:
    """The installed `paramstore` console script (beside this Python), else its module."""
    script = Path(sys.executable).with_name("paramstore")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "paramstore.client.cli"]


@dataclass
class ServerProcess:
    """One `paramstore serve --address 127.0.0.1:0 --data-dir DATA_DIR [flags]` process.

    `start()` waits until it answers health checks; `address` is where it listens (a new
    free port at every start); `log` collects its stderr."""

    data_dir: Path
    flags: tuple[str, ...] = ()
    token: str | None = None
    tls_ca: Path | None = None  # the certificate to trust when the server speaks TLS
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment
    address: str = ""
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    def start(self) -> ServerProcess:
        self.log = []
        self.process, self.address = start_serve(self.data_dir, *self.flags, log=self.log,
                                                 env=self.env)
        _wait_until_serving(self.address, self.tls_ca)
        return self

    def kill(self) -> None:
        """SIGKILL: no draining, no clean-up, as a crash or an OOM kill would end it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self._reap()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=timeout)
        self._reap()
        return status

    def restart(self) -> ServerProcess:
        """Kill the process (if running) and start a new one on the same data folder."""
        self.kill()
        return self.start()

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()

    def connect(self, **options: Any) -> Client:
        options.setdefault("token", self.token)
        options.setdefault("tls", self.tls_ca or False)
        return connect(self.address, **options)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `paramstore ARGS` against this server (address and token from the environment,
        as a user's shell would give them)."""
        env = {**os.environ, "PARAMSTORE_ADDRESS": self.address}
        env.pop("PARAMSTORE_TOKEN", None)
        if token or self.token:
            env["PARAMSTORE_TOKEN"] = token or self.token or ""
        return subprocess.run([*paramstore_command(), *args], env=env, capture_output=True,
                              text=True, timeout=60)


@contextmanager
def running_server(
    data_dir: Path, *flags: str, token: str | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[ServerProcess]:
    """A started `ServerProcess`, killed on exit if still running. `token`: required from
    clients; `tls`: (certificate, key) PEM files, the certificate also trusted by clients."""
    if token is not None:
        token_file = data_dir.parent / f"{data_dir.name}.token"
        token_file.write_text(token + "\n")
        flags = (*flags, "--token-file", str(token_file))
    if tls is not None:
        flags = (*flags, "--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
    server = ServerProcess(data_dir, flags, token, tls[0] if tls else None)
    try:
        yield server.start()
    finally:
        server.kill()


def _wait_until_serving(address: str, tls_ca: Path | None) -> None:
    if tls_ca is None:
        channel = grpc.insecure_channel(address)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca.read_bytes())
        channel = grpc.secure_channel(address, credentials)
    wait_for_health(channel, START_TIMEOUT_SECONDS)


def wait_for_health(channel: grpc.Channel, timeout: float) -> None:
    """Poll the standard health service on `channel` (then closed) until it says SERVING."""
    deadline = time.monotonic() + timeout
    with channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)


def wait_for_line(process: subprocess.Popen, start: str) -> None:
    """Read a child process's stdout until a line starts with `start`."""
    for line in process.stdout:  # type: ignore[union-attr]
        if line.startswith(start):
            return
    raise AssertionError(f"the process ended without printing {start!r}")

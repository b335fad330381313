"""moto's S3-compatible server on loopback, as the tests' object storage (a real HTTP server
speaking the S3 protocol, as s3fs's own suite uses it; no client is mocked).

`moto_server` comes with the test extras; a missing one fails the tests, never skips them.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "paramstore-tests",
    "AWS_SECRET_ACCESS_KEY": "paramstore-tests",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lasting_port() -> int:
    """A free port below the kernel's range of ephemeral ports, for a server restarted under
    the same address: while it is down, no outgoing connection can take its port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            lowest_ephemeral = int(ranges.read().split()[0])
    except OSError:
        return free_port()
    for _ in range(100):
        port = random.randrange(max(1024, lowest_ephemeral - 20000), lowest_ephemeral)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def wait_for_port(process: subprocess.Popen, port: int, name: str,
                  timeout: float = 30.0) -> None:
    """Wait until `process` accepts connections on loopback `port`; `RuntimeError` naming it
    when it exits or does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.1)


@contextmanager
def moto_server() -> Iterator[str]:
    """A `moto_server` process on a free loopback port; yields its endpoint URL."""
    os.environ.update(CREDENTIALS)  # the SDK, server processes and boto3 read these
    port = free_port()
    command = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen([str(command), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(process, port, "moto_server")
        yield endpoint
    finally:
        process.kill()
        process.wait()


def new_bucket(endpoint: str) -> str:
    """A fresh, empty bucket: every test its own."""
    name = f"paramstore-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name

"""A real etcd (Debian's `etcd-server`, 3.4) on loopback, as the replicas' coordinator.

`make test` installs it when it is missing; a missing one fails the tests, never skips them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from s3_server import free_port, wait_for_port


@contextmanager
def etcd_server() -> Iterator[str]:
    """An etcd process on free loopback ports with its data in a temporary folder; yields its
    client address `127.0.0.1:PORT`."""
    command = shutil.which("etcd")
    if command is None:
        raise RuntimeError("etcd is not installed: `apt-get install etcd-server` (make test "
                           "does it)")
    client, peer = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="paramstore-etcd-") as folder:
        process = subprocess.Popen(
            [command, "--name", "paramstore-tests", "--data-dir", folder,
             "--listen-client-urls", f"http://127.0.0.1:{client}",
             "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"paramstore-tests=http://127.0.0.1:{peer}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(process, client, "etcd")
            yield f"127.0.0.1:{client}"
        finally:
            process.kill()
            process.wait()

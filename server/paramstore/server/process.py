"""`paramstore serve` as a child process: the one way tests, benchmarks and demos start one.

The server binds port 0 (a free port) and writes the address it bound to a port file
(`--port-file`), which `start_serve` waits for: no log parsing, no race on a guessed port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

START_TIMEOUT_SECONDS = 30.0


def start_serve(data_dir: str | Path, *flags: str, log: list[str] | None = None,
                env: Mapping[str, str] | None = None,
                timeout: float = START_TIMEOUT_SECONDS) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m paramstore.server --address 127.0.0.1:0 --data-dir DATA_DIR FLAGS`
    and return the process and the `host:port` it listens on, once it is bound.

    Its log (stderr) is read continuously, so that a full pipe never blocks it, into `log`
    when given. `env`: variables added to this process's environment. Raises `RuntimeError`
    with the log when it exits or does not bind within `timeout` seconds."""
    lines = log if log is not None else []
    with tempfile.TemporaryDirectory(prefix="paramstore-port-") as folder:
        port_file = Path(folder) / "address"
        process = subprocess.Popen(
            [sys.executable, "-m", "paramstore.server", "--address", "127.0.0.1:0",
             "--data-dir", str(data_dir), "--port-file", str(port_file), *flags],
            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
        )
        threading.Thread(target=lines.extend, args=(process.stderr,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                process.wait()
                raise RuntimeError("paramstore serve did not start:\n" + "".join(lines))
            time.sleep(0.02)
        return process, port_file.read_text().strip()

"""The README's checkpoint-management example, run as written against a real server, twice.

The block is taken from the README itself (the one under "### Checkpoint management"), so the
README cannot drift from what the SDK does; the server's address replaces the README's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from server_process import running_server

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "127.0.0.1:50051"


def checkpoint_block() -> str:
    text = README.read_text()
    section = text[text.index("### Checkpoint management"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_checkpoint_example_runs_as_written_and_again(tmp_path):
    block = checkpoint_block()
    assert README_ADDRESS in block
    with running_server(tmp_path / "data") as server:
        for _ in range(2):  # it deletes its store first and last: it can run again
            done = subprocess.run([sys.executable, "-c",
                                   block.replace(README_ADDRESS, server.address)],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == [f"0000000{i}" for i in range(1, 5)]
    assert lines[4].split() == ["PARAMETER", "STATUS", "L2", "RELATIVE", "TIES"]
    assert lines[5].split()[:2] == ["body", "unchanged"] and lines[6].split()[:2] == [
        "head", "changed"]

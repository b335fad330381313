"""The CLI on hostile files: directories, FIFOs, files that are not safetensors and names or
metadata carrying terminal escape sequences. One clear line, no hang, no traceback, nothing
that a terminal would interpret."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_process import paramstore_command

from paramstore.client.cli import main, printable

ESCAPES = ["\x1b[2J", "\x1b]0;pwned\x07", "\x9b31m", "\r\x7f"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*paramstore_command(), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", ["inspect", "import"])
def test_a_fifo_is_refused_without_hanging(tmp_path, command):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    args = [command, str(fifo)] + (["s", "--address", "127.0.0.1:1"] if command == "import"
                                   else [])
    result = run(*args, timeout=20)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("is a FIFO, not a safetensors file")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("command", ["inspect", "import"])
def test_a_directory_is_refused_in_one_line(tmp_path, capsys, command):
    args = [command, str(tmp_path)] + (["s"] if command == "import" else [])
    assert main(args) == 1
    assert capsys.readouterr().err.strip().endswith("is a directory, not a safetensors file")


def test_a_file_that_is_not_safetensors_is_reported_by_its_header_length(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not tensors\n")
    assert main(["inspect", str(path)]) == 1
    error = capsys.readouterr().err
    assert "not a safetensors file" in error and "-byte header" in error
    assert f"has {path.stat().st_size} bytes" in error


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_random_bytes_give_one_error_line(tmp_path, capsys, raw):
    path = tmp_path / "random.bin"
    path.write_bytes(raw)
    code = main(["inspect", str(path)])
    out, err = capsys.readouterr()
    if code:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not [ch for ch in out + err if ch != "\n" and not ch.isprintable()]


@pytest.mark.parametrize("escape", ESCAPES)
def test_escape_sequences_in_metadata_never_reach_the_terminal(tmp_path, capsys, escape):
    path = tmp_path / "escapes.safetensors"
    safetensors.numpy.save_file({"w": np.zeros(2, np.float32)}, str(path),
                                metadata={"note": f"hi{escape}there",
                                          "paramstore.prefix": f"net{escape}_"})
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert not [ch for ch in out if ch != "\n" and not ch.isprintable()]
    assert printable(escape) in out


def test_printable_escapes_every_control_character():
    controls = "".join(map(chr, [*range(32), *range(0x7f, 0xa0)]))
    assert printable(controls).isascii() and printable(controls).isprintable()
    assert printable("net_dense0_weight ünïcode") == "net_dense0_weight ünïcode"

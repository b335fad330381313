"""Shared-memory segments without a server: a worker's segment is a sealed memfd that can never
shrink, and only such a memfd of the name given is ever opened and mapped."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from contextlib import ExitStack

import pytest
from hostile_segments import CANNOT_OPEN, SEALED, hostile_segment, memfd, named
from hypothesis import given
from hypothesis import strategies as st

from paramstore.proto import shared_memory as segments

__all__ = ["hostile_segment"]  # a fixture of this module


def test_a_segment_can_neither_shrink_nor_grow_nor_lose_its_seals() -> None:
    segment = segments.create(100)
    try:
        descriptor = int(segment.name.rpartition("/")[2])
        for size in (0, 50, 4096):
            with pytest.raises(PermissionError):
                os.ftruncate(descriptor, size)
        with pytest.raises(PermissionError):
            fcntl.fcntl(descriptor, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
        assert os.fstat(descriptor).st_size == len(segment.mapped) == segment.size == 100
    finally:
        segment.close()


def test_what_a_worker_writes_in_its_segment_the_server_reads_and_answers() -> None:
    segment = segments.create(segments.PROBE_BYTES)
    try:
        segment.mapped[:] = b"0123456789abcdef"
        assert segments.read_probe(segment.name) == b"0123456789abcdef"
        mapped = segments.open_mapped(segment.name)
        mapped[:4] = b"done"
        assert segment.mapped[:6] == b"done45"
        mapped.close()
    finally:
        segment.close()


def test_a_closed_segment_is_gone_for_the_server() -> None:
    segment = segments.create(64)
    assert segments.exists(segment.name)
    segment.close()
    segment.close()  # twice is harmless
    assert not segments.exists(segment.name)
    assert segments.read_probe(segment.name) == b""


def test_a_segment_garbage_collected_unclosed_closes_its_descriptor() -> None:
    name = segments.create(64).name
    assert not segments.exists(name)


def test_a_descriptor_reused_for_another_file_is_not_the_segment_any_more() -> None:
    segment = segments.create(64)
    descriptor = int(segment.name.rpartition("/")[2])
    with ExitStack() as stack:
        other = memfd(stack, SEALED, name=f"paramstore-{'a' * 32}")
        segment.close()
        os.dup2(other, descriptor)
        stack.callback(os.close, descriptor)
        assert not segments.exists(segment.name)
        with pytest.raises(ValueError, match="not the memfd"):
            segments.open_mapped(segment.name)


def test_the_segments_of_a_process_that_exited_are_gone() -> None:
    script = ("from paramstore.proto import shared_memory as s\n"
              "segment = s.create(64)\nprint(segment.name)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    name = done.stdout.strip()
    assert segments.NAME.match(name) and not segments.exists(name)
    with pytest.raises(OSError):
        segments.open_mapped(name)


def test_anything_but_a_sealed_memfd_of_the_name_is_refused(
        hostile_segment: tuple[str, str]) -> None:
    name, refusal = hostile_segment
    if refusal == CANNOT_OPEN:
        with pytest.raises(OSError):
            segments.open_mapped(name)
    else:
        with pytest.raises(ValueError, match=refusal):
            segments.open_mapped(name)
    assert segments.read_probe(name) == b""


def test_the_sealed_memfd_of_the_name_is_accepted() -> None:
    # The hostile cases above differ from this one in one thing each.
    with ExitStack() as stack:
        name = named(memfd(stack, SEALED))
        with segments.open_mapped(name) as mapped:
            assert len(mapped) == 4096


@given(st.text(max_size=80) | st.from_regex(r"paramstore-[0-9a-fA-F]{30,34}@-?[0-9]{1,12}"
                                            r"/-?[0-9]{1,12}.?", fullmatch=True))
def test_names_not_of_the_segment_form_are_refused_before_anything_is_opened(
        name: str) -> None:
    if segments.NAME.match(name) is None:
        with pytest.raises(ValueError, match="not a shared-memory segment name"):
            segments.open_mapped(name)
    else:  # of the form, it names nothing this process holds open as that memfd
        with pytest.raises((OSError, ValueError)):
            segments.open_mapped(name)

"""Pushes and pulls reuse the memory of the last transfer instead of page-faulting it in again."""

import json
import os
import subprocess
import sys

import pytest

TRANSFERS = """
import json, resource, sys, tempfile
from pathlib import Path
import numpy as np
from paramstore.client import connect, data_transfers
from paramstore.server.process import start_serve

data_transfers.MIN_BYTES = 1 << 62  # gRPC's chunks: the data channel makes none

def server_faults(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])

def server_huge_page_bytes(pid):
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(rollup.split("AnonHugePages:")[1].split()[0]) << 10

def client_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

tensors = {f"layer{index}_weight": np.full(1 << 20, index, np.float32) for index in range(16)}
local = {name: np.empty_like(array) for name, array in tensors.items()}
server, address = start_serve(Path(tempfile.mkdtemp()) / "data")
try:
    with connect(address, progress=False) as client:
        store = client.create_store("memory")
        store.push(tensors)
        store.pull(local)
        before = server_faults(server.pid)
        for _ in range(3):
            store.push(tensors)
        pushed = (server_faults(server.pid) - before) / 3
        huge = server_huge_page_bytes(server.pid)
        before = client_faults()
        for _ in range(3):
            store.pull(local)
        pulled = (client_faults() - before) / 3
        assert all(np.array_equal(local[name], tensors[name]) for name in tensors)
finally:
    server.kill()
    server.wait()
print(json.dumps({"push": pushed, "pull": pulled, "huge": huge}))
"""


def faults_per_transfer(pool: str) -> dict[str, float]:
    """Page faults per 64 MiB push (in the server) and pull (in the client), and the server's
    bytes in transparent huge pages after the pushes."""
    env = dict(os.environ, PARAMSTORE_MALLOC_POOL=pool)
    result = subprocess.run([sys.executable, "-c", TRANSFERS], env=env, capture_output=True,
                            text=True, check=True, timeout=300)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def faults() -> dict[str, dict[str, float]]:
    kept, returned = faults_per_transfer("1"), faults_per_transfer("0")
    print(f"page faults per 64 MiB transfer: {kept} kept, {returned} returned to the OS")
    return {"kept": kept, "returned": returned}


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's malloc settings")


def test_a_pull_reuses_the_last_pulls_chunk_memory(faults):
    assert faults["returned"]["pull"] > 1000  # each chunk's buffer comes back from the OS
    assert faults["kept"]["pull"] < faults["returned"]["pull"] / 3


def test_a_push_reuses_the_memory_of_the_tensors_it_replaces(faults):
    # Whichever of the server's threads receives it (they share one arena); gRPC's own
    # buffers remain.
    assert faults["kept"]["push"] < faults["returned"]["push"] / 3


def _huge_pages_on_advice_only() -> bool:
    try:
        return "[madvise]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False


@pytest.mark.skipif(not _huge_pages_on_advice_only(),
                    reason="huge pages only where NumPy's advice decides")
def test_a_push_faults_its_fresh_memory_in_small_pages(faults):
    # NumPy advises huge pages for arrays of 4 MiB and more: these 4 MiB tensors, two stores'
    # worth, would sit in huge pages.
    assert faults["kept"]["huge"] < 8 << 20

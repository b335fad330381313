"""Checkpoint management's costs as ratios to a baseline measured in the same run.

Partial restore: a snapshot of `--size-mib` MiB in 100 equal tensors (one is 1% of it) is
restored whole and then with `select` naming one tensor, through the storage catalog on the
local backend. Before each restore the file's pages are dropped from the page cache
(`posix_fadvise(DONTNEED)` on the fsynced file), so that every byte the restore needs comes
from the disk; the bytes read are the process's `read_bytes` (Linux `/proc/self/io`) during
the restore. Reported: bytes read and time of the selected restore over the full one.

Delta snapshots: the same store with 90% of its tensors frozen and the other 10% rewritten
between snapshots (a fine-tune), snapshotted in full and as a delta of the previous snapshot,
alternately. Reported: the delta's bytes and time over the full snapshot's.

    python bench/checkpoints.py [--size-mib 1024] [--repeat 3] [--dir FOLDER]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from paramstore.server.storage import Catalog, Contents, LocalBackend
from paramstore.server.stores import Store, StoreState, validated_info

TENSORS = 100


def read_bytes() -> int:
    """Bytes this process has caused to be fetched from storage so far."""
    text = Path("/proc/self/io").read_text()
    return int(re.search(r"^read_bytes: (\d+)$", text, re.M).group(1))


def drop_cache(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def measured(run: Callable[[], object], path: str) -> tuple[int, float]:
    """(bytes read, seconds) of `run()` with the snapshot's pages out of the cache."""
    drop_cache(path)
    before, started = read_bytes(), time.perf_counter()
    run()
    return read_bytes() - before, time.perf_counter() - started


def state_of(size_mib: int) -> StoreState:
    count = size_mib * (1 << 20) // 4 // TENSORS
    rng = np.random.default_rng(0)
    data = {f"layer{index:03d}_weight": rng.standard_normal(count, np.float32)
            for index in range(TENSORS)}
    parameters = {name: validated_info(name, array.shape, "float32", "float32", "Parameter",
                                       None, 1 << 62) for name, array in data.items()}
    return StoreState("net_", 1, parameters, data)


def touched(contents: Contents) -> int:
    """Use every restored array, as a pull would: the mapped bytes must come in."""
    return sum(int(array[-1] != 0) for array in contents.state.data.values())


def delta_figures(catalog: Catalog, size_mib: int, repeat: int) -> None:
    catalog.create_store("tune")
    store = Store("tune", state_of(size_mib))
    capture = lambda: Contents(*store.capture())  # noqa: E731
    catalog.take_snapshot("tune", capture)
    tuned = sorted(store.state().data)[: TENSORS // 10]
    full, delta = [], []
    for _ in range(repeat):
        for kind, results in (("full", full), ("delta", delta)):
            store.update(lambda state: {name: state.data[name] + 1.0 for name in tuned})
            started = time.perf_counter()
            pending = catalog.begin_snapshot("tune", capture, delta=kind == "delta")
            info = catalog.finish_snapshot(pending)
            results.append((time.perf_counter() - started, info.size_bytes))
            assert bool(info.base) == (kind == "delta")
    full_time, full_bytes = min(full)
    delta_time, delta_bytes = min(delta)
    print(f"full snapshot:  {full_bytes / (1 << 20):8.1f} MiB  {full_time:7.3f} s")
    print(f"delta snapshot: {delta_bytes / (1 << 20):8.1f} MiB  {delta_time:7.3f} s "
          f"({len(tuned)} of {TENSORS} tensors changed)")
    print(f"delta / full: bytes {delta_bytes / full_bytes:.3f}, time {delta_time / full_time:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where to write the snapshot (default: a temporary "
                                      "folder on this disk)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir or os.getcwd()) as folder:
        catalog = Catalog(LocalBackend(folder))
        catalog.create_store("net")
        info = catalog.take_snapshot("net", lambda: Contents(state_of(args.size_mib)))
        with catalog.snapshot_file("net", info.id) as (_, path):
            selected = re.compile("layer042_").match
            full = [measured(lambda: touched(catalog.read_snapshot("net", "latest")), path)
                    for _ in range(args.repeat)]
            part = [measured(lambda: touched(catalog.read_snapshot(
                "net", "latest", lambda name: selected(name) is not None)), path)
                for _ in range(args.repeat)]
        full_bytes, full_time = min(full)[0], min(seconds for _, seconds in full)
        part_bytes, part_time = min(part)[0], min(seconds for _, seconds in part)
        print(f"snapshot: {info.size_bytes / (1 << 20):.0f} MiB in {TENSORS} tensors; "
              f"select: 1 tensor ({100 / TENSORS:.0f}%)")
        print(f"full restore:     {full_bytes / (1 << 20):8.1f} MiB read  {full_time:7.3f} s")
        print(f"selected restore: {part_bytes / (1 << 20):8.1f} MiB read  {part_time:7.3f} s")
        if full_bytes:
            print(f"selected / full: bytes read {part_bytes / full_bytes:.3f}, "
                  f"time {part_time / full_time:.3f}")
        else:
            print("read_bytes stayed 0: this file system does not count reads (tmpfs?)")
        catalog.delete_store("net")
        delta_figures(catalog, args.size_mib, args.repeat)


if __name__ == "__main__":
    main()

"""Snapshots on S3-compatible storage against plain object transfers, in one run.

A `paramstore serve --data-dir s3://...` process and the baselines talk to the same moto server
(a separate process on loopback). The baselines are one plain `PutObject` (to a new key, as a
snapshot's) and one plain `GetObject` of the very bytes of a snapshot object, with boto3
configured as the server's client is (`client_config()`: no checksums or payload hashes of
botocore's own). Measured:

- the service: a snapshot and a restore of a `--size-mib` store, through the server;
- a selected restore of one tensor in 32, through the server, and the bytes it downloads
  (counted by a proxy between the server and moto);
- the backend's ways of moving the same file, in this process: one request each way, and
  parallel parts (multipart upload, ranged GETs).

Ratios are baseline time / paramstore time (above 1: faster than the plain transfer), best of
`--repeat` alternating rounds. moto keeps objects in memory here (its default spools them to
disk, whose writeback made every transfer's time vary two- to threefold).

    python bench/s3.py [--size-mib 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "service"))
from s3_server import moto_server  # noqa: E402
from service import TENSORS  # noqa: E402
from tcp_proxy import FaultyProxy  # noqa: E402

from paramstore import checkpoint  # noqa: E402
from paramstore.client import connect  # noqa: E402
from paramstore.server.process import start_serve  # noqa: E402
from paramstore.server.storage.s3 import (  # noqa: E402
    PARALLEL_TRANSFERS,
    PART_BYTES,
    S3Backend,
    client_config,
)


def report(label: str, mib: float, ours: float, baseline: float, baseline_label: str) -> None:
    print(f"{label:<32} {mib / ours:6.0f} MiB/s ({ours * 1000:5.0f} ms)   {baseline_label} "
          f"{mib / baseline:6.0f} MiB/s ({baseline * 1000:5.0f} ms)   ratio {baseline / ours:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_tensor = args.size_mib * (1 << 20) // TENSORS // 4
    tensors = {f"layer{index:02d}_weight": rng.random(per_tensor, dtype=np.float32)
               for index in range(TENSORS)}
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(1 << 30)
    with moto_server() as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client("s3", endpoint_url=endpoint, config=client_config())
        s3.create_bucket(Bucket=bucket)
        server, address = start_serve(f"s3://{bucket}/data", "--s3-endpoint", endpoint)
        try:
            with connect(address, progress=False) as client:
                store = client.create_store("bench")
                store.push(tensors)
                ids = [store.snapshot().id]
                (key,) = [item["Key"] for item in s3.list_objects_v2(
                    Bucket=bucket, Prefix="data/")["Contents"] if "/data/" in item["Key"]]
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                plain = Plain(s3, bucket, data)
                mib = len(data) / (1 << 20)

                def snapshot() -> None:
                    ids.append(store.snapshot().id)

                def forget_older() -> None:
                    for old in ids[:-1]:
                        store.delete_snapshot(old)
                    del ids[:-1]

                def restore() -> None:
                    store.restore(ids[-1])

                snapshot_time, put = best_of(args.repeat, (snapshot, forget_older),
                                             (plain.put, plain.forget))
                restore_time, get = best_of(args.repeat, (restore, None), (plain.get, None))
                cpu = [cpu_seconds(snapshot, lambda: process_cpu(server.pid)),
                       cpu_seconds(plain.put, time.thread_time),
                       cpu_seconds(restore, lambda: process_cpu(server.pid)),
                       cpu_seconds(plain.get, time.thread_time)]
                forget_older()
        finally:
            server.kill()
            server.wait()
        selected, downloaded = selected_restore(endpoint, bucket, args.repeat)
        variants = backend_variants(endpoint, bucket, tensors, plain, args.repeat)
    print(f"{mib:.0f} MiB in {TENSORS} tensors on moto; best of {args.repeat}; baselines: one "
          "PutObject to a new key and one GetObject of the snapshot's bytes, with boto3 "
          "configured as the server's client (client_config: no botocore checksums, "
          "unsigned payload)")
    report("snapshot (service)", mib, snapshot_time, put, "PutObject")
    report("restore (service)", mib, restore_time, get, "GetObject")
    print(f"CPU seconds, the server process / the plain transfer's thread: snapshot "
          f"{cpu[0]:.2f} / PutObject {cpu[1]:.2f}, restore {cpu[2]:.2f} / GetObject {cpu[3]:.2f}")
    print(f"selected restore of 1 tensor in {TENSORS} (service): {selected * 1000:.0f} ms, "
          f"{downloaded / (1 << 20):.2f} MiB downloaded for a {mib / TENSORS:.2f} MiB tensor")
    for label, ours, baseline, baseline_label in variants:
        report(label, mib, ours, baseline, baseline_label)


def selected_restore(endpoint: str, bucket: str, repeat: int) -> tuple[float, float]:
    """A restore of one tensor of the store by a server whose downloads a proxy counts: its
    best time, and the bytes it downloads."""
    proxy = FaultyProxy(urlsplit(endpoint).port or 80)
    server, address = start_serve(f"s3://{bucket}/data", "--s3-endpoint", proxy.endpoint)
    try:
        with connect(address, progress=False) as client:
            store = client.store("bench")
            before = proxy.downloaded
            (selected,) = best_of(repeat, (lambda: store.restore("latest", select="layer07_"),
                                           None))
            return selected, (proxy.downloaded - before) / repeat
    finally:
        server.kill()
        server.wait()
        proxy.close()


def process_cpu(pid: int) -> float:
    """The CPU seconds process `pid` has used (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(run: Callable[[], object], clock: Callable[[], float]) -> float:
    started = clock()
    run()
    return clock() - started


class Plain:
    """The baselines: `data` put to a new key each time (the one before deleted, untimed), and
    the newest got."""

    def __init__(self, s3: Any, bucket: str, data: bytes) -> None:
        self.s3, self.bucket, self.data = s3, bucket, data
        self.numbers = itertools.count()
        self.key = self.older = "plain"
        s3.put_object(Bucket=bucket, Key=self.key, Body=data)

    def put(self) -> None:
        self.older, self.key = self.key, f"plain-{next(self.numbers)}"
        self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self.data)

    def forget(self) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.older)

    def get(self) -> None:
        self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()


def backend_variants(endpoint: str, bucket: str, tensors: dict[str, np.ndarray], plain: Plain,
                     repeat: int) -> list[tuple[str, float, float, str]]:
    """The file moved by the backend in one request each way, and in parallel parts."""
    planned = checkpoint.plan(tensors)
    single = S3Backend(bucket, "variants", endpoint=endpoint)
    parts = S3Backend(bucket, "variants", endpoint=endpoint, single_request_bytes=0)
    names = (f"v{number}" for number in itertools.count())
    written: list[str] = []

    def upload(backend: S3Backend) -> Callable[[], None]:
        def run() -> None:
            written.append(next(names))
            backend.write_checkpoint(written[-1], planned)
        return run

    def forget_older() -> None:
        for key in written[:-1]:
            single.delete(key)
        del written[:-1]

    put, up_single, up_parts = best_of(repeat, (plain.put, plain.forget),
                                       (upload(single), forget_older),
                                       (upload(parts), forget_older))
    get, down_single, down_parts = best_of(
        repeat, (plain.get, None), (lambda: single.open_checkpoint(written[-1]), None),
        (lambda: parts.open_checkpoint(written[-1]), None))
    in_parts = f"{PART_BYTES >> 20} MiB x {PARALLEL_TRANSFERS}"
    return [("backend up, one request", up_single, put, "PutObject"),
            (f"backend up, parts {in_parts}", up_parts, put, "PutObject"),
            ("backend down, one request", down_single, get, "GetObject"),
            (f"backend down, ranges {in_parts}", down_parts, get, "GetObject")]


def best_of(repeat: int, *runs: tuple[Callable[[], object], Callable[[], object] | None]
            ) -> list[float]:
    """The best time of each run over `repeat` alternating rounds, in seconds; a run's
    clean-up, if any, follows it untimed."""
    times = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, (run, clean_up) in enumerate(runs):
            started = time.perf_counter()
            run()
            times[index] = min(times[index], time.perf_counter() - started)
            if clean_up is not None:
                clean_up()
    return times


if __name__ == "__main__":
    main()

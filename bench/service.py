"""The service's speed as ratios to bare baselines, measured in one run on this machine.

1. Push and pull of a store of `--size-mib` MiB (32 float32 tensors) through the SDK to a
   `paramstore serve` process, against the best of 1, 2 and 4 parallel bare grpcio byte
   streams of the same bytes between two processes on loopback: client-streaming uploads,
   server-streaming downloads, 1 MiB messages, handled by a generic handler that keeps the
   uploaded messages and streams them back. Each stream count's rate is printed too, and the
   CPU time each side spent per MiB (the server process's and this one's), a figure that a
   busy machine disturbs far less than wall time.
2. Snapshot and restore of that store on the server, against `safetensors.numpy.save_file` +
   fsync and `safetensors.numpy.load_file` of the same tensors in the same folder.
3. Many small parameters: stores of 10,000 and 100,000 four-element float32 parameters
   pushed, pulled, snapshotted and restored, with the ratios push/snapshot and pull/snapshot
   (the floor: at most 2, a batch per message and no per-parameter round trip) and snapshot
   and restore against safetensors as in 2 (per-tensor costs rather than bandwidth); and
   `collect_params()` of the 10,000, in milliseconds.
4. The server's memory while it restores a store of `--restore-mib` MiB: its peak resident set
   during the restore (Linux `VmHWM`, reset just before) over the store's data bytes.

Runs of the two sides alternate so that a noisy neighbour slows both; the best of `--repeat`
rounds is reported. Ratios against a baseline are baseline time / paramstore time (1.0: as
fast as the baseline).

    python bench/service.py [--size-mib 256] [--repeat 3] [--restore-mib 1024] [--dir FOLDER]
                            [--rounds N] [--bandwidth-only | --many-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import safetensors.numpy

from paramstore.client import Client, RemoteStore, connect
from paramstore.proto.chunks import CHUNK_BYTES
from paramstore.server.process import start_serve

TENSORS = 32
LISTED_PARAMETERS = 10_000
MANY_PARAMETERS = (LISTED_PARAMETERS, 100_000)
_UPLOAD = "/bench.Bytes/Upload"
_DOWNLOAD = "/bench.Bytes/Download"
STREAMS = (1, 2, 4)  # parallel bare streams measured; the best is the baseline


# ---- the baseline: a bare grpcio byte stream ----------------------------------------------------


def run_baseline_server() -> None:
    """Serve Upload (keep the messages of a request stream, answer their byte count) and
    Download (stream back the messages of the last whole upload, or with a request b"i/n"
    every n-th of them from the i-th, for n parallel streams) until killed; print the port on
    stdout. An upload that is one of n parallel ones (metadata `part: i/n`) keeps its
    messages only while it runs."""
    kept: list[bytes] = []

    def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        received = list(requests)
        if dict(context.invocation_metadata()).get("part", "0/1") == "0/1":
            kept[:] = received
        return str(sum(map(len, received))).encode()

    def download(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        part, parts = map(int, (request or b"0/1").split(b"/"))
        yield from kept[part::parts]

    identity = None  # bytes in, bytes out
    handler = grpc.method_handlers_generic_handler("bench.Bytes", {
        "Upload": grpc.stream_unary_rpc_method_handler(upload, identity, identity),
        "Download": grpc.unary_stream_rpc_method_handler(download, identity, identity),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


class Baseline:
    """A client of the baseline server process."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.upload_call = self.channel.stream_unary(_UPLOAD)
        self.download_call = self.channel.unary_stream(_DOWNLOAD)
        self.threads = futures.ThreadPoolExecutor(max_workers=max(STREAMS))

    def upload(self, arrays: list[np.ndarray], streams: int = 1) -> None:
        """Send the arrays' bytes in 1 MiB messages, every `streams`-th message on one of
        `streams` parallel calls."""
        messages = [view[start:start + CHUNK_BYTES]
                    for array in arrays
                    for view in [memoryview(array.reshape(-1).view(np.uint8))]
                    for start in range(0, len(view), CHUNK_BYTES)]

        def send(part: int) -> int:
            chunks = (bytes(message) for message in messages[part::streams])
            return int(self.upload_call(chunks, metadata=(("part", f"{part}/{streams}"),)))

        received = sum(self.threads.map(send, range(streams)))
        assert received == sum(array.nbytes for array in arrays)

    def download(self, total: int, streams: int = 1) -> None:
        """Receive the last upload back, over `streams` parallel calls."""
        def receive(part: int) -> int:
            return sum(len(chunk) for chunk in self.download_call(f"{part}/{streams}".encode()))

        assert sum(self.threads.map(receive, range(streams))) == total


# ---- processes ---------------------------------------------------------------------------------


def start_baseline() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, __file__, "--baseline-server"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, f"127.0.0.1:{int(process.stdout.readline())}"


# ---- measuring ---------------------------------------------------------------------------------


def best(repeat: int, *runs: Callable[[], object]) -> list[float]:
    """The best time of each run over `repeat` alternating rounds, in seconds."""
    times = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            started = time.perf_counter()
            run()
            times[index] = min(times[index], time.perf_counter() - started)
    return times


class CpuMeter:
    """CPU seconds that runs cost a server process and this one, summed per label: a figure
    that a busy machine disturbs far less than wall time. The first run of each label pays
    one-time costs (page faults of fresh arrays) and is left out."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}  # label -> [server, client, runs]

    def metered(self, label: str, server_pid: int, run: Callable[[], object]) -> Callable[[], None]:
        def measured() -> None:
            before = _cpu_seconds(server_pid), _cpu_seconds(os.getpid())
            run()
            after = _cpu_seconds(server_pid), _cpu_seconds(os.getpid())
            if label not in self.seconds:
                self.seconds[label] = [0.0, 0.0, 0.0]
                return
            totals = self.seconds[label]
            totals[0] += after[0] - before[0]
            totals[1] += after[1] - before[1]
            totals[2] += 1

        return measured

    def per_mib(self, label: str, size: int) -> str:
        server, client, runs = self.seconds[label]
        scale = 1000 / (max(runs, 1) * size / (1 << 20))
        return f"{label} {server * scale:.2f} + {client * scale:.2f}"


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def save_and_fsync(tensors: dict[str, np.ndarray], path: Path) -> None:
    safetensors.numpy.save_file(tensors, str(path))
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def report(label: str, size: int, ours: float, baseline: float, baseline_label: str) -> None:
    mib = size / (1 << 20)
    print(f"{label:<9} paramstore {mib / ours:6.0f} MiB/s ({ours * 1000:5.0f} ms)   "
          f"{baseline_label:<23} {mib / baseline:6.0f} MiB/s ({baseline * 1000:5.0f} ms)   "
          f"ratio {baseline / ours:.2f}")


def snapshot_and_restore(
    store: RemoteStore, tensors: dict[str, np.ndarray], plain: Path, repeat: int
) -> list[float]:
    """Times of: store snapshot, safetensors save+fsync, store restore, safetensors load."""
    snapshot_ids: list[str] = []
    snapshot, save = best(repeat, lambda: snapshot_ids.append(store.snapshot().id),
                          lambda: save_and_fsync(tensors, plain))
    restore, load = best(repeat, lambda: store.restore(snapshot_ids[-1]),
                         lambda: safetensors.numpy.load_file(str(plain)))
    return [snapshot, save, restore, load]


def measure_bandwidth(client: Client, baseline: Baseline, pids: tuple[int, int], folder: Path,
                      size_mib: int, repeat: int, snapshots: bool = True) -> None:
    """Push, pull (and snapshot, restore) against their baselines; `pids`: the paramstore
    server's and the baseline server's processes, whose CPU time is measured too."""
    rng = np.random.default_rng(0)
    per_tensor = size_mib * (1 << 20) // TENSORS // 4
    tensors = {f"layer{index}_weight": rng.random(per_tensor, dtype=np.float32)
               for index in range(TENSORS)}
    size = sum(array.nbytes for array in tensors.values())
    print(f"store: {TENSORS} float32 tensors, {size / (1 << 20):.0f} MiB; best of {repeat}")
    store = client.create_store("bench")
    local = {name: np.empty_like(array) for name, array in tensors.items()}
    arrays = list(tensors.values())
    ours, bare = pids
    cpu = CpuMeter()
    push, *uploads = best(repeat, cpu.metered("push", ours, lambda: store.push(tensors)), *[
        cpu.metered(f"client x{n}", bare, lambda n=n: baseline.upload(arrays, n))
        for n in STREAMS])
    pull, *downloads = best(repeat, cpu.metered("pull", ours, lambda: store.pull(local)), *[
        cpu.metered(f"server x{n}", bare, lambda n=n: baseline.download(size, n))
        for n in STREAMS])
    assert all(np.array_equal(local[name], tensors[name]) for name in tensors)
    for kind, times in (("client", uploads), ("server", downloads)):
        print("  bare grpcio " + kind + " streams: " + ", ".join(
            f"{n} x {size / (1 << 20) / seconds:.0f} MiB/s" for n, seconds in zip(STREAMS, times)))
    for ours_label, kind in (("push", "client"), ("pull", "server")):
        print("  CPU ms per MiB, server + client: " + ", ".join(
            cpu.per_mib(label, size) for label in (ours_label, *(f"{kind} x{n}" for n in STREAMS))))
    for label, ours, times, kind in (("push", push, uploads, "client"),
                                     ("pull", pull, downloads, "server")):
        streams = STREAMS[times.index(min(times))]
        report(label, size, ours, min(times), f"grpcio {kind} x{streams} (best)")
    if snapshots:
        snapshot, save, restore, load = snapshot_and_restore(
            store, tensors, folder / "plain.safetensors", repeat)
        report("snapshot", size, snapshot, save, "safetensors save+fsync")
        report("restore", size, restore, load, "safetensors load")
    client.delete_store("bench")


def measure_many_parameters(client: Client, folder: Path, repeat: int) -> None:
    for count in MANY_PARAMETERS:
        measure_small_parameters(client, folder, repeat, count)


def measure_small_parameters(client: Client, folder: Path, repeat: int, count: int) -> None:
    small = {f"block{index // 100}_dense{index % 100}_weight": np.ones(4, np.float32)
             for index in range(count)}
    local = {name: np.zeros_like(array) for name, array in small.items()}
    plain = folder / "small.safetensors"
    store = client.create_store(f"many{count}")
    snapshot_ids: list[str] = []
    push, pull, snapshot, save = best(
        repeat, lambda: store.push(small), lambda: store.pull(local),
        lambda: snapshot_ids.append(store.snapshot().id), lambda: save_and_fsync(small, plain))
    assert all(np.array_equal(local[name], small[name]) for name in small)
    restore, load = best(repeat, lambda: store.restore(snapshot_ids[-1]),
                         lambda: safetensors.numpy.load_file(str(plain)))
    print(f"{count} parameters of 4 float32: push {push * 1000:.0f} ms, pull {pull * 1000:.0f} "
          f"ms, snapshot {snapshot * 1000:.0f} ms; push/snapshot {push / snapshot:.2f}, "
          f"pull/snapshot {pull / snapshot:.2f} (floor: at most 2)")
    print(f"  snapshot vs safetensors save+fsync {save * 1000:.0f} ms: ratio "
          f"{save / snapshot:.2f}; restore {restore * 1000:.0f} ms vs safetensors load "
          f"{load * 1000:.0f} ms: ratio {load / restore:.2f}")
    if count == LISTED_PARAMETERS:
        (listing,) = best(5, lambda: store.collect_params())
        (printing,) = best(5, lambda: str(store.collect_params()))
        print(f"  collect_params() {listing * 1000:.1f} ms ({printing * 1000:.1f} ms with str())")
    client.delete_store(f"many{count}")


def measure_restore_memory(client: Client, server_pid: int, size_mib: int) -> None:
    store = client.create_store("memory")
    per_tensor = (1 << 20) * 64 // 4  # 64 MiB tensors, pushed a few at a time
    for first in range(0, size_mib, 256):
        store.push({f"layer{index}_weight": np.full(per_tensor, index, np.float32)
                    for index in range(first // 64, min(first + 256, size_mib) // 64)})
    data_bytes = size_mib << 20
    snapshot = store.snapshot()
    steady = _rss(server_pid, "VmRSS")
    Path(f"/proc/{server_pid}/clear_refs").write_text("5")  # resets the peak (VmHWM)
    started = time.perf_counter()
    store.restore(snapshot.id)
    elapsed = time.perf_counter() - started
    peak = _rss(server_pid, "VmHWM")
    print(f"restore of a {size_mib} MiB store: {elapsed * 1000:.0f} ms; server RSS before "
          f"{steady / data_bytes:.2f}x the data, peak during the restore "
          f"{peak / data_bytes:.2f}x the data ({peak >> 20} MiB)")
    client.delete_store("memory")


def _rss(pid: int, field: str) -> int:
    """A resident-set figure of process `pid` from /proc, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) << 10  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--restore-mib", type=int, default=1024,
                        help="size of the store whose restore memory is measured (0: skip)")
    parser.add_argument("--dir", type=Path, help="folder on the disk to measure (default: tmp)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure push and pull this many times, each with its own baseline")
    parser.add_argument("--bandwidth-only", action="store_true",
                        help="measure push and pull only (1.), no snapshots or memory")
    parser.add_argument("--many-only", action="store_true",
                        help="measure many small parameters only (3.)")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        run_baseline_server()
        return

    folder = Path(tempfile.mkdtemp(prefix="paramstore-bench-", dir=args.dir))
    server, address = start_serve(folder / "data", "--keep", "1")
    baseline_server, baseline_address = start_baseline()
    try:
        with connect(address, progress=False) as client:
            if args.many_only:
                measure_many_parameters(client, folder, args.repeat)
                return
            baseline = Baseline(baseline_address)
            for _ in range(args.rounds):
                measure_bandwidth(client, baseline, (server.pid, baseline_server.pid), folder,
                                  args.size_mib, args.repeat,
                                  snapshots=not args.bandwidth_only)
            if args.bandwidth_only:
                return
            measure_many_parameters(client, folder, args.repeat)
            if args.restore_mib:
                measure_restore_memory(client, server.pid, args.restore_mib)
    finally:
        for process in (server, baseline_server):
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

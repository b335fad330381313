"""Latency of a health check and of a small pull while another caller stalls the server.

A `paramstore serve` process with its default call bounds holds a 16 MiB store. The attacker
(its own token) opens `--stalled` calls that stall: pushes that stop sending, pulls whose
replies are never read, and requests never sent. Meanwhile a victim (another token) times
health checks and pulls of a small store. The baseline is the same victim without the attack,
measured in the same run; the ratio is attack latency / baseline latency (1.0: no slower).

    python bench/attack.py [--stalled 60] [--samples 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from paramstore.client import connect
from paramstore.proto import wire
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.server.process import start_serve

ATTACKER, VICTIM = "attacker-token", "victim-token"


def start_server(folder: Path) -> tuple[subprocess.Popen[str], str]:
    (folder / "tokens.txt").write_text(f"{ATTACKER}\n{VICTIM}\n")
    return start_serve(folder / "data", "--token-file", str(folder / "tokens.txt"))


def attack(address: str, stalled: int,
           released: threading.Event) -> tuple[grpc.Channel, list[Any]]:
    """Open `stalled` calls of each stalling kind; they stay open until `released`."""
    channel = grpc.insecure_channel(address)
    metadata = (("authorization", f"Bearer {ATTACKER}"),)

    def half_push() -> Iterator[pb.PushRequest]:
        yield pb.PushRequest(begin=pb.PushBegin(store="small", parameter_count=1))
        yield pb.PushRequest(parameter=pb.ParameterSpec(
            name="v", shape=[1024], dtype="float32", dtype_label="float32", kind="Parameter",
            has_data=True))
        released.wait()

    def silence() -> Iterator[pb.ListStoresRequest]:
        released.wait()
        yield pb.ListStoresRequest()

    push = channel.stream_unary(wire.path("Push"),
                                request_serializer=pb.PushRequest.SerializeToString,
                                response_deserializer=pb.PushResponse.FromString)
    pull = channel.unary_stream(wire.path("Pull"),
                                request_serializer=pb.PullRequest.SerializeToString,
                                response_deserializer=pb.PullResponse.FromString)
    listing = channel.stream_unary(wire.path("ListStores"),
                                   request_serializer=pb.ListStoresRequest.SerializeToString,
                                   response_deserializer=pb.ListStoresResponse.FromString)
    calls = []  # held: a call object that is garbage collected is cancelled
    for _ in range(stalled):
        calls.append(push.future(half_push(), metadata=metadata))
        calls.append(pull(pb.PullRequest(store="big"), metadata=metadata))
        calls.append(listing.future(silence(), metadata=metadata))
    return channel, calls


def victim_latencies(address: str, samples: int) -> dict[str, float]:
    """Median milliseconds of a health check and of a pull of the small store."""
    health_times, pull_times = [], []
    with grpc.insecure_channel(address) as channel, \
            connect(address, token=VICTIM, timeout=60) as client:
        health = health_pb2_grpc.HealthStub(channel)
        store = client.store("small")
        values = {"v": np.zeros(1024, np.float32)}
        for _ in range(samples):
            started = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=60)
            health_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.pull(values)
            pull_times.append(time.perf_counter() - started)
    return {"health": statistics.median(health_times) * 1000,
            "pull": statistics.median(pull_times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=60, help="stalled calls of each kind")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, address = start_server(Path(folder))
        try:
            with connect(address, token=VICTIM) as client:
                client.create_store("big").push({"w": np.ones((4, 1 << 20), np.float32)})
                client.create_store("small").push({"v": np.arange(1024, dtype=np.float32)})
            victim_latencies(address, 5)  # warm up
            baseline = victim_latencies(address, args.samples)
            released = threading.Event()
            channel, calls = attack(address, args.stalled, released)
            time.sleep(1.0)  # let the stalls settle in
            attacked = victim_latencies(address, args.samples)
            released.set()
            for call in calls:
                call.cancel()
            channel.close()
        finally:
            process.terminate()
            process.wait()
    print(f"{3 * args.stalled} stalled calls from one caller (default bounds)")
    for what in ("health", "pull"):
        print(f"{what:>7}: baseline {baseline[what]:7.2f} ms, under attack "
              f"{attacked[what]:7.2f} ms, ratio {attacked[what] / baseline[what]:5.2f}")


if __name__ == "__main__":
    main()

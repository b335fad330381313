"""Several replicas, measured in one run on this machine against baselines of the same run.

1. Failover: SIGKILL the owner of a store `--kills` times (restarting it under its address
   after each, once it owns stores again) and time from the kill until a client of all the
   replicas reads the store again; median and worst, against the lease TTL, which bounds how
   long a dead replica keeps its stores.
2. Aggregate snapshot throughput of 3 replicas against 1 replica: `--stores` stores of
   `--store-mib` MiB each, one client thread per store snapshotting for `--seconds` seconds;
   snapshots per second of the three-replica cluster over those of the one-replica cluster
   (same etcd, same S3-compatible server).
3. Routing: a store's first call through a replica that does not own it (a redirect, then the
   owner) against the same call made straight to its owner; forwarding between replicas would
   pay the extra hop on every call, a redirect only on a store's first.

    python bench/cluster.py [--lease-ttl 3] [--kills 10] [--stores 12] [--store-mib 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "service"))
from etcd_server import etcd_server  # noqa: E402
from replicas import Cluster, eventually  # noqa: E402
from s3_server import moto_server  # noqa: E402

from paramstore.client import Client, connect  # noqa: E402
from paramstore.gluon import nn  # noqa: E402


def _net(mib: float) -> nn.Dense:
    units = max(1, int(mib * (1 << 20) / 4 / 1024))
    net = nn.Dense(units, in_units=1024)
    net.initialize()
    return net


def _owner(client: Client, store: str) -> str:
    return {name: replica for replica, names in client.cluster().items()
            for name in names}.get(store, "")


def failover(etcd: str, s3: str, ttl: float, kills: int) -> list[float]:
    cluster = Cluster(etcd, s3, lease_ttl=ttl).start_all()
    times = []
    try:
        with cluster.connect() as client:
            for index in range(6):
                client.create_store(f"s{index}").push(_net(0.25).collect_params())
                client.store(f"s{index}").snapshot()
            for kill in range(kills):
                store = f"s{kill % 6}"
                eventually(lambda s=store: bool(_owner(client, s)), 60, "an owner")
                victim = cluster.replica_at(_owner(client, store))
                killed = time.monotonic()
                victim.kill()
                client.store(store).snapshots()  # retried until another replica serves it
                times.append(time.monotonic() - killed)
                cluster.start(victim)
                eventually(lambda v=victim: bool(client.cluster().get(v.address)), 60,
                           "the restarted replica owning stores")
                print(f"  kill {kill + 1}: {times[-1]:.2f} s", flush=True)
    finally:
        cluster.stop_all()
    return times


def snapshots_per_second(etcd: str, s3: str, replicas: int, stores: int, mib: float,
                         seconds: float) -> float:
    cluster = Cluster(etcd, s3, size=replicas, lease_ttl=10).start_all()
    try:
        with cluster.connect() as client:
            names = [f"t{index}" for index in range(stores)]
            for name in names:
                client.create_store(name).push(_net(mib).collect_params())
            eventually(lambda: sum(len(s) for s in client.cluster().values()) == stores,
                       60, "every store owned")
            time.sleep(2)  # placement settles
            counts = [0] * stores
            stop = time.monotonic() + seconds

            def work(index: int) -> None:
                with cluster.connect() as own:
                    store = own.store(names[index])
                    while time.monotonic() < stop:
                        store.snapshot()
                        counts[index] += 1

            threads = [threading.Thread(target=work, args=(i,)) for i in range(stores)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return sum(counts) / (time.monotonic() - started)
    finally:
        cluster.stop_all()


def routing(etcd: str, s3: str, rounds: int = 200) -> tuple[float, float]:
    cluster = Cluster(etcd, s3, lease_ttl=10).start_all()
    try:
        with cluster.connect() as client:
            client.create_store("r").push(_net(0.01).collect_params())
            time.sleep(2)
            owner = _owner(client, "r")
        other = next(r.address for r in cluster.replicas if r.address != owner)
        redirected, direct = [], []
        for _ in range(rounds):
            for address, times in ((other, redirected), (owner, direct)):
                with connect(address) as fresh:  # a fresh client: no owner known yet
                    fresh.list_stores()  # the connection is up before the clock starts
                    started = time.perf_counter()
                    fresh.store("r")
                    times.append(time.perf_counter() - started)
        return statistics.median(redirected), statistics.median(direct)
    finally:
        cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--stores", type=int, default=12)
    parser.add_argument("--store-mib", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with etcd_server() as etcd, moto_server() as s3:
        print(f"1. failover after SIGKILL, lease TTL {args.lease_ttl:g} s, {args.kills} kills")
        times = failover(etcd, s3, args.lease_ttl, args.kills)
        median, worst = statistics.median(times), max(times)
        print(f"   median {median:.2f} s ({median / args.lease_ttl:.2f} x TTL), worst "
              f"{worst:.2f} s ({worst / args.lease_ttl:.2f} x TTL)")
        print(f"2. snapshots/s, {args.stores} stores of {args.store_mib:g} MiB, "
              f"{args.seconds:g} s each")
        one = snapshots_per_second(etcd, s3, 1, args.stores, args.store_mib, args.seconds)
        three = snapshots_per_second(etcd, s3, 3, args.stores, args.store_mib, args.seconds)
        print(f"   1 replica {one:.1f}/s, 3 replicas {three:.1f}/s: ratio {three / one:.2f}")
        redirected, direct = routing(etcd, s3)
        print(f"3. a store's first call: through a non-owner {redirected * 1000:.2f} ms, "
              f"straight to its owner {direct * 1000:.2f} ms: ratio "
              f"{redirected / direct:.2f}")


if __name__ == "__main__":
    main()

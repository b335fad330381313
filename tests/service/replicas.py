"""Several `paramstore serve --cluster` processes on loopback sharing one etcd and one bucket:
the replicas of the cluster tests and benchmarks."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from s3_server import lasting_port, new_bucket
from server_process import wait_for_health

from paramstore.client import Client, connect
from paramstore.server.process import start_serve


@dataclass
class Replica:
    """One replica: a fixed address (a restart keeps it), its process and its log."""

    address: str
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.alive:
            self.signal(signal.SIGKILL)
        self.reap()

    def reap(self) -> None:
        if self.process is not None:
            self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()


@dataclass
class Cluster:
    """`size` replicas of one cluster (its own etcd prefix and bucket)."""

    etcd: str
    s3_endpoint: str
    size: int = 3
    lease_ttl: float = 3.0
    env: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()  # more `paramstore serve` flags for every replica
    replicas: list[Replica] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = f"/paramstore-{uuid.uuid4().hex[:12]}"
        self.bucket = new_bucket(self.s3_endpoint)
        self.replicas = [Replica(f"127.0.0.1:{lasting_port()}") for _ in range(self.size)]

    @property
    def url(self) -> str:
        return f"etcd://{self.etcd}{self.prefix}"

    @property
    def addresses(self) -> str:
        return ",".join(replica.address for replica in self.replicas)

    def start(self, replica: Replica, env: dict[str, str] | None = None) -> Replica:
        replica.log = []
        replica.process, _ = start_serve(
            f"s3://{self.bucket}/data", "--address", replica.address,
            "--s3-endpoint", self.s3_endpoint, "--cluster", self.url,
            "--advertise", replica.address, "--lease-ttl", str(self.lease_ttl), *self.flags,
            log=replica.log, env={**self.env, **(env or {})})
        wait_for_health(grpc.insecure_channel(replica.address), 30)
        return replica

    def start_all(self) -> Cluster:
        for replica in self.replicas:
            self.start(replica)
        return self

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.alive:
                replica.signal(signal.SIGCONT)
            replica.kill()

    def rolling_restart(self, pause: float = 1.0) -> None:
        """SIGTERM each replica in turn (a last snapshot of each store, then its hand-over),
        start it again under the same address, and let the cluster settle `pause` seconds."""
        for replica in self.replicas:
            replica.signal(signal.SIGTERM)
            replica.reap()
            self.start(replica)
            time.sleep(pause)

    def restart_under(self, workers: list[threading.Thread], stop: threading.Event) -> None:
        """Start `workers`, restart every replica in turn while they work, then set `stop`
        and wait for them."""
        for worker in workers:
            worker.start()
        time.sleep(1)
        self.rolling_restart()
        stop.set()
        for worker in workers:
            worker.join(90)

    def connect(self, **options: object) -> Client:
        return connect(self.addresses, **options)  # type: ignore[arg-type]

    def owners(self) -> dict[str, str]:
        """Each store's owner, as `paramstore cluster` reports it."""
        with self.connect() as client:
            return {store: replica for replica, stores in client.cluster().items()
                    for store in stores}

    def replica_at(self, address: str) -> Replica:
        return next(replica for replica in self.replicas if replica.address == address)


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until `check()` is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.1)

"""What the SDK returns about stores and snapshots (plain values, no wire types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from paramstore.proto.v1 import paramstore_pb2 as pb


@dataclass(frozen=True)
class StoreInfo:
    """A store's summary: its prefix, version, number of parameters and bytes of data."""

    name: str
    prefix: str
    version: int
    parameter_count: int
    data_bytes: int


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot: `id` (for restore/export/delete), `step` (None when not given), creation
    time, the caller's `metadata`, its size, the store version it holds and its `tags`."""

    id: str
    store: str
    step: int | None
    created_unix_nanos: int
    metadata: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    version: int = 0
    tags: tuple[str, ...] = ()
    base: str | None = None  # a delta snapshot's base

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_unix_nanos / 1e9, tz=timezone.utc)


def store_info(message: pb.StoreInfo) -> StoreInfo:
    return StoreInfo(message.name, message.prefix, message.version, message.parameter_count,
                     message.data_bytes)


def snapshot_info(message: pb.SnapshotInfo) -> SnapshotInfo:
    return SnapshotInfo(
        id=message.id,
        store=message.store,
        step=None if message.step < 0 else message.step,
        created_unix_nanos=message.created_unix_nanos,
        metadata=dict(message.metadata),
        size_bytes=message.size_bytes,
        version=message.version,
        tags=tuple(message.tags),
        base=message.base or None,
    )


@dataclass(frozen=True)
class ParameterDiff:
    """One parameter of two snapshots: `status` is changed, unchanged, added, removed or
    reshaped; `l2` the L2 norm of b - a, `relative` that over a's norm (None where there is no
    data to compare); `tie_a`/`tie_b` the alias target in each ("" for none)."""

    name: str
    status: str
    l2: float | None
    relative: float | None
    tie_a: str
    tie_b: str


class SnapshotDiff(list[ParameterDiff]):
    """`store.diff(a, b)`: one `ParameterDiff` per parameter; `str()` is a table."""

    def __str__(self) -> str:
        rows = [("PARAMETER", "STATUS", "L2", "RELATIVE", "TIES")]
        for record in self:
            ties = "" if record.tie_a == record.tie_b == "" else \
                f"{record.tie_a or '-'} -> {record.tie_b or '-'}"
            rows.append((record.name, record.status, _number(record.l2),
                         _number(record.relative), ties))
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        return "\n".join(
            f"{name:<{widths[0]}}  {status:<{widths[1]}}  {l2:>{widths[2]}}  "
            f"{relative:>{widths[3]}}  {ties}".rstrip()
            for name, status, l2, relative, ties in rows)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def snapshot_diff(message: pb.DiffSnapshotsResponse) -> SnapshotDiff:
    return SnapshotDiff(
        ParameterDiff(record.name, record.status,
                      record.l2 if record.HasField("l2") else None,
                      record.relative if record.HasField("relative") else None,
                      record.tie_a, record.tie_b)
        for record in message.parameters)


@dataclass(frozen=True)
class RetentionPolicy:
    """Which snapshots a store keeps (see `RemoteStore.set_retention`); `server_default` when
    the store has no policy of its own and the server's `--keep` applies."""

    keep_last: int = 0
    keep_best: int = 0
    metric: str = ""
    mode: str = "min"
    keep_every_steps: int = 0
    server_default: bool = False


def retention_policy(message: pb.RetentionPolicy) -> RetentionPolicy:
    return RetentionPolicy(message.keep_last, message.keep_best, message.metric,
                           message.mode or "min", message.keep_every_steps,
                           message.server_default)

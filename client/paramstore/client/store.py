"""`RemoteStore`: one store on the server, used like a network's ParameterDict."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from paramstore import _files
from paramstore.client import pulling, transfer
from paramstore.client.errors import FailedPrecondition, InvalidArgument, ParamstoreError
from paramstore.client.models import (
    RetentionPolicy,
    SnapshotDiff,
    SnapshotInfo,
    StoreInfo,
    retention_policy,
    snapshot_diff,
    snapshot_info,
    store_info,
)
from paramstore.client.params import RemoteParameter, RemoteParameterDict
from paramstore.client.routing import new_request_id
from paramstore.proto.v1 import paramstore_pb2 as pb

if TYPE_CHECKING:
    from paramstore.client.client import Client


class RemoteStore:
    """A named store on the server (from `Client.create_store` or `Client.store`)."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    def info(self) -> StoreInfo:
        """The store's prefix, version, parameter count and bytes of data."""
        return store_info(self.client.call("GetStore", pb.GetStoreRequest(name=self.name)))

    # ---- parameters --------------------------------------------------------------------------

    def push(self, params: Any, *, expected_version: int | None = None) -> int:
        """Send a local ParameterDict: names, shapes, dtypes, data, its prefix and its ties.

        New names are appended, existing ones overwritten (same shape and dtype), all in one
        atomic write; a tied tensor travels once. `expected_version`: refuse with
        `FailedPrecondition` unless the store is at that version. Returns the new version.
        Raises `StoreNotFound`, `FailedPrecondition` (shape or dtype mismatch),
        `InvalidArgument`; `TypeError` for anything but a mapping of names.
        """
        prefix, outgoing = transfer.describe(_parameter_dict(params, "push"))
        begin = pb.PushBegin(store=self.name, prefix=prefix,
                             expected_version=expected_version or 0)
        # One id for the push however it travels: a push over the data channel cut off is
        # sent again as a Push, which the server answers with the first one's reply if it
        # was applied.
        request_id = new_request_id()
        version = self.client.data_transfers.push(
            begin, outgoing, lambda total: self.client.progress_bar(total, f"push {self.name}"),
            request_id)
        if version is not None:
            return version
        return self._upload("Push", begin, outgoing, request_id)

    def pull(self, params: Any) -> None:
        """Fill a local ParameterDict's parameters in place with the store's data.

        Every local name must be in the store (`ParameterNotFound` otherwise); the data is the
        store's at one version. Parameters the store holds no data for are left alone. Every
        local shape and dtype is checked against the store's before anything is written:
        `FailedPrecondition` names the first that differs, and nothing is filled then.
        """
        def open_stream(names: list[str]) -> Any:
            return self.client.stream("Pull", pb.PullRequest(store=self.name, names=names,
                                                                batches=True))

        def open_listing(select: str) -> Any:
            request = pb.CollectParamsRequest(store=self.name, select=select)
            return self.client.stream("CollectParams", request)

        pulling.pull_into(open_stream, open_listing, _parameter_dict(params, "pull"),
                          lambda total: self.client.progress_bar(total, f"pull {self.name}"),
                          self.client.data_transfers.read_listed(self.name))

    def collect_params(self, select: str | None = None) -> RemoteParameterDict:
        """The store's parameters whose names match `select` at their start (all when None),
        listed like the local `ParameterDict`: `str()` prints the same. Raises
        `InvalidArgument` for a bad regex."""
        request = pb.CollectParamsRequest(store=self.name, select=select or "")
        prefix, specs = "", []
        for index, page in enumerate(self.client.stream("CollectParams", request)):
            if index == 0:
                prefix = page.prefix
            specs.extend(page.parameters)
        return RemoteParameterDict(prefix, [RemoteParameter(self, spec) for spec in specs])

    def initialize(
        self, init: Any = None, select: str | None = None, force_reinit: bool = False
    ) -> list[str]:
        """Run an initializer on the server over the selected parameters of known shape.

        `init`: an initializer from `paramstore.init` (it travels as its `dumps()` JSON), a
        registered name, or None for Gluon's default `Uniform()`. Parameters holding data are
        skipped unless `force_reinit`. Returns the names initialized. Raises `InvalidArgument`
        for a custom initializer the server does not have (the message lists those it has).
        """
        if init is None:
            text = '["uniform", {}]'
        elif hasattr(init, "dumps"):
            text = init.dumps()
        else:
            text = str(init)
        reply = self.client.call("Initialize", pb.InitializeRequest(
            store=self.name, initializer=text, select=select or "", force_reinit=force_reinit
        ))
        return list(reply.initialized)

    def set_data(self, name: str, data: Any) -> None:
        """Overwrite the data of the existing parameter `name` (through an alias, its
        target's). Raises `ParameterNotFound`, `FailedPrecondition` (shape or dtype)."""
        _, outgoing = transfer.describe({name: np.asarray(data)})
        self._upload("SetData", pb.PushBegin(store=self.name), outgoing)

    # ---- ties --------------------------------------------------------------------------------

    def tie(self, alias: str, target: str) -> None:
        """Make `alias` a second name of `target`'s tensor: a write through either name is
        seen through both. Raises `ParameterNotFound`, `FailedPrecondition`."""
        self.client.call("Tie", pb.TieRequest(store=self.name, alias=alias, target=target))

    def untie(self, alias: str) -> None:
        """Give `alias` its own copy of the tensor. Raises `ParameterNotFound`."""
        self.client.call("Untie", pb.UntieRequest(store=self.name, alias=alias))

    def ties(self) -> dict[str, str]:
        """alias -> target, for every tie in the store."""
        replies = self.client.pages("ListTies", pb.ListTiesRequest(store=self.name))
        return dict(sorted(tie for reply in replies for tie in reply.ties.items()))

    # ---- snapshots ---------------------------------------------------------------------------

    def snapshot(
        self,
        step: int | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        tags: Sequence[str] = (),
        delta: bool = False,
    ) -> SnapshotInfo:
        """Write the store to a new snapshot on the server's disk and describe it.

        `delta`: store only the tensors that changed since the newest snapshot (its `base`),
        as for a fine-tune with frozen layers; restore and export give the full state, and
        neither retention nor `delete_snapshot` removes a base that a delta needs.

        `step` must lie in [0, 2**63), `metadata` keys must not start with "paramstore." and
        `tags` (each moved from the snapshot that had it) must be valid tags (`InvalidArgument`
        otherwise, and no snapshot is written). The store's retention policy runs after it."""
        if step is not None and not 0 <= step < 2**63:
            raise InvalidArgument(f"snapshot step {step} is outside [0, 2**63)")
        if isinstance(tags, str):
            raise InvalidArgument(f"tags must be a list of tags, got the string {tags!r}")
        request = pb.TakeSnapshotRequest(
            store=self.name, step=-1 if step is None else step,
            metadata={str(key): str(value) for key, value in (metadata or {}).items()},
            tags=list(tags), delta=delta,
        )
        return snapshot_info(self.client.call("TakeSnapshot", request))

    def tag(self, snapshot_id: str, tag: str) -> SnapshotInfo:
        """Give a snapshot the tag `tag`, which then names it wherever an id is taken; the tag
        moves from the snapshot that had it. A tagged snapshot is never deleted by retention.
        Raises `SnapshotNotFound`, `InvalidArgument` (a tag may not be all digits or
        "latest")."""
        request = pb.TagSnapshotRequest(store=self.name, id=snapshot_id, tag=tag)
        return snapshot_info(self.client.call("TagSnapshot", request))

    def untag(self, tag: str) -> None:
        """Remove the tag `tag` (its snapshot stays). Raises `SnapshotNotFound` when no
        snapshot has it."""
        self.client.call("UntagSnapshot", pb.UntagSnapshotRequest(store=self.name, tag=tag))

    def set_retention(
        self,
        keep_last: int = 0,
        keep_best: int = 0,
        metric: str = "",
        mode: str = "min",
        keep_every_steps: int = 0,
    ) -> RetentionPolicy:
        """Set which snapshots the store keeps, from its next snapshot on: the last
        `keep_last`, the best `keep_best` by the number `metadata[metric]` holds (lowest with
        mode "min", highest with "max"; a snapshot without it is never best), and one every
        `keep_every_steps` steps. A snapshot is kept when any rule keeps it; the newest and
        tagged ones always are. No rule at all: the server's default (`serve --keep`) again.
        Returns the policy in force. Raises `InvalidArgument`."""
        if not all(isinstance(count, int) and count >= 0
                   for count in (keep_last, keep_best, keep_every_steps)):
            raise InvalidArgument("keep_last, keep_best and keep_every_steps are counts >= 0, got "
                                  f"{keep_last!r}, {keep_best!r}, {keep_every_steps!r}")
        policy = pb.RetentionPolicy(keep_last=keep_last, keep_best=keep_best, metric=metric,
                                    mode=mode, keep_every_steps=keep_every_steps)
        request = pb.SetRetentionRequest(store=self.name, policy=policy)
        return retention_policy(self.client.call("SetRetention", request))

    def retention(self) -> RetentionPolicy:
        """The store's retention policy (`server_default` when it has none of its own)."""
        reply = self.client.call("GetRetention", pb.GetRetentionRequest(store=self.name))
        return retention_policy(reply)

    def snapshots(self) -> list[SnapshotInfo]:
        """The store's snapshots, oldest first."""
        replies = self.client.pages("ListSnapshots", pb.ListSnapshotsRequest(store=self.name))
        return [snapshot_info(info) for reply in replies for info in reply.snapshots]

    def restore(self, snapshot_id: str, select: str | None = None) -> None:
        """Replace the store's parameters, prefix and ties with a snapshot's. Every method
        taking a `snapshot_id` also takes it without its zero padding ("7"), "latest" (the
        newest snapshot) or a tag.

        `select`: a regex matched at the start of names; only the parameters it selects (and
        the targets of the aliases it selects) are restored, reading only their bytes, and
        every other parameter stays as it is. Raises `SnapshotNotFound`, `InvalidArgument` (a
        damaged file, a bad regex), `ParameterNotFound` (the regex selects nothing),
        `FailedPrecondition` (a selected shape or dtype differs from the store's)."""
        self.client.call("RestoreSnapshot", pb.RestoreSnapshotRequest(
            store=self.name, id=snapshot_id, select=select or ""))

    def diff(self, a: str, b: str) -> SnapshotDiff:
        """Compare snapshots `a` and `b` (ids as `restore` takes them) on the server: one
        record per parameter (changed, unchanged, added, removed or reshaped; the L2 norm of
        b - a and its relative change; ties), printing as a table. Raises `SnapshotNotFound`."""
        request = pb.DiffSnapshotsRequest(store=self.name, a=a, b=b)
        return snapshot_diff(self.client.call("DiffSnapshots", request))

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot. Raises `SnapshotNotFound`."""
        self.client.call("DeleteSnapshot",
                         pb.DeleteSnapshotRequest(store=self.name, id=snapshot_id))

    def export_snapshot(
        self, snapshot_id: str, path: str | os.PathLike[str], select: str | None = None
    ) -> SnapshotInfo:
        """Download a snapshot into the safetensors file `path` (replaced atomically: written
        to a temporary name, fsynced, renamed); with `select`, a file of only the parameters
        it selects (and their ties' targets). Raises `SnapshotNotFound`, `InvalidArgument`."""
        request = pb.ExportSnapshotRequest(store=self.name, id=snapshot_id, select=select or "")
        replies = self.client.stream("ExportSnapshot", request)
        info = snapshot_info(next(replies).info)

        def download(temporary: str) -> None:
            with open(temporary, "wb") as file, \
                    self.client.progress_bar(info.size_bytes, f"export {snapshot_id}") as bar:
                for reply in replies:
                    file.write(reply.chunk)
                    bar.update(len(reply.chunk))

        _files.replace(path, download)
        return info

    # ---- plumbing ----------------------------------------------------------------------------

    def _upload(self, method: str, begin: pb.PushBegin, outgoing: list[transfer.Outgoing],
                request_id: str = "") -> int:
        total = transfer.outgoing_bytes(outgoing)
        with self.client.progress_bar(total, f"push {self.name}") as bar:
            reply = self.client.call(method, transfer.push_requests(begin, outgoing, bar),
                                     request_id)
        return reply.version

    def _pull(self, names: list[str]) -> list[transfer.Received]:
        request = pb.PullRequest(store=self.name, names=names, batches=True)
        replies = self.client.stream("Pull", request)
        _, received = transfer.receive(replies, f"pull {self.name}", self.client.progress)
        if len(received) != len(names):
            raise ParamstoreError(f"asked for {len(names)} parameters, got {len(received)}")
        return received

    def pull_one(self, name: str) -> np.ndarray:
        """The value of parameter `name`. Raises `FailedPrecondition` when it has none."""
        (item,) = self._pull([name])
        if item.data is None:
            shape = tuple(item.spec.shape)
            if item.spec.shape_unknown or 0 in shape:  # no initializer can fill it
                raise FailedPrecondition(
                    f"parameter {name!r} of store {self.name!r} holds no data: its shape "
                    f"{None if item.spec.shape_unknown else shape} is not known yet; run the "
                    "net forward once, then push it again")
            raise FailedPrecondition(
                f"parameter {name!r} holds no data in store {self.name!r}: initialize it first"
            )
        return item.data

    def __repr__(self) -> str:
        return f"RemoteStore({self.name!r})"


def _parameter_dict(params: Any, verb: str) -> Any:
    """`params` when it maps names to parameters or arrays; else `TypeError` saying what to
    pass (a net given for its `collect_params()` would fail deep inside, unexplained)."""
    if not (hasattr(params, "keys") and hasattr(params, "items")):
        raise TypeError(f"{verb} takes net.collect_params() or a dict of name -> array, "
                        f"not {type(params).__name__}")
    return params


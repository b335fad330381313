"""The gRPC face of the registry: messages in, domain calls, messages out.

Each method validates and translates; domain errors become statuses in one place (`STATUS_OF`,
applied by `_rpc`), which also logs one INFO line per call. Streams are read whole before the
domain is called and written from immutable states after it, so no lock is held meanwhile.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import mmap
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import grpc
import numpy as np

from paramstore import compression
from paramstore.proto import chunks, shared_memory
from paramstore.proto.v1 import paramstore_pb2 as pb
from paramstore.proto.v1 import paramstore_pb2_grpc as pb_grpc
from paramstore.proto.wire import ERROR_KEY, OWNER_KEY
from paramstore.server import failures, incoming, validation
from paramstore.server import shared_memory as segments
from paramstore.server.admission import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_INFLIGHT_BYTES,
    InflightBytes,
    Take,
)
from paramstore.server.data_tickets import TicketKind
from paramstore.server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotOwner,
    NotTraining,
    ParameterNotFound,
    ResourceExhausted,
    ShuttingDown,
    SnapshotNotFound,
    StorageUnavailable,
    StoreChanged,
    StoreError,
    StoreNotFound,
)
from paramstore.server.limits import Budget
from paramstore.server.registry import StoreRegistry
from paramstore.server.request_ids import RequestIds, request_id
from paramstore.server.step_calls import StepCalls
from paramstore.server.storage import RetentionPolicy, SnapshotInfo
from paramstore.server.stores import Incoming, ParameterInfo, StoreState
from paramstore.server.training import TrainingAborted, TrainingCoordinator, TrainingSession

if TYPE_CHECKING:
    from paramstore.server.data_channel import DataChannel

_log = logging.getLogger("paramstore.server")

CHUNK_BYTES = chunks.CHUNK_BYTES
# Serialized bytes of one listing reply or CollectParams message: whatever the names and
# metadata, far under gRPC's default 4 MiB message limit.
REPLY_BYTES = 1 << 20
Entry = TypeVar("Entry")

STATUS_OF: dict[type[StoreError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    StoreNotFound: grpc.StatusCode.NOT_FOUND,
    ParameterNotFound: grpc.StatusCode.NOT_FOUND,
    SnapshotNotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    NotOwner: grpc.StatusCode.FAILED_PRECONDITION,
    NotTraining: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
    ShuttingDown: grpc.StatusCode.UNAVAILABLE,
    TrainingAborted: grpc.StatusCode.ABORTED,
    StoreChanged: grpc.StatusCode.ABORTED,
}


class _Call:
    """What one call's log line reports."""

    def __init__(self, method: str, request: Any) -> None:
        self.method = method
        self.store = getattr(request, "store", "") or getattr(request, "name", "")
        self.status = "OK"
        self.started = time.perf_counter()

    def fail(self, context: grpc.ServicerContext, error: StoreError) -> None:
        kind = next(cls for cls in type(error).__mro__ if cls in STATUS_OF or cls is StoreError)
        code = STATUS_OF.get(kind, grpc.StatusCode.FAILED_PRECONDITION)
        self.status = code.name
        trailers = [(ERROR_KEY, kind.__name__)]
        if isinstance(error, NotOwner):
            trailers.append((OWNER_KEY, error.owner))
        context.set_trailing_metadata(tuple(trailers))
        context.abort(code, str(error))

    def crash(self, context: grpc.ServicerContext, error: Exception) -> None:
        """Answer a failure the domain did not expect (`failures.unexpected`)."""
        answer = failures.unexpected(self.method, error)
        self.status = answer.code.name
        context.set_trailing_metadata(((ERROR_KEY, answer.kind),))
        context.abort(answer.code, answer.message)

    def log(self) -> None:
        _log.debug(  # at INFO a busy server's log would be nothing else
            "store=%s method=%s status=%s duration_ms=%.1f",
            self.store or "-", self.method, self.status,
            (time.perf_counter() - self.started) * 1000,
        )


def _rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method `(self, request, context, call)`: map errors, log the call."""

    def run(call: _Call, context: grpc.ServicerContext, body: Callable[[], Any]) -> Any:
        try:
            return body()
        except StoreError as error:
            call.fail(context, error)
        except Exception as error:
            if call.status != "OK":  # an abort of ours, which grpc raises as an exception
                raise
            if not context.is_active():  # the client went away or the call was cancelled
                call.status = "CANCELLED"
                raise
            call.crash(context, error)

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method.__name__, request)
            replies = method(self, request, context, call)
            try:
                while True:
                    reply = run(call, context, lambda: next(replies, None))
                    if reply is None:
                        return
                    yield reply
            except GeneratorExit:
                call.status = "CANCELLED"
                raise
            finally:
                call.log()

        return streaming

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        call = _Call(method.__name__, request)
        try:
            return run(call, context, lambda: method(self, request, context, call))
        finally:
            call.log()

    return unary


class ParamStoreServicer(pb_grpc.ParamStoreServicer):
    """Serves `paramstore.v1.ParamStore` from a `StoreRegistry`."""

    def __init__(
        self,
        registry: StoreRegistry,
        *,
        max_import_bytes: int = 4 << 30,
        training: TrainingCoordinator | None = None,
        inflight: InflightBytes | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_ids: RequestIds | None = None,
    ) -> None:
        self.registry = registry
        self.request_ids = request_ids or RequestIds()  # the server's: data-channel pushes too
        self.idle_timeout = idle_timeout  # the admission's: told to training workers
        self.inflight = inflight or InflightBytes(DEFAULT_MAX_INFLIGHT_BYTES)
        self.max_import_bytes = max_import_bytes
        self.training = training or TrainingCoordinator(registry)
        self._segments = segments.Segments()
        self.step_calls = StepCalls()  # a stopping server ends the idle ones
        self.data_channel: DataChannel | None = None  # set by the server when it has one

    # ---- stores ------------------------------------------------------------------------------

    @_rpc
    def CreateStore(self, request: pb.CreateStoreRequest, context: Any, call: _Call) -> Any:
        store = self.registry.create(request.name)
        return _store_info(store.name, store.state())

    @_rpc
    def GetStore(self, request: pb.GetStoreRequest, context: Any, call: _Call) -> Any:
        return _store_info(request.name, self.registry.get(request.name).state())

    @_rpc
    def ListStores(self, request: pb.ListStoresRequest, context: Any, call: _Call) -> Any:
        stores = [(store.name, _store_info(store.name, store.state()))
                  for store in self.registry.list()]
        page, token = _page(stores, request.page_token, lambda info: info.ByteSize())
        return pb.ListStoresResponse(stores=page, next_page_token=token)

    @_rpc
    def ListReplicas(self, request: pb.ListReplicasRequest, context: Any, call: _Call) -> Any:
        ownership = self.registry.ownership
        view, unowned = ownership.view() if ownership is not None else (
            {"": [store.name for store in self.registry.list()]}, [])
        return pb.ListReplicasResponse(replicas=[
            pb.ReplicaInfo(address=address, stores=sorted(stores))
            for address, stores in sorted(view.items())], unowned_stores=sorted(unowned))

    @_rpc
    def DeleteStore(self, request: pb.DeleteStoreRequest, context: Any, call: _Call) -> Any:
        self.registry.delete(request.name)
        return pb.DeleteStoreResponse()

    # ---- parameters --------------------------------------------------------------------------

    @_rpc
    def CollectParams(
        self, request: pb.CollectParamsRequest, context: Any, call: _Call
    ) -> Iterator[pb.CollectParamsResponse]:
        matches = validation.select(request.select)
        state = self.registry.get(request.store).state()
        reply = pb.CollectParamsResponse(prefix=state.prefix, version=state.version)
        used = reply.ByteSize()
        for info in state.select(matches):
            spec = _spec(info, state.array(info.name) is not None)
            used += spec.ByteSize() + 8
            if reply.parameters and used > REPLY_BYTES:
                yield reply
                reply, used = pb.CollectParamsResponse(), spec.ByteSize() + 8
            reply.parameters.append(spec)
        yield reply

    @_rpc
    def Push(self, requests: Iterable[pb.PushRequest], context: Any, call: _Call) -> Any:
        with self.inflight.account() as take:
            begin, items = self._receive(requests, call, take)
            state = self.registry.get(begin.store).push(
                begin.prefix, items, expected_version=begin.expected_version
            )
        return pb.PushResponse(version=state.version, data_bytes=_received_bytes(items))

    @_rpc
    def SetData(self, requests: Iterable[pb.PushRequest], context: Any, call: _Call) -> Any:
        with self.inflight.account() as take:
            begin, items = self._receive(requests, call, take)
            state = self.registry.get(begin.store).set_data(items)
        return pb.PushResponse(version=state.version, data_bytes=_received_bytes(items))

    @_rpc
    def Pull(
        self, request: pb.PullRequest, context: Any, call: _Call
    ) -> Iterator[pb.PullResponse | bytes]:
        plan = self.registry.pull(request.store, list(request.names), request.select)
        state = plan.state
        yield pb.PullResponse(begin=pb.PullBegin(
            prefix=state.prefix, version=state.version, data_bytes=plan.data_bytes))
        yield from chunks.parameter_messages((
            (_serialized_spec(info, data is not None), data) for info, data in plan.parameters
        ), batches=request.batches)

    @_rpc
    def Initialize(self, request: pb.InitializeRequest, context: Any, call: _Call) -> Any:
        names, state = self.registry.initialize(
            request.store, request.initializer, request.select,
            force_reinit=request.force_reinit,
        )
        return pb.InitializeResponse(initialized=names, version=state.version)

    # ---- ties --------------------------------------------------------------------------------

    @_rpc
    def Tie(self, request: pb.TieRequest, context: Any, call: _Call) -> Any:
        state = self.registry.tie(request.store, request.alias, request.target)
        return pb.TieResponse(version=state.version)

    @_rpc
    def Untie(self, request: pb.UntieRequest, context: Any, call: _Call) -> Any:
        state = self.registry.untie(request.store, request.alias)
        return pb.UntieResponse(version=state.version)

    @_rpc
    def ListTies(self, request: pb.ListTiesRequest, context: Any, call: _Call) -> Any:
        ties = sorted(self.registry.get(request.store).state().ties().items())
        page, token = _page([(alias, (alias, target)) for alias, target in ties],
                            request.page_token, lambda tie: len(tie[0]) + len(tie[1]) + 16)
        return pb.ListTiesResponse(ties=dict(page), next_page_token=token)

    # ---- snapshots ---------------------------------------------------------------------------

    @_rpc
    def TakeSnapshot(self, request: pb.TakeSnapshotRequest, context: Any, call: _Call) -> Any:
        info = self.registry.snapshot(
            request.store, step=request.step, metadata=dict(request.metadata),
            tags=list(request.tags), delta=request.delta, request_id=request_id(context),
        )
        return _snapshot_info(info)

    @_rpc
    def ListSnapshots(self, request: pb.ListSnapshotsRequest, context: Any, call: _Call) -> Any:
        infos = [(info.id, _snapshot_info(info)) for info in self.registry.snapshots(request.store)]
        # Snapshot ids are numbers: longer ones come later.
        page, token = _page(infos, request.page_token, lambda info: info.ByteSize(),
                            order=lambda key: (len(key), key))
        return pb.ListSnapshotsResponse(snapshots=page, next_page_token=token)

    @_rpc
    def RestoreSnapshot(
        self, request: pb.RestoreSnapshotRequest, context: Any, call: _Call
    ) -> Any:
        state = self.registry.restore(request.store, request.id, request.select)
        return _store_info(request.store, state)

    @_rpc
    def DeleteSnapshot(self, request: pb.DeleteSnapshotRequest, context: Any, call: _Call) -> Any:
        self.registry.delete_snapshot(request.store, request.id)
        return pb.DeleteSnapshotResponse()

    @_rpc
    def ExportSnapshot(
        self, request: pb.ExportSnapshotRequest, context: Any, call: _Call
    ) -> Iterator[pb.ExportSnapshotResponse]:
        with self.registry.snapshot_file(request.store, request.id, request.select) as (
                info, path), \
                open(path, "rb") as file:
            yield pb.ExportSnapshotResponse(info=_snapshot_info(info))
            while chunk := file.read(CHUNK_BYTES):
                yield pb.ExportSnapshotResponse(chunk=chunk)

    @_rpc
    def ImportSnapshot(
        self, requests: Iterator[pb.ImportSnapshotRequest], context: Any, call: _Call
    ) -> Any:
        first = next(requests, None)
        if first is None or first.WhichOneof("item") != "begin":
            raise InvalidArgument("an import stream must start with ImportBegin")
        begin = first.begin
        call.store = begin.store
        validation.store_name(begin.store)
        if begin.size_bytes > self.max_import_bytes:
            raise ResourceExhausted(
                f"the file has {begin.size_bytes} bytes, more than the server's "
                f"{self.max_import_bytes}-byte import limit"
            )
        if self.registry.exists(begin.store):
            raise AlreadyExists(f"store {begin.store!r} already exists; import under a new name")

        def receive(path: str) -> None:
            """Stream the file to storage's staging area, never whole in memory."""
            received = 0
            with open(path, "wb") as file:
                for request in requests:
                    if request.WhichOneof("item") != "chunk":
                        raise InvalidArgument("ImportBegin may only come first")
                    received += len(request.chunk)
                    if received > begin.size_bytes:
                        raise InvalidArgument(
                            f"the file received more than its {begin.size_bytes} bytes")
                    file.write(request.chunk)
            if received != begin.size_bytes:
                raise InvalidArgument(
                    f"the file received {received} of its {begin.size_bytes} bytes")

        return _snapshot_info(self.registry.import_snapshot(begin.store, receive))

    @_rpc
    def DiffSnapshots(self, request: pb.DiffSnapshotsRequest, context: Any, call: _Call) -> Any:
        records = self.registry.diff(request.store, request.a, request.b)
        return pb.DiffSnapshotsResponse(parameters=[
            pb.ParameterDiff(name=record.name, status=record.status, l2=record.l2,
                             relative=record.relative, tie_a=record.tie_a, tie_b=record.tie_b)
            for record in records])

    @_rpc
    def TagSnapshot(self, request: pb.TagSnapshotRequest, context: Any, call: _Call) -> Any:
        return _snapshot_info(self.registry.tag(request.store, request.id, request.tag))

    @_rpc
    def UntagSnapshot(self, request: pb.UntagSnapshotRequest, context: Any, call: _Call) -> Any:
        self.registry.untag(request.store, request.tag)
        return pb.UntagSnapshotResponse()

    @_rpc
    def SetRetention(self, request: pb.SetRetentionRequest, context: Any, call: _Call) -> Any:
        wire = request.policy
        policy = RetentionPolicy(wire.keep_last, wire.keep_best, wire.metric, wire.mode or "min",
                                 wire.keep_every_steps)
        in_force = self.registry.set_retention(request.store, policy)
        return _retention_policy(in_force, policy.empty)

    @_rpc
    def GetRetention(self, request: pb.GetRetentionRequest, context: Any, call: _Call) -> Any:
        return _retention_policy(*self.registry.retention(request.store))

    # ---- distributed training ----------------------------------------------------------------

    @_rpc
    def JoinTraining(self, request: pb.JoinTrainingRequest, context: Any, call: _Call) -> Any:
        rank, worker, session = self.training.join(
            request.store, request.mode, request.num_workers, request.timeout_seconds,
            request.rank if request.HasField("rank") else None, request.worker_id,
        )
        probe = request.shared_memory_probe
        return pb.JoinTrainingResponse(
            rank=rank, worker_id=worker, num_workers=session.num_workers, mode=session.mode,
            step=session.step,
            lease_seconds=session.lease, idle_timeout_seconds=self.idle_timeout,
            shared_memory_probe=shared_memory.read_probe(probe) if probe else b"",
            data_port=self.data_channel.port if self.data_channel is not None else 0,
        )

    @_rpc
    def OpenDataChannel(self, request: pb.OpenDataChannelRequest, context: Any,
                        call: _Call) -> Any:
        channel = self.data_channel
        if channel is None:
            raise FailedPrecondition("this server has no data channel (serve --data-port off): "
                                     "training steps go through PushPullSteps")
        session = self.training.session(request.store)
        session.heartbeat(request.rank, request.worker_id)  # a live worker's, or it joins again
        ticket = channel.tickets.issue(request.store, request.rank, session)
        return pb.OpenDataChannelResponse(ticket=ticket, port=channel.port,
                                          host=channel.advertised_host,
                                          expires_seconds=channel.tickets.lifetime)

    @_rpc
    def OpenDataRead(self, request: pb.OpenDataReadRequest, context: Any, call: _Call) -> Any:
        return self._transfer_ticket(request.store, TicketKind.READ, "")

    @_rpc
    def OpenDataWrite(self, request: pb.OpenDataWriteRequest, context: Any, call: _Call) -> Any:
        # The push it admits runs under this call's request id, as a Push sent again does.
        return self._transfer_ticket(request.store, TicketKind.WRITE, request_id(context))

    def _transfer_ticket(self, store: str, kind: TicketKind, request: str
                         ) -> pb.OpenDataChannelResponse:
        channel = self.data_channel
        if channel is None:
            raise FailedPrecondition("this server has no data channel (serve --data-port off): "
                                     "pulls and pushes go through Pull and Push")
        self.registry.get(store)  # an existing store of this replica's
        ticket = channel.tickets.issue_transfer(store, kind, request)
        return pb.OpenDataChannelResponse(ticket=ticket, port=channel.port,
                                          host=channel.advertised_host,
                                          expires_seconds=channel.tickets.lifetime)

    @_rpc
    def LeaveTraining(self, request: pb.LeaveTrainingRequest, context: Any, call: _Call) -> Any:
        self.training.session(request.store).leave(request.rank, request.worker_id)
        self._segments.drop_closed()  # a worker leaving has closed its segment
        return pb.LeaveTrainingResponse()

    @_rpc
    def Heartbeat(self, request: pb.HeartbeatRequest, context: Any, call: _Call) -> Any:
        self.training.session(request.store).heartbeat(request.rank, request.worker_id)
        return pb.HeartbeatResponse()

    @_rpc
    def InitKeys(self, requests: Iterable[pb.PushRequest], context: Any, call: _Call) -> Any:
        with self.inflight.account() as take:
            begin, items = self._receive(requests, call, take)
            state = self.training.session(begin.store).init_keys(begin.prefix, items)
        return pb.PushResponse(version=state.version, data_bytes=_received_bytes(items))

    @_rpc
    def SetOptimizer(self, request: pb.SetOptimizerRequest, context: Any, call: _Call) -> Any:
        self.training.session(request.store).set_optimizer(request.optimizer)
        return pb.SetOptimizerResponse()

    @_rpc
    def GetOptimizerStates(
        self, request: pb.GetOptimizerStatesRequest, context: Any, call: _Call
    ) -> Iterator[pb.FileChunk]:
        data = memoryview(self.registry.optimizer_states(request.store))
        for start in range(0, len(data), CHUNK_BYTES):
            yield pb.FileChunk(chunk=bytes(data[start:start + CHUNK_BYTES]))

    @_rpc
    def SetOptimizerStates(
        self, requests: Iterator[pb.SetOptimizerStatesRequest], context: Any, call: _Call
    ) -> Any:
        first = next(requests, None)
        if first is None or first.WhichOneof("item") != "store":
            raise InvalidArgument("a SetOptimizerStates stream must start with the store")
        call.store = first.store
        self.registry.get(first.store)
        data = bytearray()
        with self.inflight.account() as take:  # held whole until read: bounded as pushes are
            for request in requests:
                if request.WhichOneof("item") != "chunk":
                    raise InvalidArgument("the store may only come first")
                take(len(request.chunk), "the optimizer states file")
                data += request.chunk
                if len(data) > self.max_import_bytes:
                    raise ResourceExhausted(
                        f"the file has more than the server's {self.max_import_bytes}-byte limit")
            self.registry.load_optimizer_states(first.store, data)
        return pb.SetOptimizerStatesResponse()

    @_rpc
    def PushPull(
        self, requests: Iterable[pb.PushRequest], context: Any, call: _Call
    ) -> Iterator[pb.PullResponse | bytes]:
        requests = iter(requests)
        yield from self._push_pull_step(self._begin(requests, call), requests, call, False)

    @_rpc
    def PushPullSteps(
        self, requests: Iterable[pb.PushRequest], context: Any, call: _Call
    ) -> Iterator[pb.PullResponse | bytes]:
        requests = iter(requests)
        previous: StepParameters | None = None
        with self.step_calls.open(requests) as next_step:
            while (first := next_step()) is not None:
                begin = self._begin_of(first, call)
                previous = yield from self._push_pull_step(begin, requests, call, True,
                                                           previous)

    def _push_pull_step(
        self, begin: pb.PushBegin, requests: Iterator[pb.PushRequest], call: _Call,
        one_of_many: bool, previous: StepParameters | None = None,
    ) -> Generator[pb.PullResponse | bytes, None, StepParameters]:
        """One PushPull step: its parameters (after `begin`, or `previous` ones), then the
        replies; returns its parameters. A step `one_of_many` on its call reads no further than
        its last parameter's bytes."""
        with self.inflight.account() as take:
            segment = self._segments.get(begin.shared_memory) if begin.shared_memory else None
            codec = _codec(begin, allowed=True)
            if begin.same_parameters:
                items = self._repeated_items(begin, previous, codec, segment, take)
            else:
                items = self._items(requests, begin, codec, segment, take,
                                    stop_at_count=one_of_many)
            session = self.training.session(begin.store)
            if segment is not None:
                values = _step_in_segment(session, begin, items, segment)
            else:
                values = session.push_pull(begin.rank, items, begin.step, begin.worker_id)
        total = 0 if segment is not None else sum(value.nbytes for _, value in values)
        yield pb.PullResponse(begin=pb.PullBegin(data_bytes=total,
                                                 shared_memory=segment is not None))
        parameters = StepParameters.of(begin, items, codec, segment)
        if begin.same_parameters:
            return parameters
        yield from chunks.parameter_messages((
            (pb.ParameterSpec(name=name, shape=value.shape, dtype=value.dtype.name,
                              dtype_label=value.dtype.name, kind="Parameter",
                              has_data=True).SerializeToString(),
             None if segment is not None else value)
            for name, value in values
        ), batches=segment is not None)
        return parameters

    def _repeated_items(
        self, begin: pb.PushBegin, previous: StepParameters | None,
        codec: compression.Codec | None, segment: mmap.mmap | None, take: Take,
    ) -> list[Incoming]:
        """The parameters of a `same_parameters` step: `previous` ones, their data in
        `segment`."""
        if segment is None or previous is None or previous.store != begin.store or \
                len(previous.infos) != begin.parameter_count:
            raise InvalidArgument(
                "same_parameters needs shared memory and a previous step on the same call, "
                f"on the same store and with as many parameters (got {begin.parameter_count}"
                + ("" if previous is None else f"; the previous step had "
                   f"{len(previous.infos)} on store {previous.store!r}") + ")"
            )
        stays = bool(begin.values_offset)
        if previous.views is not None and codec is None:
            mapped, stayed, items = previous.views
            if mapped is segment and stayed == stays:
                return items  # the same regions of the same mapping as the last step
        budget = self.registry.budget(self.registry.get(begin.store))
        items = []
        offset = 0
        for info in previous.infos:
            budget.admit(info)
            buffer = _Buffer(f"parameter {info.name!r}", _data_bytes(info, codec), take,
                             allocate=False)
            offset = _adopt_region(segment, offset, info, buffer, stays=stays)
            items.append(_incoming(info, buffer, codec))
        return items

    def shared_memory_step(
        self, session: TrainingSession, begin: pb.PushBegin,
        specs: list[pb.ParameterSpec], previous: StepParameters | None,
    ) -> StepParameters:
        """A data channel step whose data is in the shared-memory segment `begin` names, checked
        as PushPull's: its parameters `specs` (or with `same_parameters` `previous` ones), run
        on `session`, the new values written to the segment. Returns its parameters."""
        with self.inflight.account() as take:
            segment = self._segments.get(begin.shared_memory)
            codec = _codec(begin, allowed=True)
            if begin.same_parameters:
                items = self._repeated_items(begin, previous, codec, segment, take)
            else:
                items = self._segment_items(begin, specs, codec, segment, take)
            _step_in_segment(session, begin, items, segment)
        return StepParameters.of(begin, items, codec, segment)

    def _segment_items(
        self, begin: pb.PushBegin, specs: list[pb.ParameterSpec],
        codec: compression.Codec | None, segment: mmap.mmap, take: Take,
    ) -> list[Incoming]:
        """The parameters `specs`, their data in `segment`'s regions one after another."""
        _check_count(begin, specs)
        budget = self.registry.budget(self.registry.get(begin.store))
        items = []
        offset = 0
        for spec in specs:
            info, buffer = self._declared(spec, budget, take, codec, allocate=False)
            offset = _adopt_region(segment, offset, info, buffer,
                                   stays=bool(begin.values_offset))
            items.append(_incoming(info, buffer, codec))
        return items

    def data_step_items(
        self, begin: pb.PushBegin, specs: list[pb.ParameterSpec], take: Take,
    ) -> tuple[Callable[[], list[Incoming]], list[np.ndarray]]:
        """A data channel step's parameters, checked and admitted as a PushPull's are: the
        buffers their bytes go into, and a function giving the step's items once they are in."""
        _check_count(begin, specs)
        codec = _codec(begin, allowed=True)
        budget = self.registry.budget(self.registry.get(begin.store))
        declared = [self._declared(spec, budget, take, codec) for spec in specs]
        buffers = [buffer.data for _, buffer in declared if buffer.data is not None]

        def items() -> list[Incoming]:
            for _, buffer in declared:
                if buffer.data is not None:
                    buffer.adopt(buffer.data)  # received whole
            return [_incoming(info, buffer, codec) for info, buffer in declared]

        return items, buffers

    @_rpc
    def Barrier(self, request: pb.BarrierRequest, context: Any, call: _Call) -> Any:
        self.training.session(request.store).barrier(request.rank, request.worker_id)
        return pb.BarrierResponse()

    # ---- helpers -----------------------------------------------------------------------------

    def _receive(
        self, requests: Iterable[pb.PushRequest], call: _Call, take: Take
    ) -> tuple[pb.PushBegin, list[Incoming]]:
        """Read a whole push stream: its PushBegin and each parameter with its bytes."""
        requests = iter(requests)
        begin = self._begin(requests, call)
        if begin.shared_memory:
            raise InvalidArgument("shared memory applies to PushPull streams only")
        return begin, self._items(requests, begin, _codec(begin, allowed=False), None, take)

    def _begin(self, requests: Iterator[pb.PushRequest], call: _Call) -> pb.PushBegin:
        return self._begin_of(next(requests, None), call)

    def _begin_of(self, first: pb.PushRequest | None, call: _Call) -> pb.PushBegin:
        if first is None or first.WhichOneof("item") != "begin":
            raise InvalidArgument("a push stream must start with PushBegin")
        begin = first.begin
        call.store = begin.store
        validation.prefix(begin.prefix)
        validation.version(begin.expected_version)
        return begin

    def _items(
        self,
        requests: Iterator[pb.PushRequest],
        begin: pb.PushBegin,
        codec: compression.Codec | None,
        segment: mmap.mmap | None,
        take: Take,
        stop_at_count: bool = False,
    ) -> list[Incoming]:
        """Each parameter of a push stream with its bytes, from the chunks or from `segment`
        (decoded with `codec` when the gradients are compressed); `take` accounts for the
        bytes of the buffers received into. The stream is read to its end, or with
        `stop_at_count` up to the last byte of the parameters PushBegin announced."""
        # Fails before receiving data for a missing store; the budget refuses a parameter
        # over a limit before its buffer is allocated.
        budget = self.registry.budget(self.registry.get(begin.store))
        items: list[Incoming] = []
        current: tuple[ParameterInfo, _Buffer] | None = None
        offset = 0
        # Batches of specs only, with the data in the segment, are spread out; batches with
        # their data are taken whole. A compressed stream's chunks are codes, which batches
        # cannot describe.
        stream = chunks.expand(requests, data_inline=False) if segment is not None else requests
        if stop_at_count:
            stream = _until(stream, lambda: len(items) + int(
                current is not None and current[1].full) >= begin.parameter_count)
        for request in stream:
            kind = request.WhichOneof("item")
            if kind == "batch":
                if codec is not None:
                    raise InvalidArgument("compressed gradients travel as specs and chunks, "
                                          "never in a ParameterBatch")
                if current is not None:
                    items.append(_incoming(*current))
                    current = None
                _check_announced(len(items) + len(request.batch.parameters), begin)
                items.extend(incoming.batch_items(request.batch, budget, take,
                                                  self.registry.max_tensor_bytes))
            elif kind == "parameter":
                if current is not None:
                    items.append(_incoming(*current, codec))
                _check_announced(len(items) + 1, begin)
                current = self._declared(request.parameter, budget, take, codec,
                                         allocate=segment is None)
                if segment is not None:
                    offset = _adopt_region(segment, offset, *current,
                                           stays=bool(begin.values_offset))
            elif kind == "chunk":
                if current is None:
                    raise InvalidArgument("a chunk came before any parameter")
                if segment is not None:
                    raise InvalidArgument("no chunk may follow a parameter whose data is in "
                                          "shared memory")
                current[1].append(request.chunk)
            else:
                raise InvalidArgument("PushBegin may only come first")
        if current is not None:
            items.append(_incoming(*current, codec))
        if len(items) != begin.parameter_count:
            # Also what a client that went away mid-stream looks like: nothing is written.
            raise InvalidArgument(
                f"the push stream ended after {len(items)} of the {begin.parameter_count} "
                "parameters its PushBegin announced; nothing was written"
            )
        return items

    def _declared(
        self, spec: pb.ParameterSpec, budget: Budget, take: Take,
        codec: compression.Codec | None, allocate: bool = True,
    ) -> tuple[ParameterInfo, _Buffer]:
        info = incoming.declared_info(spec, budget, self.registry.max_tensor_bytes)
        if codec is not None and np.dtype(info.dtype).kind != "f":
            raise InvalidArgument(
                f"parameter {info.name!r} is {info.dtype}: compressed gradients need a "
                "floating-point dtype"
            )
        return info, _Buffer(f"parameter {info.name!r}",
                             _data_bytes(info, codec) if spec.has_data else None, take, allocate)


def _check_announced(count: int, begin: pb.PushBegin) -> None:
    """Raise unless a push stream's `count` parameters so far are at most PushBegin's."""
    if count > begin.parameter_count:
        raise InvalidArgument(f"the push stream has more parameters than the "
                              f"{begin.parameter_count} its PushBegin announced")


class StepParameters(NamedTuple):
    """A PushPull step's store and parameters, for a next step with the same ones; for a
    step through shared memory also its segment, whether the gradients stayed as the worker
    wrote them, and its items: views of the segment, which a next step there reads again."""

    store: str
    infos: list[ParameterInfo]
    views: tuple[mmap.mmap, bool, list[Incoming]] | None = None

    @classmethod
    def of(cls, begin: pb.PushBegin, items: list[Incoming], codec: compression.Codec | None,
           segment: mmap.mmap | None) -> StepParameters:
        views = (segment, bool(begin.values_offset), items) \
            if segment is not None and codec is None else None
        return cls(begin.store, [item.info for item in items], views)


def _check_count(begin: pb.PushBegin, specs: list[pb.ParameterSpec]) -> None:
    """A data channel step's specs are as many as its PushBegin announced."""
    if len(specs) != begin.parameter_count:
        raise InvalidArgument(f"the step has {len(specs)} parameters, its PushBegin "
                              f"announced {begin.parameter_count}")


def _step_in_segment(session: TrainingSession, begin: pb.PushBegin, items: list[Incoming],
                     segment: mmap.mmap) -> list[tuple[str, np.ndarray]]:
    """Run a step whose gradients are in `segment` and write each new value over its
    gradient's region or past them (`begin.values_offset`, checked before the step runs)."""
    offset = _values_offset(begin, segment, items)
    values = session.push_pull(begin.rank, items, begin.step, begin.worker_id)
    for name, value in values:
        data = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        segments.region(segment, offset, data.size, f"parameter {name!r}")[:] = data
        offset += shared_memory.region_bytes(data.size)
    return values


def _data_bytes(info: ParameterInfo, codec: compression.Codec | None) -> int:
    """The bytes a parameter's data takes in a push: raw, or the codes of `codec`."""
    return info.nbytes if codec is None else codec.packed_bytes(math.prod(info.shape or ()))


class _Buffer:
    """Receives chunks into one preallocated buffer of the announced size."""

    def __init__(self, what: str, size: int | None, take: Take, allocate: bool = True) -> None:
        self.what = what
        self.size = size
        if size is not None and allocate:  # data in shared memory takes no buffer of its own
            take(size, what)
        self.data = None if size is None or not allocate else np.empty(size, dtype=np.uint8)
        self.filled = 0

    def adopt(self, data: np.ndarray) -> None:
        """Take `data` (exactly `size` bytes, received elsewhere) as the whole buffer."""
        self.data, self.filled = data, data.size

    def append(self, chunk: bytes | memoryview) -> None:
        if self.data is None:
            raise InvalidArgument(f"{self.what} was declared without data but chunks followed")
        end = self.filled + len(chunk)
        if end > self.data.size:
            raise InvalidArgument(f"{self.what} received more than its {self.size} bytes")
        self.data[self.filled:end] = np.frombuffer(chunk, dtype=np.uint8)
        self.filled = end

    @property
    def full(self) -> bool:
        """Whether every announced byte arrived (always, for a parameter without data)."""
        return self.size is None or self.filled == self.size

    def complete(self) -> np.ndarray | None:
        if self.data is not None and self.filled != self.data.size:
            raise InvalidArgument(
                f"{self.what} received {self.filled} of its {self.data.size} bytes"
            )
        return self.data


def _until(messages: Iterable[Any], done: Callable[[], bool]) -> Iterator[Any]:
    """`messages` up to the first one after which `done()` holds (none when it holds at
    once): the rest stay unread, for the call's next step."""
    if done():
        return
    for message in messages:
        yield message
        if done():
            return


def _adopt_region(segment: mmap.mmap, offset: int, info: ParameterInfo, buffer: _Buffer,
                  stays: bool) -> int:
    """Give `buffer` its bytes from the region at `offset` (a view: the round reads them there,
    read-only when the gradient `stays` as the worker wrote it) and return the offset of the
    next region."""
    raw = _data_bytes(info, None)
    # The region must hold the raw value too: the new value may be written back over it.
    data = segments.region(segment, offset, raw, f"parameter {info.name!r}")
    if buffer.size is not None:
        view = data[:buffer.size]
        view.flags.writeable = not stays
        buffer.adopt(view)
    return offset + shared_memory.region_bytes(raw)


def _values_offset(begin: pb.PushBegin, segment: mmap.mmap, items: list[Incoming]) -> int:
    """Where a shared-memory step's new values go: `begin.values_offset`, checked to lie past
    the gradients' regions with room for as many, or 0 (over the gradients)."""
    if not begin.values_offset:
        return 0
    gradients = sum(shared_memory.region_bytes(_data_bytes(item.info, None)) for item in items)
    if begin.values_offset < gradients or begin.values_offset + gradients > len(segment):
        raise InvalidArgument(
            f"values_offset {begin.values_offset} must lie at or past the gradients' "
            f"{gradients} bytes of regions, with as many bytes after it in the "
            f"{len(segment)}-byte shared-memory segment"
        )
    return begin.values_offset


def _codec(begin: pb.PushBegin, allowed: bool) -> compression.Codec | None:
    """The gradient compression a push stream announces (None for raw bytes)."""
    if not begin.HasField("compression"):
        return None
    if not allowed:
        raise InvalidArgument("gradient compression applies to PushPull streams only")
    try:
        return compression.from_wire(begin.compression.type, begin.compression.threshold)
    except ValueError as error:
        raise InvalidArgument(f"bad gradient compression: {error}") from None


def _incoming(
    info: ParameterInfo, buffer: _Buffer, codec: compression.Codec | None = None
) -> Incoming:
    data = buffer.complete()
    if data is None:
        return Incoming(info)
    if codec is not None:
        return Incoming(info, codec.decompress(data, tuple(info.shape or ()), info.dtype))
    return Incoming(info, data.view(validation.LITTLE_ENDIAN[info.dtype]).reshape(info.shape or ()))


def _page(entries: list[tuple[str, Entry]], token: str, size_of: Callable[[Entry], int],
          order: Callable[[str], Any] = str) -> tuple[list[Entry], str]:
    """The page of `entries` (sorted by `order` of their keys) after the key `token`, as many
    as fit in `REPLY_BYTES`, and the token of the next page ("" after the last). An entry
    removed between pages shifts nothing: the next page starts after the token's place."""
    keys = [key for key, _ in entries]
    start = next((index for index, key in enumerate(keys) if order(key) > order(token)),
                 len(keys)) if token else 0
    page: list[Entry] = []
    used = 0
    for _, entry in entries[start:]:
        used += size_of(entry) + 8
        if page and used > REPLY_BYTES:
            return page, keys[start + len(page) - 1]
        page.append(entry)
    return page, ""


def _received_bytes(items: list[Incoming]) -> int:
    return sum(item.data.nbytes for item in items if item.data is not None)


def _spec(info: ParameterInfo, has_data: bool) -> pb.ParameterSpec:
    return pb.ParameterSpec(
        name=info.name,
        shape=info.shape or (),
        shape_unknown=info.shape is None,
        dtype=info.dtype,
        dtype_label=info.dtype_label,
        kind=info.kind,
        alias_of=info.alias_of or "",
        has_data=has_data,
    )


# Descriptions outlive versions (a write of data keeps them), so a pull of many small
# parameters reuses their serialized specs instead of building each again. Bounded: about
# 200 bytes an entry.
@functools.lru_cache(maxsize=1 << 18)
def _serialized_spec(info: ParameterInfo, has_data: bool) -> bytes:
    return _spec(info, has_data).SerializeToString()


def _store_info(name: str, state: StoreState) -> pb.StoreInfo:
    return pb.StoreInfo(
        name=name,
        prefix=state.prefix,
        version=state.version,
        parameter_count=len(state.parameters),
        data_bytes=state.data_bytes,
    )


def _snapshot_info(info: SnapshotInfo) -> pb.SnapshotInfo:
    return pb.SnapshotInfo(
        store=info.store,
        id=info.id,
        step=info.step,
        created_unix_nanos=info.created_unix_nanos,
        metadata=info.metadata,
        size_bytes=info.size_bytes,
        version=info.version,
        tags=info.tags,
        base=info.base,
    )


def _retention_policy(policy: RetentionPolicy, server_default: bool) -> pb.RetentionPolicy:
    return pb.RetentionPolicy(
        keep_last=policy.keep_last, keep_best=policy.keep_best, metric=policy.metric,
        mode=policy.mode, keep_every_steps=policy.keep_every_steps,
        server_default=server_default,
    )

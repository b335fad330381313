"""`RemoteKVStore`: a KVStore whose values and optimizer live on a paramstore server.

It offers the interface `gluon.Trainer(..., kvstore=kv)` drives (`init`, `push`, `pull`,
`pushpull`, `set_optimizer`, `rank`, `num_workers`, `type`, `barrier`), so training runs through
the server exactly as through the in-process `paramstore.kvstore.LocalKVStore`:

```python
kv = connect(address).kvstore("mlp", mode="sync", num_workers=2)
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore=kv)
```

In sync mode every worker's `push` of a key waits until all workers pushed it; the server sums
the gradients and applies the optimizer once. Pass the batch size of all workers together to
`trainer.step` so that the summed gradient is averaged as one process would average it.

`set_gradient_compression({'type': '2bit', 'threshold': t})` (or the Trainer's
`compression_params`) sends each gradient as 2-bit codes, 16 times fewer bytes than float32:
the worker keeps the residuals, the server sums what the codes stand for.
"""

from __future__ import annotations

import atexit
import mmap
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from paramstore import _files
from paramstore.client import transfer
from paramstore.client.data_channel import DataChannel
from paramstore.client.errors import NotOwner, NotTraining, ParamstoreError, Unavailable
from paramstore.client.steps import StepStream
from paramstore.dtypes import numpy_dtype
from paramstore.kvstore import KVStoreBase, as_list, buffer_of, rehome
from paramstore.nd.ndarray import NDArray
from paramstore.proto import chunks
from paramstore.proto import shared_memory as segments
from paramstore.proto.chunks import CHUNK_BYTES
from paramstore.proto.v1 import paramstore_pb2 as pb

Key = str | int
_RETRIES = 3  # training calls run again after a failover or a move
Result = TypeVar("Result")


def _sum(values: Any) -> np.ndarray:
    parts = [buffer_of(part) for part in as_list(values)]
    if len(parts) == 1:
        return parts[0]
    return np.sum(parts, axis=0, dtype=parts[0].dtype)


class RemoteKVStore(KVStoreBase):
    """A worker of a store's distributed training (made by `Client.kvstore`).

    `bytes_sent` and `bytes_received` count the tensor bytes moved so far. `shared_memory` is
    True when the worker runs on the server's host and its pushes move their data through a
    shared-memory segment rather than the socket (pass `shared_memory=False` to always use the
    socket). Steps go through the server's data channel when it offers one (`data_channel` says
    whether the last step did; pass `data_channel=False` to keep them on gRPC), else, or when it
    cannot be reached, through gRPC; through shared memory, only the step's signal and status
    take that way.
    """

    takes_key_lists = True  # a list of keys moves in one round trip

    def __init__(
        self, client: Any, store: str, mode: str, num_workers: int, timeout: float = 0.0,
        shared_memory: bool = True, data_channel: bool = True,
    ) -> None:
        self._client = client
        self.store = store
        self._join_request = (mode, num_workers, timeout, shared_memory)
        self._steps = StepStream(client, 0.0)  # replaced at each join, with its idle timeout
        self._wants_data_channel = data_channel
        self._data = DataChannel(client, store, 0, 0.0)  # replaced at each join
        self.data_channel = False
        self._rank = -1  # none until the first join; then kept when it joins again
        self._worker_id = 0  # this worker's hold on its rank, sent with each call of it
        lease = self._join()
        self._segment: segments.Segment | None = None  # its mapping is _mapped
        self._mapped: mmap.mmap | None = None
        self._layout: list[pb.ParameterSpec] = []  # the keys of the last step
        self._offsets: list[int] = []  # where each of the layout's regions starts
        self._specs: dict[tuple[str, tuple[int, ...], str], pb.ParameterSpec] = {}
        self._values_read: tuple[Any, ...] = ()  # the last step's values, as read
        self._gradients_end = 0
        self._specs_on_call: list[pb.ParameterSpec] = []  # the last step's on its call
        self._homes: dict[int, _Home] = {}  # arrays living in the layout's regions, by place
        self._fresh: dict[Key, np.ndarray] = {}  # values returned by the last push of a key
        self._in_segment: set[Key] = set()  # fresh values that are views of the segment
        self.bytes_sent = 0
        self.bytes_received = 0
        # The rank is kept while heartbeats come; a process that dies stops sending them and
        # its rank is freed one lease later. Leaving at exit frees it at once.
        self._closed = threading.Event()
        self._heartbeats = threading.Thread(
            target=self._beat, args=(max(lease, 0.3) / 3,),
            name=f"paramstore-heartbeat-{store}", daemon=True,
        )
        self._heartbeats.start()
        atexit.register(self.close)

    def _join(self) -> float:
        """Join the store's training (again): a rank, the shared-memory check, and the lease
        the server gives a rank (returned)."""
        mode, num_workers, timeout, shared_memory = self._join_request
        probe = _probe() if shared_memory else None
        try:
            reply = self._client.call("JoinTraining", pb.JoinTrainingRequest(
                store=self.store, mode=mode, num_workers=num_workers, timeout_seconds=timeout,
                shared_memory_probe=probe.name if probe else "",
                rank=self._rank if self._rank >= 0 else None, worker_id=self._worker_id,
            ))
        finally:
            if probe is not None:
                secret = bytes(probe.mapped[:segments.PROBE_BYTES])
                probe.close()
        self.shared_memory = probe is not None and reply.shared_memory_probe == secret
        if reply.rank != self._rank:  # a new rank numbers its steps from 1; the same goes on
            self._steps_done = 0
        self._rank, self._worker_id = reply.rank, reply.worker_id
        self._num_workers = reply.num_workers
        self.type = f"dist_{reply.mode}"
        self._steps.close()
        self._steps = StepStream(self._client, reply.idle_timeout_seconds)
        self._data.close()
        self._data = DataChannel(self._client, self.store,
                                 reply.data_port if self._wants_data_channel else 0,
                                 reply.idle_timeout_seconds)
        return float(reply.lease_seconds)

    def _training(self, run: Callable[[], Result]) -> Result:
        """`run()`, a call of the store's training; when the training is gone because the
        store moved (its replica died or handed it over, and another took it from its last
        snapshot, optimizer state included), join it again and run it once more: the worker
        resumes there. A move may catch a retry too: a few are made."""
        for attempt in range(_RETRIES + 1):
            try:
                return run()
            except (NotTraining, NotOwner, Unavailable) as error:
                if self._closed.is_set() or attempt == _RETRIES:
                    raise
                if not isinstance(error, NotTraining) and self._still_joined():
                    continue
                self._join()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _still_joined(self) -> bool:
        """Whether the training still holds this worker, after its step call broke (with its
        replica, the network, or a move of the store): then the step goes once more on a new
        call, under its number, so that a step applied before its answer was lost is not
        applied twice. A heartbeat (a call that fails over) finds out."""
        try:
            self._client.call("Heartbeat", pb.HeartbeatRequest(
                store=self.store, rank=self._rank, worker_id=self._worker_id))
        except NotTraining:
            return False
        return True

    def _step(self, run: Callable[[], Result]) -> Result:
        """`run()`, one numbered PushPull step (see `_training`)."""
        result = self._training(run)
        self._steps_done += 1
        return result

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def num_workers(self) -> int:
        return self._num_workers

    def init(self, key: Key | Sequence[Key], value: Any) -> None:
        """Declare keys with initial values; a key the server holds keeps its value (the first
        worker's init wins), so pull after init to start from the common weights."""
        outgoing = [transfer.Outgoing(_spec(k, _sum(v)), _wire(_sum(v)))
                    for k, v in self._keys_and_values(key, value)]
        self._training(lambda: self._client.call("InitKeys", self._requests(outgoing)))

    def push(self, key: Key | Sequence[Key], value: Any, priority: int = 0) -> None:
        """Send gradients (a list for one key is summed here first).

        Sync mode: returns once every worker pushed and the server updated. Raises `Aborted`
        naming the missing ranks when workers did not push within the timeout."""
        outgoing = self._gradients(key, value)
        self._leave_segment()  # this step's values wait for pull, not in the parameters
        received = self._step(
            lambda: self._push_pull_shared(outgoing) if self.shared_memory
            else self._push_pull_socket(outgoing, lambda spec: None))
        for item in received:
            self._fresh[item.spec.name] = item.data
            if self.shared_memory:
                self._in_segment.add(item.spec.name)
            self.bytes_received += item.data.nbytes

    def pushpull(
        self, key: Key | Sequence[Key], value: Any, out: Any = None, priority: int = 0
    ) -> None:
        """`push` then `pull` (without `out` the pushed arrays receive the new values). Over
        the socket each new value is received straight into its first `out` array when that
        one has the value's shape and dtype: a step that fails half-way through its answer
        may leave some of them updated.

        Through shared memory each key's first `out` array and gradient (one NDArray, unless
        compressed) move into the segment after their first step, so that later steps copy no
        values here: the server reads the gradient where backward wrote it and writes the new value
        where the forward pass reads it. They move back to memory of their own at `close`."""
        if self.shared_memory:
            self._push_pull_in_place(key, value, value if out is None else out)
            return
        targets = {str(one_key): [buffer_of(target) for target in as_list(one_out)]
                   for one_key, one_out in self._keys_and_values(key,
                                                                 value if out is None else out)}

        def destination(spec: pb.ParameterSpec) -> np.ndarray | None:
            first = targets[spec.name][0] if targets.get(spec.name) else None
            fits = first is not None and first.flags.c_contiguous and first.flags.writeable \
                and first.shape == tuple(spec.shape) \
                and first.dtype == numpy_dtype(spec.dtype).newbyteorder("<")
            return first if fits else None

        outgoing = self._gradients(key, value)
        for item in self._step(lambda: self._push_pull_socket(outgoing, destination)):
            self.bytes_received += item.data.nbytes
            for target in targets.get(item.spec.name, ()):
                if target is not item.data:
                    np.copyto(target, item.data, casting="unsafe")

    def _push_pull_in_place(self, key: Key | Sequence[Key], value: Any, out: Any) -> None:
        """pushpull through shared memory, the new values written past the gradients."""
        outgoing = self._gradients(key, value)
        received = self._step(lambda: self._push_pull_shared(outgoing, apart=True))
        gradients = self._keys_and_values(key, value)
        targets = self._keys_and_values(key, out)
        for place, ((_, gradient), (_, one_out), item) in enumerate(
                zip(gradients, targets, received)):
            self.bytes_received += item.data.nbytes
            home = self._homes.get(place)
            for target in as_list(one_out):
                if home is None or target is not home.data:
                    np.copyto(buffer_of(target), item.data, casting="unsafe")
            if home is None:
                self._move_in(place, as_list(gradient), as_list(one_out), item.data)

    def _move_in(self, place: int, gradients: list[Any], targets: list[Any],
                 value: np.ndarray) -> None:
        """Make the segment the memory of the step's `place`-th key's gradient and of its
        parameter's data (`targets[0]`), when they are one NDArray each, alike in shape and
        dtype, and the data is the array whose tape leaf owns the gradient. Their regions hold
        their values now. A compressed gradient goes as codes: only the data moves in."""
        data, gradient = targets[0], gradients[0]
        fits = len(gradients) == 1 and isinstance(data, NDArray) and \
            isinstance(gradient, NDArray) and data is not gradient and \
            data.shape == gradient.shape == value.shape and \
            data.dtype == gradient.dtype == value.dtype
        if not fits:
            return
        if self._compression is not None:
            rehome(data, value)
            self._homes[place] = _Home(data, None, None, value)
            return
        assert self._mapped is not None
        region = np.frombuffer(self._mapped, value.dtype, value.size,
                               self._offsets[place]).reshape(value.shape)
        if rehome(gradient, region, owner=data):
            rehome(data, value)
            self._homes[place] = _Home(data, gradient, region, value)

    def _leave_segment(self) -> None:
        """Give every array living in the segment memory of its own again (a copy)."""
        for home in self._homes.values():
            if home.data._data is home.value:
                rehome(home.data, np.array(home.value))
            if home.gradient is not None and home.gradient._data is home.region:
                rehome(home.gradient, np.array(home.region), owner=home.data)
        self._homes.clear()

    def _gradients(self, key: Key | Sequence[Key], value: Any) -> list[transfer.Outgoing]:
        """Each key's gradient as it goes on the wire (summed, compressed when asked)."""
        outgoing = []
        for one_key, one_value in self._keys_and_values(key, value):
            gradient = _sum(one_value)
            data = _wire(gradient) if self._compression is None \
                else self._compression.compress(str(one_key), gradient)
            outgoing.append(transfer.Outgoing(self._spec_of(one_key, gradient), data))
        return outgoing

    def _push_pull_socket(
        self, outgoing: list[transfer.Outgoing],
        destination: Callable[[pb.ParameterSpec], np.ndarray | None],
    ) -> list[transfer.Received]:
        """One step over the socket: the new values, each received into
        `destination(spec)` or, where that is None, a new array."""
        connection = self._data.connection(self._rank, self._worker_id)
        self.data_channel = connection is not None
        if connection is not None:
            self.bytes_sent += transfer.outgoing_bytes(outgoing)
            begin = pb.PushBegin(store=self.store, rank=self._rank, worker_id=self._worker_id,
                                 step=self._steps_done + 1)
            self._compress_on_wire(begin)
            return connection.exchange(begin, outgoing, destination)
        return self._steps.exchange(
            lambda continuing: self._requests(outgoing, training=True),
            lambda replies: transfer.receive(replies, f"pushpull {self.store}", False,
                                             count=len(outgoing), destination=destination)[1])

    def _push_pull_shared(self, outgoing: list[transfer.Outgoing], apart: bool = False
                          ) -> list[transfer.Received]:
        """PushPull with the data in the segment: each gradient goes in its region (unless it
        lives there already) and the new value comes back over it or, `apart`, in a second run
        of regions past the gradients'. The values returned are views of the segment, valid
        until the next step."""
        self._keep_fresh_values()
        gradients_end = self._lay_out(outgoing)
        mapped = self._segment_of(2 * gradients_end if apart else gradients_end)
        for item, offset in zip(outgoing, self._offsets):
            data = item.data.reshape(-1).view(np.uint8)
            region = np.frombuffer(mapped, np.uint8, data.size, offset)
            if region.ctypes.data != data.ctypes.data:
                region[:] = data
        self.bytes_sent += transfer.outgoing_bytes(outgoing)
        assert self._segment is not None
        values_offset = gradients_end if apart else 0
        begin = pb.PushBegin(store=self.store, rank=self._rank, worker_id=self._worker_id,
                             shared_memory=self._segment.name, step=self._steps_done + 1,
                             values_offset=values_offset)
        self._compress_on_wire(begin)
        specs = [item.spec for item in outgoing]
        connection = self._data.connection(self._rank, self._worker_id)
        self.data_channel = connection is not None
        if connection is not None:  # the step's signal on the data channel, its data here
            same = connection.signal(begin, specs)
            return self._values_in_segment(mapped, values_offset, specs, same, iter(
                [chunks.RawParameter(spec) for spec in specs]))

        def requests(continuing: bool) -> Iterator[Any]:
            # The call remembers its last step's specs: the same ones are not sent again.
            begin.same_parameters = continuing and specs == self._specs_on_call
            self._specs_on_call = specs
            bare = [] if begin.same_parameters else \
                [transfer.Outgoing(spec, None) for spec in specs]
            return transfer.push_requests(begin, bare, transfer._NoBar(), count=len(specs))

        def read(replies: Iterator[Any]) -> list[transfer.Received]:
            first = next(replies, None)
            if first is None or not first.begin.shared_memory:
                raise ParamstoreError("the server did not answer through shared memory")
            answered = iter([chunks.RawParameter(spec) for spec in specs]) \
                if begin.same_parameters else chunks.expand(replies, data_inline=False)
            return self._values_in_segment(mapped, values_offset, specs,
                                           begin.same_parameters, answered)

        return self._steps.exchange(requests, read)

    def _values_in_segment(self, mapped: mmap.mmap, values_offset: int,
                           specs: list[pb.ParameterSpec], same_parameters: bool,
                           answered: Iterator[Any]) -> list[transfer.Received]:
        """A shared-memory step's new values, views of the segment where `answered` (the
        values' specs) says; those of the last step, the same objects, when it had the same."""
        if same_parameters and self._values_read[:3] == (mapped, values_offset, specs):
            return cast(list[transfer.Received], self._values_read[3])
        received: list[transfer.Received] = []
        for offset in self._offsets:
            reply = next(answered, None)
            if reply is None or reply.WhichOneof("item") != "parameter":
                raise ParamstoreError("the server sent data outside its shared-memory "
                                      "segment, or fewer values than its step had keys")
            spec = reply.parameter
            dtype = numpy_dtype(spec.dtype).newbyteorder("<")
            count = int(np.prod(tuple(spec.shape)))
            value = np.frombuffer(mapped, dtype, count, values_offset + offset)
            received.append(transfer.Received(spec, value.reshape(tuple(spec.shape))))
        self._values_read = (mapped, values_offset, specs, received)
        return received

    def _lay_out(self, outgoing: list[transfer.Outgoing]) -> int:
        """Place the step's gradients' regions one after another, as the last step's when its
        keys and sizes were the same (arrays living in the segment stay put); return where
        they end. Other keys or sizes move every array living in the segment out first."""
        layout = [item.spec for item in outgoing]
        if layout != self._layout:  # specs of the same keys and arrays are the same objects
            self._leave_segment()
            self._layout = layout
            self._offsets = []
            offset = 0
            for spec in layout:
                self._offsets.append(offset)
                offset += segments.region_bytes(_raw_bytes(spec))
            self._gradients_end = offset
        return self._gradients_end

    def _segment_of(self, size: int) -> mmap.mmap:
        """The worker's segment, mapped; replaced by a larger one when it holds fewer than
        `size` bytes."""
        if self._mapped is None or len(self._mapped) < size:
            self._release_segment()
            self._segment = segments.create(size)
            self._mapped = self._segment.mapped
        return self._mapped

    def _keep_fresh_values(self) -> None:
        # Values not pulled yet would be overwritten by the next push: copy them out.
        for key in self._in_segment & self._fresh.keys():
            self._fresh[key] = np.array(self._fresh[key])
        self._in_segment.clear()

    def _release_segment(self) -> None:
        self._keep_fresh_values()
        self._leave_segment()
        if self._segment is not None:
            self._segment.close()
            # The mapping goes with the last array viewing it: none but the last values read.
            self._segment = self._mapped = None
            self._values_read = ()

    def pull(self, key: Key | Sequence[Key], out: Any = None, priority: int = 0) -> None:
        """Copy each key's value into `out` (an NDArray, or a list to fill alike)."""
        if out is None:
            raise ValueError("pull needs out=: the arrays to copy the values into")
        pairs = self._keys_and_values(key, out)
        missing = [str(k) for k, _ in pairs if str(k) not in self._fresh]
        if missing:
            request = pb.PullRequest(store=self.store, names=missing, batches=True)
            _, received = transfer.receive(
                self._client.stream("Pull", request), f"pull {self.store}", False
            )
            for item in received:
                self._fresh[item.spec.name] = item.data
                self.bytes_received += item.data.nbytes
        for one_key, one_out in pairs:
            value = self._fresh.pop(str(one_key))
            self._in_segment.discard(str(one_key))
            for target in as_list(one_out):
                np.copyto(buffer_of(target), value, casting="unsafe")

    def set_gradient_compression(self, compression_params: Any) -> None:
        super().set_gradient_compression(compression_params)
        # The segment's layout was made for the previous wire format: codes written where a
        # gradient now lives would overwrite it.
        self._leave_segment()

    def set_optimizer(self, optimizer: Any) -> None:
        """Run `optimizer` on the server: it travels as its `dumps()` JSON. One of the same
        kind keeps the server's per-key state (momentum, moments, counts)."""
        request = pb.SetOptimizerRequest(store=self.store, optimizer=optimizer.dumps())
        self._training(lambda: self._client.call("SetOptimizer", request))

    def save_optimizer_states(self, fname: str, dump_optimizer: bool = False) -> None:
        """Write the server's optimizer and its state to the safetensors file `fname` (replaced
        atomically), as `optimizer.save_states` does. Raises `FailedPrecondition` when the
        store has no optimizer yet."""
        replies = self._client.stream("GetOptimizerStates",
                                      pb.GetOptimizerStatesRequest(store=self.store))
        data = b"".join(reply.chunk for reply in replies)

        def write(temporary: str) -> None:
            with open(temporary, "wb") as file:
                file.write(data)

        _files.replace(fname, write)

    def load_optimizer_states(self, fname: str) -> None:
        """Replace the server's optimizer and its state with those saved in `fname`."""
        with open(fname, "rb") as file:
            data = file.read()

        def requests() -> Iterator[pb.SetOptimizerStatesRequest]:
            yield pb.SetOptimizerStatesRequest(store=self.store)
            for start in range(0, len(data), CHUNK_BYTES):
                yield pb.SetOptimizerStatesRequest(chunk=data[start:start + CHUNK_BYTES])

        self._client.call("SetOptimizerStates", requests())

    def barrier(self) -> None:
        """Wait until every worker reached the barrier. Raises `Aborted` after the timeout."""
        self._training(lambda: self._client.call(
            "Barrier", pb.BarrierRequest(store=self.store, rank=self._rank,
                                         worker_id=self._worker_id)))

    def close(self) -> None:
        """Give the rank back so that another worker can take it (also done at exit and by
        the `with` statement; closing twice is harmless)."""
        if self._closed.is_set():
            return
        self._closed.set()
        atexit.unregister(self.close)
        self._steps.close()
        self._data.close()
        self._release_segment()
        try:
            self._client.call("LeaveTraining", pb.LeaveTrainingRequest(
                store=self.store, rank=self._rank, worker_id=self._worker_id,
            ))
        except (ParamstoreError, ValueError):
            pass  # a server gone or restarted, or a client closed, holds no rank of ours

    def _beat(self, interval: float) -> None:
        while not self._closed.wait(interval):
            try:
                self._client.call("Heartbeat", pb.HeartbeatRequest(
                    store=self.store, rank=self._rank, worker_id=self._worker_id))
            except ParamstoreError:
                pass  # a lapsed rank shows up on the next training call, with its reason
            except ValueError:  # grpc's "closed channel": the client was closed first
                return

    def __enter__(self) -> RemoteKVStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _requests(self, outgoing: list[transfer.Outgoing], training: bool = False
                  ) -> Iterator[Any]:
        self.bytes_sent += transfer.outgoing_bytes(outgoing)
        begin = pb.PushBegin(store=self.store, rank=self._rank, worker_id=self._worker_id)
        if training:
            begin.step = self._steps_done + 1
            self._compress_on_wire(begin)
        # Compressed parameters' bytes are codes, not what their specs declare: no batches.
        batches = not (training and self._compression is not None)
        return transfer.push_requests(begin, outgoing, transfer._NoBar(), batches)

    def _spec_of(self, key: Key, array: np.ndarray) -> pb.ParameterSpec:
        """`array`'s spec as key `key`: one object per key, shape and dtype, made once."""
        known = (str(key), array.shape, array.dtype.name)
        spec = self._specs.get(known)
        if spec is None:
            spec = self._specs[known] = _spec(key, array)
        return spec

    def _compress_on_wire(self, begin: pb.PushBegin) -> None:
        if self._compression is not None:
            begin.compression.CopyFrom(pb.GradientCompression(**self._compression.params()))

    def __repr__(self) -> str:
        return (f"RemoteKVStore(store={self.store!r}, type={self.type!r}, rank={self._rank}, "
                f"num_workers={self._num_workers})")


@dataclass
class _Home:
    """A key whose parameter data and gradient live in the segment: `value` and `region`."""

    data: NDArray
    gradient: NDArray | None  # None when gradients go compressed
    region: np.ndarray | None
    value: np.ndarray


def _probe() -> segments.Segment | None:
    """A segment of random bytes for the server to read back, or None where there is no shared
    memory to make."""
    try:
        probe = segments.create(segments.PROBE_BYTES)
    except OSError:
        return None
    probe.mapped[:segments.PROBE_BYTES] = secrets.token_bytes(segments.PROBE_BYTES)
    return probe


def _raw_bytes(spec: pb.ParameterSpec) -> int:
    return int(np.prod(tuple(spec.shape))) * numpy_dtype(spec.dtype).itemsize


def _wire(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _spec(key: Key, array: np.ndarray) -> pb.ParameterSpec:
    return pb.ParameterSpec(
        name=str(key), shape=[int(dim) for dim in array.shape], dtype=array.dtype.name,
        dtype_label=array.dtype.name, kind="Parameter", has_data=True,
    )

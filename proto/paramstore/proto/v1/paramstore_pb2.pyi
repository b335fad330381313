from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoreInfo(_message.Message):
    __slots__ = ("name", "prefix", "version", "parameter_count", "data_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    prefix: str
    version: int
    parameter_count: int
    data_bytes: int
    def __init__(self, name: _Optional[str] = ..., prefix: _Optional[str] = ..., version: _Optional[int] = ..., parameter_count: _Optional[int] = ..., data_bytes: _Optional[int] = ...) -> None: ...

class ParameterSpec(_message.Message):
    __slots__ = ("name", "shape", "shape_unknown", "dtype", "dtype_label", "kind", "alias_of", "has_data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_LABEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ALIAS_OF_FIELD_NUMBER: _ClassVar[int]
    HAS_DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    shape_unknown: bool
    dtype: str
    dtype_label: str
    kind: str
    alias_of: str
    has_data: bool
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., shape_unknown: _Optional[bool] = ..., dtype: _Optional[str] = ..., dtype_label: _Optional[str] = ..., kind: _Optional[str] = ..., alias_of: _Optional[str] = ..., has_data: _Optional[bool] = ...) -> None: ...

class CreateStoreRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetStoreRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListStoresRequest(_message.Message):
    __slots__ = ("page_token",)
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_token: str
    def __init__(self, page_token: _Optional[str] = ...) -> None: ...

class ListStoresResponse(_message.Message):
    __slots__ = ("stores", "next_page_token")
    STORES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stores: _containers.RepeatedCompositeFieldContainer[StoreInfo]
    next_page_token: str
    def __init__(self, stores: _Optional[_Iterable[_Union[StoreInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListReplicasRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicaInfo(_message.Message):
    __slots__ = ("address", "stores")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    address: str
    stores: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, address: _Optional[str] = ..., stores: _Optional[_Iterable[str]] = ...) -> None: ...

class ListReplicasResponse(_message.Message):
    __slots__ = ("replicas", "unowned_stores")
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    UNOWNED_STORES_FIELD_NUMBER: _ClassVar[int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaInfo]
    unowned_stores: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, replicas: _Optional[_Iterable[_Union[ReplicaInfo, _Mapping]]] = ..., unowned_stores: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteStoreRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteStoreResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectParamsRequest(_message.Message):
    __slots__ = ("store", "select")
    STORE_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    store: str
    select: str
    def __init__(self, store: _Optional[str] = ..., select: _Optional[str] = ...) -> None: ...

class CollectParamsResponse(_message.Message):
    __slots__ = ("prefix", "version", "parameters")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    version: int
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    def __init__(self, prefix: _Optional[str] = ..., version: _Optional[int] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ...) -> None: ...

class PushBegin(_message.Message):
    __slots__ = ("store", "prefix", "expected_version", "rank", "parameter_count", "compression", "shared_memory", "step", "values_offset", "same_parameters", "worker_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUES_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SAME_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    prefix: str
    expected_version: int
    rank: int
    parameter_count: int
    compression: GradientCompression
    shared_memory: str
    step: int
    values_offset: int
    same_parameters: bool
    worker_id: int
    def __init__(self, store: _Optional[str] = ..., prefix: _Optional[str] = ..., expected_version: _Optional[int] = ..., rank: _Optional[int] = ..., parameter_count: _Optional[int] = ..., compression: _Optional[_Union[GradientCompression, _Mapping]] = ..., shared_memory: _Optional[str] = ..., step: _Optional[int] = ..., values_offset: _Optional[int] = ..., same_parameters: _Optional[bool] = ..., worker_id: _Optional[int] = ...) -> None: ...

class GradientCompression(_message.Message):
    __slots__ = ("type", "threshold")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    type: str
    threshold: float
    def __init__(self, type: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("begin", "parameter", "chunk", "batch")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    begin: PushBegin
    parameter: ParameterSpec
    chunk: bytes
    batch: ParameterBatch
    def __init__(self, begin: _Optional[_Union[PushBegin, _Mapping]] = ..., parameter: _Optional[_Union[ParameterSpec, _Mapping]] = ..., chunk: _Optional[bytes] = ..., batch: _Optional[_Union[ParameterBatch, _Mapping]] = ...) -> None: ...

class ParameterBatch(_message.Message):
    __slots__ = ("parameters", "data")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    data: bytes
    def __init__(self, parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("version", "data_bytes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    version: int
    data_bytes: int
    def __init__(self, version: _Optional[int] = ..., data_bytes: _Optional[int] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("store", "names", "select", "batches")
    STORE_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    store: str
    names: _containers.RepeatedScalarFieldContainer[str]
    select: str
    batches: bool
    def __init__(self, store: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., select: _Optional[str] = ..., batches: _Optional[bool] = ...) -> None: ...

class PullBegin(_message.Message):
    __slots__ = ("prefix", "version", "data_bytes", "shared_memory")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    version: int
    data_bytes: int
    shared_memory: bool
    def __init__(self, prefix: _Optional[str] = ..., version: _Optional[int] = ..., data_bytes: _Optional[int] = ..., shared_memory: _Optional[bool] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("begin", "parameter", "chunk", "batch")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    begin: PullBegin
    parameter: ParameterSpec
    chunk: bytes
    batch: ParameterBatch
    def __init__(self, begin: _Optional[_Union[PullBegin, _Mapping]] = ..., parameter: _Optional[_Union[ParameterSpec, _Mapping]] = ..., chunk: _Optional[bytes] = ..., batch: _Optional[_Union[ParameterBatch, _Mapping]] = ...) -> None: ...

class InitializeRequest(_message.Message):
    __slots__ = ("store", "initializer", "select", "force_reinit")
    STORE_FIELD_NUMBER: _ClassVar[int]
    INITIALIZER_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    FORCE_REINIT_FIELD_NUMBER: _ClassVar[int]
    store: str
    initializer: str
    select: str
    force_reinit: bool
    def __init__(self, store: _Optional[str] = ..., initializer: _Optional[str] = ..., select: _Optional[str] = ..., force_reinit: _Optional[bool] = ...) -> None: ...

class InitializeResponse(_message.Message):
    __slots__ = ("initialized", "version")
    INITIALIZED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    initialized: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, initialized: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class TieRequest(_message.Message):
    __slots__ = ("store", "alias", "target")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    store: str
    alias: str
    target: str
    def __init__(self, store: _Optional[str] = ..., alias: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class TieResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class UntieRequest(_message.Message):
    __slots__ = ("store", "alias")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    store: str
    alias: str
    def __init__(self, store: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class UntieResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ListTiesRequest(_message.Message):
    __slots__ = ("store", "page_token")
    STORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    store: str
    page_token: str
    def __init__(self, store: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTiesResponse(_message.Message):
    __slots__ = ("ties", "next_page_token")
    class TiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ties: _containers.ScalarMap[str, str]
    next_page_token: str
    def __init__(self, ties: _Optional[_Mapping[str, str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SnapshotInfo(_message.Message):
    __slots__ = ("store", "id", "step", "created_unix_nanos", "metadata", "size_bytes", "version", "tags", "base")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    store: str
    id: str
    step: int
    created_unix_nanos: int
    metadata: _containers.ScalarMap[str, str]
    size_bytes: int
    version: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    base: str
    def __init__(self, store: _Optional[str] = ..., id: _Optional[str] = ..., step: _Optional[int] = ..., created_unix_nanos: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., size_bytes: _Optional[int] = ..., version: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., base: _Optional[str] = ...) -> None: ...

class TakeSnapshotRequest(_message.Message):
    __slots__ = ("store", "step", "metadata", "tags", "delta")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    store: str
    step: int
    metadata: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    delta: bool
    def __init__(self, store: _Optional[str] = ..., step: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[str]] = ..., delta: _Optional[bool] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("store", "page_token")
    STORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    store: str
    page_token: str
    def __init__(self, store: _Optional[str] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots", "next_page_token")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[SnapshotInfo]
    next_page_token: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[SnapshotInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("store", "id", "select")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    store: str
    id: str
    select: str
    def __init__(self, store: _Optional[str] = ..., id: _Optional[str] = ..., select: _Optional[str] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("store", "id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    id: str
    def __init__(self, store: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportSnapshotRequest(_message.Message):
    __slots__ = ("store", "id", "select")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SELECT_FIELD_NUMBER: _ClassVar[int]
    store: str
    id: str
    select: str
    def __init__(self, store: _Optional[str] = ..., id: _Optional[str] = ..., select: _Optional[str] = ...) -> None: ...

class ExportSnapshotResponse(_message.Message):
    __slots__ = ("info", "chunk")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    info: SnapshotInfo
    chunk: bytes
    def __init__(self, info: _Optional[_Union[SnapshotInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class TagSnapshotRequest(_message.Message):
    __slots__ = ("store", "id", "tag")
    STORE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    store: str
    id: str
    tag: str
    def __init__(self, store: _Optional[str] = ..., id: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class UntagSnapshotRequest(_message.Message):
    __slots__ = ("store", "tag")
    STORE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    store: str
    tag: str
    def __init__(self, store: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class UntagSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RetentionPolicy(_message.Message):
    __slots__ = ("keep_last", "keep_best", "metric", "mode", "keep_every_steps", "server_default")
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    KEEP_BEST_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KEEP_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    SERVER_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    keep_last: int
    keep_best: int
    metric: str
    mode: str
    keep_every_steps: int
    server_default: bool
    def __init__(self, keep_last: _Optional[int] = ..., keep_best: _Optional[int] = ..., metric: _Optional[str] = ..., mode: _Optional[str] = ..., keep_every_steps: _Optional[int] = ..., server_default: _Optional[bool] = ...) -> None: ...

class SetRetentionRequest(_message.Message):
    __slots__ = ("store", "policy")
    STORE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    store: str
    policy: RetentionPolicy
    def __init__(self, store: _Optional[str] = ..., policy: _Optional[_Union[RetentionPolicy, _Mapping]] = ...) -> None: ...

class GetRetentionRequest(_message.Message):
    __slots__ = ("store",)
    STORE_FIELD_NUMBER: _ClassVar[int]
    store: str
    def __init__(self, store: _Optional[str] = ...) -> None: ...

class DiffSnapshotsRequest(_message.Message):
    __slots__ = ("store", "a", "b")
    STORE_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    store: str
    a: str
    b: str
    def __init__(self, store: _Optional[str] = ..., a: _Optional[str] = ..., b: _Optional[str] = ...) -> None: ...

class ParameterDiff(_message.Message):
    __slots__ = ("name", "status", "l2", "relative", "tie_a", "tie_b")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_FIELD_NUMBER: _ClassVar[int]
    TIE_A_FIELD_NUMBER: _ClassVar[int]
    TIE_B_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    l2: float
    relative: float
    tie_a: str
    tie_b: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., l2: _Optional[float] = ..., relative: _Optional[float] = ..., tie_a: _Optional[str] = ..., tie_b: _Optional[str] = ...) -> None: ...

class DiffSnapshotsResponse(_message.Message):
    __slots__ = ("parameters",)
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterDiff]
    def __init__(self, parameters: _Optional[_Iterable[_Union[ParameterDiff, _Mapping]]] = ...) -> None: ...

class ImportBegin(_message.Message):
    __slots__ = ("store", "size_bytes")
    STORE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    store: str
    size_bytes: int
    def __init__(self, store: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class ImportSnapshotRequest(_message.Message):
    __slots__ = ("begin", "chunk")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    begin: ImportBegin
    chunk: bytes
    def __init__(self, begin: _Optional[_Union[ImportBegin, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class JoinTrainingRequest(_message.Message):
    __slots__ = ("store", "mode", "num_workers", "timeout_seconds", "shared_memory_probe", "rank", "worker_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_PROBE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    mode: str
    num_workers: int
    timeout_seconds: float
    shared_memory_probe: str
    rank: int
    worker_id: int
    def __init__(self, store: _Optional[str] = ..., mode: _Optional[str] = ..., num_workers: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., shared_memory_probe: _Optional[str] = ..., rank: _Optional[int] = ..., worker_id: _Optional[int] = ...) -> None: ...

class JoinTrainingResponse(_message.Message):
    __slots__ = ("rank", "num_workers", "mode", "step", "lease_seconds", "shared_memory_probe", "idle_timeout_seconds", "data_port", "worker_id")
    RANK_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_PROBE_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATA_PORT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    rank: int
    num_workers: int
    mode: str
    step: int
    lease_seconds: float
    shared_memory_probe: bytes
    idle_timeout_seconds: float
    data_port: int
    worker_id: int
    def __init__(self, rank: _Optional[int] = ..., num_workers: _Optional[int] = ..., mode: _Optional[str] = ..., step: _Optional[int] = ..., lease_seconds: _Optional[float] = ..., shared_memory_probe: _Optional[bytes] = ..., idle_timeout_seconds: _Optional[float] = ..., data_port: _Optional[int] = ..., worker_id: _Optional[int] = ...) -> None: ...

class LeaveTrainingRequest(_message.Message):
    __slots__ = ("store", "rank", "worker_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    rank: int
    worker_id: int
    def __init__(self, store: _Optional[str] = ..., rank: _Optional[int] = ..., worker_id: _Optional[int] = ...) -> None: ...

class LeaveTrainingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetOptimizerRequest(_message.Message):
    __slots__ = ("store", "optimizer")
    STORE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    store: str
    optimizer: str
    def __init__(self, store: _Optional[str] = ..., optimizer: _Optional[str] = ...) -> None: ...

class SetOptimizerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BarrierRequest(_message.Message):
    __slots__ = ("store", "rank", "worker_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    rank: int
    worker_id: int
    def __init__(self, store: _Optional[str] = ..., rank: _Optional[int] = ..., worker_id: _Optional[int] = ...) -> None: ...

class BarrierResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetOptimizerStatesRequest(_message.Message):
    __slots__ = ("store",)
    STORE_FIELD_NUMBER: _ClassVar[int]
    store: str
    def __init__(self, store: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    def __init__(self, chunk: _Optional[bytes] = ...) -> None: ...

class SetOptimizerStatesRequest(_message.Message):
    __slots__ = ("store", "chunk")
    STORE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    store: str
    chunk: bytes
    def __init__(self, store: _Optional[str] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SetOptimizerStatesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("store", "rank", "worker_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    rank: int
    worker_id: int
    def __init__(self, store: _Optional[str] = ..., rank: _Optional[int] = ..., worker_id: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenDataChannelRequest(_message.Message):
    __slots__ = ("store", "rank", "worker_id")
    STORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    store: str
    rank: int
    worker_id: int
    def __init__(self, store: _Optional[str] = ..., rank: _Optional[int] = ..., worker_id: _Optional[int] = ...) -> None: ...

class OpenDataChannelResponse(_message.Message):
    __slots__ = ("ticket", "port", "host", "expires_seconds")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ticket: bytes
    port: int
    host: str
    expires_seconds: float
    def __init__(self, ticket: _Optional[bytes] = ..., port: _Optional[int] = ..., host: _Optional[str] = ..., expires_seconds: _Optional[float] = ...) -> None: ...

class DataStep(_message.Message):
    __slots__ = ("begin", "parameters")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    begin: PushBegin
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    def __init__(self, begin: _Optional[_Union[PushBegin, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ...) -> None: ...

class OpenDataReadRequest(_message.Message):
    __slots__ = ("store",)
    STORE_FIELD_NUMBER: _ClassVar[int]
    store: str
    def __init__(self, store: _Optional[str] = ...) -> None: ...

class DataRead(_message.Message):
    __slots__ = ("store", "version", "names")
    STORE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    store: str
    version: int
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, store: _Optional[str] = ..., version: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class OpenDataWriteRequest(_message.Message):
    __slots__ = ("store",)
    STORE_FIELD_NUMBER: _ClassVar[int]
    store: str
    def __init__(self, store: _Optional[str] = ...) -> None: ...

class DataWrite(_message.Message):
    __slots__ = ("begin", "parameters")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    begin: PushBegin
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    def __init__(self, begin: _Optional[_Union[PushBegin, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ...) -> None: ...

class DataStatus(_message.Message):
    __slots__ = ("code", "message", "error_kind", "owner")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    error_kind: str
    owner: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., error_kind: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

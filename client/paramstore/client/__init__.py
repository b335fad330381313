"""The paramstore SDK: `collect_params()` over the wire.

```python
from paramstore.client import connect
with connect("127.0.0.1:50051") as client:
    store = client.create_store("mlp")
    store.push(net.collect_params())
    print(store.collect_params(".*weight"))
```
Errors are in `paramstore.client.errors`, all subclasses of `ParamstoreError`.
"""

from paramstore.client.client import Client, connect
from paramstore.client.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ParameterNotFound,
    ParamstoreError,
    SnapshotNotFound,
    StoreNotFound,
    Unauthenticated,
    Unavailable,
)
from paramstore.client.kvstore import RemoteKVStore
from paramstore.client.models import SnapshotInfo, StoreInfo
from paramstore.client.params import RemoteParameter, RemoteParameterDict
from paramstore.client.store import RemoteStore

__all__ = [
    "AlreadyExists", "Client", "FailedPrecondition", "InvalidArgument", "ParameterNotFound",
    "ParamstoreError", "RemoteKVStore", "RemoteParameter", "RemoteParameterDict", "RemoteStore",
    "SnapshotInfo",
    "SnapshotNotFound", "StoreInfo", "StoreNotFound", "Unauthenticated", "Unavailable",
    "connect",
]

"""How snapshots move to and from S3-compatible storage: from the arrays' memory up, into memory
down, a selection reading only its bytes, large objects in parallel parts, and every object a
plain safetensors file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest
import safetensors.numpy
from s3_server import new_bucket
from tcp_proxy import FaultyProxy

from paramstore import checkpoint
from paramstore.client import connect
from paramstore.server import create_server
from paramstore.server.storage import Catalog, Contents
from paramstore.server.storage.s3 import S3Backend, client_config
from paramstore.server.stores import Incoming, ParameterInfo, Store

MIB = 1 << 20


def layers(count: int, floats: int) -> dict[str, np.ndarray]:
    return {f"layer{index}_weight": np.full(floats, index, np.float32) for index in range(count)}


def store_of(tensors: dict[str, np.ndarray]) -> Store:
    store = Store("s")
    store.push("", [Incoming(ParameterInfo(name, array.shape, "float32", "float32"), array)
                    for name, array in tensors.items()])
    return store


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    return new_bucket(s3_endpoint)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(urlsplit(s3_endpoint).port or 80)
    yield proxy
    proxy.close()


def objects(s3_endpoint: str, bucket: str, part: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, config=client_config())
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            if part in item["Key"]]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_a_snapshot_object_is_a_plain_safetensors_file_with_the_librarys_layout(
        s3_endpoint, bucket):
    tensors = {**layers(3, 1000), "step": np.array([7], np.int64),
               "mask": np.ones(5, np.bool_)}
    catalog = Catalog(S3Backend(bucket, "data", endpoint=s3_endpoint))
    catalog.create_store("s")
    catalog.take_snapshot("s", lambda: Contents(store_of(tensors).state()))
    (data,) = objects(s3_endpoint, bucket, ".safetensors").values()
    loaded = safetensors.numpy.load(data)
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)
    # The library writes the same bytes, but for the order of the `__metadata__` keys.
    header, order, body = split_file(data)
    library = safetensors.numpy.save(loaded, metadata=header["__metadata__"])
    assert split_file(library) == (header, order, body) and len(library) == len(data)


def split_file(data: bytes) -> tuple[dict, list[str], bytes]:
    """A safetensors file's header (parsed), the order of its keys, and its data."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    return header, list(header), data[8 + length:]


def test_a_restore_holds_the_snapshot_in_one_buffer_its_arrays_view(s3_endpoint, bucket):
    catalog = Catalog(S3Backend(bucket, "data", endpoint=s3_endpoint))
    catalog.create_store("s")
    info = catalog.take_snapshot("s", lambda: Contents(store_of(layers(4, 1000)).state()))
    arrays = catalog.read_snapshot("s", info.id).state.data.values()
    (owner,) = {id(_owner(array)): _owner(array) for array in arrays}.values()
    assert isinstance(owner, bytes) and len(owner) == info.size_bytes
    assert all(not array.flags.writeable for array in arrays)


def _owner(array: np.ndarray) -> object:
    """The object whose memory `array` views."""
    owner: object = array
    while isinstance(owner, (np.ndarray, memoryview)):
        owner = owner.base if isinstance(owner, np.ndarray) else owner.obj
    return owner


def test_a_selected_restore_downloads_only_the_selected_tensors_bytes(proxy, bucket):
    server, port = create_server("127.0.0.1:0", data_dir=f"s3://{bucket}/data",
                                 s3_endpoint=proxy.endpoint)
    server.start()
    try:
        with connect(f"127.0.0.1:{port}") as client:
            store = client.create_store("net")
            store.push(layers(8, MIB // 4))  # eight tensors of 1 MiB
            snapshot = store.snapshot()
            store.push({"layer3_weight": np.zeros(MIB // 4, np.float32)})
            before = proxy.downloaded
            store.restore(snapshot.id, select="layer3_")
            downloaded = proxy.downloaded - before
            assert float(store.collect_params()["layer3_weight"].data().asnumpy()[0]) == 3.0
    finally:
        server.stop(None).wait()
    # The tensor, the header's first guess (64 KiB) and the responses' HTTP headers.
    assert MIB <= downloaded < MIB + (64 << 10) + (16 << 10)


@pytest.mark.parametrize("select", [None, "layer1_"])
def test_a_large_snapshot_goes_up_in_parts_and_comes_down_in_ranges(
        s3_endpoint, bucket, select):
    # Parts of 5 MiB, S3's smallest: a 12 MiB snapshot is three parts, read in three ranges.
    backend = S3Backend(bucket, "data", endpoint=s3_endpoint, single_request_bytes=5 * MIB,
                        part_bytes=5 * MIB)
    tensors = layers(6, MIB // 2)
    catalog = Catalog(backend)
    catalog.create_store("s")
    info = catalog.take_snapshot("s", lambda: Contents(store_of(tensors).state()))
    (data,) = objects(s3_endpoint, bucket, ".safetensors").values()
    assert safetensors.numpy.load(data).keys() == tensors.keys()
    state = catalog.read_snapshot("s", info.id, select and (lambda name: name.startswith(select)))
    kept = [name for name in tensors if select is None or name.startswith(select)]
    assert list(state.state.data) == kept
    for name in kept:
        np.testing.assert_array_equal(state.state.data[name], tensors[name])


def test_an_upload_cut_mid_way_is_sent_again_whole_from_the_start(proxy, bucket):
    tensors = layers(4, MIB // 4)
    catalog = Catalog(S3Backend(bucket, "data", endpoint=proxy.endpoint))
    catalog.create_store("s")
    proxy.mode, proxy.drop_after = "drop-once", MIB  # botocore retries the PUT
    info = catalog.take_snapshot("s", lambda: Contents(store_of(tensors).state()))
    assert proxy.mode == "pass"  # the cut happened
    state = catalog.read_snapshot("s", info.id).state
    for name, array in tensors.items():
        np.testing.assert_array_equal(state.data[name], array)


def test_an_upload_is_spooled_in_a_memory_file_no_crash_can_leave_behind(s3_endpoint, bucket):
    # A named spool file (in /dev/shm or the temporary folder) would outlive a killed server.

    folders = [folder for folder in ("/dev/shm", tempfile.gettempdir()) if os.path.isdir(folder)]
    before = {folder: set(os.listdir(folder)) for folder in folders}
    tensors = layers(3, 1000)
    seen: dict[str, set[str]] = {}

    def produce(path: str) -> None:
        checkpoint.write(path, tensors)  # as the server's producers write: by path, in place
        seen.update({folder: set(os.listdir(folder)) - before[folder] for folder in folders})

    backend = S3Backend(bucket, "", endpoint=s3_endpoint)
    size = backend.write("imports/one.safetensors", produce)
    assert seen == {folder: set() for folder in folders}
    with backend.local_file("imports/one.safetensors") as path:
        loaded = safetensors.numpy.load_file(path)
        assert os.path.getsize(path) == size
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)

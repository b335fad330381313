"""Object-storage faults: the endpoint down, connections dropped mid-upload, requests stalled.

A server on `s3://` talks to moto through `FaultyProxy`. Each fault gives the caller a clear
UNAVAILABLE, commits nothing, leaves no listed half-object and no incomplete multipart upload,
and the server works again as soon as the endpoint does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest
from s3_server import new_bucket
from server_process import paramstore_command
from tcp_proxy import FaultyProxy

from paramstore.client import connect
from paramstore.client.errors import Unavailable
from paramstore.server import create_server

BIG = (40 << 20) // 4  # floats: a 40 MiB tensor goes up as a multipart upload
STALL_TIMEOUT = 0.3  # seconds


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(urlsplit(s3_endpoint).port or 80)
    yield proxy
    proxy.close()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    return new_bucket(s3_endpoint)


@pytest.fixture
def serve(request: pytest.FixtureRequest, proxy: FaultyProxy, bucket: str) -> Iterator[str]:
    """A server whose storage is the bucket, reached through the proxy; yields its address.
    Its S3 timeout is 1 s, or the test's indirect parameter."""
    server, port = create_server("127.0.0.1:0", data_dir=f"s3://{bucket}/data",
                                 s3_endpoint=proxy.endpoint,
                                 s3_timeout=getattr(request, "param", 1.0))
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait()


def incomplete_uploads(s3_endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    return [upload["Key"] for upload in client.list_multipart_uploads(
        Bucket=bucket).get("Uploads", [])]


# A stalled request is waited on for the whole S3 timeout at each of boto3's attempts: a short
# timeout keeps the stall quick (small objects, so a request that passes takes far less).
@pytest.mark.parametrize("fault, serve", [("refuse", 1.0), ("stall", STALL_TIMEOUT)],
                         indirect=["serve"])
def test_a_snapshot_during_a_fault_is_unavailable_and_commits_nothing(serve, proxy, fault):
    with connect(serve) as client:
        store = client.create_store("s")
        store.push({"w": np.ones(1000, np.float32)})
        first = store.snapshot()
        proxy.mode = fault
        with pytest.raises(Unavailable, match="nothing was committed"):
            store.snapshot()
        proxy.mode = "pass"
        assert [info.id for info in store.snapshots()] == [first.id]
        assert store.snapshot().id > first.id  # the server works again with the endpoint


def test_an_upload_cut_mid_way_leaves_no_half_object_and_no_open_upload(
        serve, proxy, bucket, s3_endpoint):
    with connect(serve) as client:
        store = client.create_store("big")
        store.push({"w": np.ones(BIG, np.float32)})
        proxy.mode, proxy.drop_after = "drop", 1 << 20  # within every part
        with pytest.raises(Unavailable):
            store.snapshot()
        proxy.mode = "pass"
        assert store.snapshots() == []
        assert incomplete_uploads(s3_endpoint, bucket) == []
        snapshot = store.snapshot()
        store.push({"w": np.zeros(BIG, np.float32)})
        store.restore(snapshot.id)
        np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), 1)


def test_deleting_a_store_while_the_endpoint_is_down_keeps_the_store(serve, proxy):
    with connect(serve) as client:
        store = client.create_store("kept")
        store.push({"w": np.ones(10, np.float32)})
        snapshot = store.snapshot()
        proxy.mode = "refuse"
        with pytest.raises(Unavailable):
            client.delete_store("kept")
        proxy.mode = "pass"
        assert "kept" in client.list_stores()
        assert [info.id for info in store.snapshots()] == [snapshot.id]


def test_a_server_restarted_after_faults_serves_what_was_committed(
        proxy, bucket, s3_endpoint):
    url = f"s3://{bucket}/data"
    server, port = create_server("127.0.0.1:0", data_dir=url, s3_endpoint=proxy.endpoint,
                                 s3_timeout=1.0)
    server.start()
    with connect(f"127.0.0.1:{port}") as client:
        store = client.create_store("s")
        store.push({"w": np.full(BIG, 3.0, np.float32)})
        kept = store.snapshot()
        proxy.mode, proxy.drop_after = "drop", 1 << 20
        with pytest.raises(Unavailable):
            store.snapshot()
    server.stop(None).wait()
    proxy.mode = "pass"
    server, port = create_server("127.0.0.1:0", data_dir=url, s3_endpoint=s3_endpoint)
    server.start()
    try:
        with connect(f"127.0.0.1:{port}") as client:
            store = client.store("s")
            assert [info.id for info in store.snapshots()] == [kept.id]
            np.testing.assert_array_equal(store.collect_params()["w"].data().asnumpy(), 3.0)
        assert incomplete_uploads(s3_endpoint, bucket) == []
    finally:
        server.stop(None).wait()


@pytest.mark.parametrize("data_dir, flags, message", [
    ("gs://bucket/x", (), "scheme is not served"),
    ("s3:/bucket/x", (), "is not an s3://BUCKET[/PREFIX] URL"),  # not a folder named "s3:"
    ("s3://no-such-bucket-anywhere/x", ("--s3-endpoint", "{moto}"), "does not exist"),
    ("s3://bucket/x", ("--s3-endpoint", "http://127.0.0.1:{closed}", "--s3-timeout", "1"),
     "unreachable"),
])
def test_serve_refuses_storage_it_cannot_use_with_a_clear_message(
        data_dir, flags, message, s3_endpoint):
    from s3_server import free_port

    flags = [flag.format(moto=s3_endpoint, closed=free_port()) for flag in flags]
    done = subprocess.run([*paramstore_command(), "serve", "--address", "127.0.0.1:0",
                           "--data-dir", data_dir, *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_serve_without_aws_credentials_says_which_variables_to_set():
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment.update(AWS_REGION="us-east-1", AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                       AWS_CONFIG_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run([*paramstore_command(), "serve", "--address", "127.0.0.1:0",
                           "--data-dir", "s3://bucket/x", "--s3-endpoint", "http://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in done.stderr

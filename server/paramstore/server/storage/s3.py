"""The S3-compatible backend: objects under `s3://BUCKET/PREFIX/`, through boto3.

boto3 because it is the reference client of the protocol: conditional writes (`IfNoneMatch`),
multipart uploads whose parts and abort the backend controls, ranged GETs, and timeouts and
retries set per client. (obstore, measured against the same moto server in one run, was no
faster for single PUTs; boto3's explicit multipart calls let a failed upload be aborted.)

A commit is `PutObject` with `If-None-Match: *`, which only one writer can win. Objects over
512 MiB go up as parallel multipart uploads and come down as parallel ranged GETs; every object
comes down into a local spool file that the readers map, so reading a snapshot needs no more
memory than on local disk.
Interrupted multipart uploads are aborted when a store is opened.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from paramstore.server.storage.backend import Backend, BackendError, checked_key

# Objects up to this size move as one request each way; larger ones in parallel parts of
# PART_BYTES. Measured against an S3-compatible server on loopback, parts lose to one request
# below a few hundred MiB (each costs a request and the server's reassembly); over long links
# and for the largest snapshots, parallel parts win.
SINGLE_REQUEST_BYTES = 512 << 20
PART_BYTES = 64 << 20  # S3 wants parts of at least 5 MiB (but the last)
PARALLEL_TRANSFERS = 4
_COPY_BYTES = 8 << 20  # the piece of a single download written to the spool file at a time
_MISSING = {"NoSuchKey", "404", "NotFound"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Backend(Backend):
    """Objects in `bucket` under `prefix`. Credentials, region and endpoint come from the
    standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    `AWS_ENDPOINT_URL`); `endpoint` overrides the last."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 timeout: float = 30.0) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        config = Config(connect_timeout=min(timeout, 10.0), read_timeout=timeout,
                        retries={"mode": "standard", "max_attempts": 3},
                        max_pool_connections=2 * PARALLEL_TRANSFERS)
        try:
            with _s3_errors(self.location()):
                self.client = boto3.client("s3", endpoint_url=endpoint, config=config)
                self.client.head_bucket(Bucket=bucket)
        except FileNotFoundError:
            raise BackendError(f"bucket {bucket!r} does not exist (or is not visible with "
                               "these credentials)") from None

    @classmethod
    def from_url(cls, url: str, *, endpoint: str | None = None, timeout: float = 30.0
                 ) -> S3Backend:
        """The backend of `s3://BUCKET[/PREFIX]`."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"{url!r} is not an s3://BUCKET[/PREFIX] URL")
        return cls(parts.netloc, parts.path, endpoint=endpoint, timeout=timeout)

    def location(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key) if key else self.prefix}"

    # ---- the verbs ------------------------------------------------------------------------

    def write(self, key: str, produce: Callable[[str], None]) -> int:
        name = self._key(key)
        with _spool(_MEMORY_FOLDER) as path:
            produce(path)
            size = os.path.getsize(path)
            with _s3_errors(self.location(key)):
                if size <= SINGLE_REQUEST_BYTES:
                    with open(path, "rb") as file:  # one buffer: botocore sends it fastest
                        self.client.put_object(Bucket=self.bucket, Key=name, Body=file.read())
                else:
                    self._upload_parts(name, path, size)
        return size

    def _upload_parts(self, name: str, path: str, size: int) -> None:
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            starts = range(0, size, PART_BYTES)
            with open(path, "rb") as file, ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
                def part(number: int, start: int) -> dict[str, Any]:
                    body = os.pread(file.fileno(), PART_BYTES, start)
                    reply = self.client.upload_part(Bucket=self.bucket, Key=name, Body=body,
                                                    UploadId=upload, PartNumber=number)
                    return {"PartNumber": number, "ETag": reply["ETag"]}

                parts = list(pool.map(part, range(1, len(starts) + 1), starts))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload,
                MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(botocore.exceptions.BotoCoreError,
                                     botocore.exceptions.ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name,
                                                   UploadId=upload)
            raise

    def create(self, key: str, data: bytes) -> bool:
        try:
            with _s3_errors(self.location(key)):
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                       IfNoneMatch="*")
        except _Taken:
            return False
        return True

    def read(self, key: str) -> bytes:
        with _s3_errors(self.location(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return body.read()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of object `key` from byte `start`."""
        with _s3_errors(self.location(key)):
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                           Range=f"bytes={start}-{start + length - 1}")
            return reply["Body"].read()

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[str]:
        name = self._key(key)
        with _s3_errors(self.location(key)):
            size = self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"]
        with _spool() as path:
            with open(path, "wb") as file, _s3_errors(self.location(key)):
                if size <= SINGLE_REQUEST_BYTES:
                    body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
                    while piece := body.read(_COPY_BYTES):
                        file.write(piece)
                else:
                    file.truncate(size)
                    with ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
                        def fetch(start: int) -> None:
                            data = self.read_range(key, start, min(PART_BYTES, size - start))
                            os.pwrite(file.fileno(), data, start)

                        list(pool.map(fetch, range(0, size, PART_BYTES)))
            yield path

    def list(self, prefix: str) -> list[str]:
        base = self._key(prefix) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        keys = []
        with _s3_errors(self.location(prefix)):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=base):
                keys += [item["Key"][len(self.prefix) + 1 if self.prefix else 0:]
                         for item in page.get("Contents", [])]
        return sorted(keys)

    def folders(self, prefix: str) -> list[str]:
        base = self._key(prefix) + "/"
        names = []
        with _s3_errors(self.location(prefix)):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=base, Delimiter="/"):
                names += [item["Prefix"][len(base):].rstrip("/")
                          for item in page.get("CommonPrefixes", [])]
        return sorted(names)

    def delete(self, key: str) -> None:
        with _s3_errors(self.location(key)):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def remove_partial_writes(self, prefix: str) -> None:
        base = self._key(prefix) + "/"
        with _s3_errors(self.location(prefix)):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=base):
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def _key(self, key: str) -> str:
        checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key


class _Taken(Exception):
    """A conditional write found its key taken."""


# Uploads are spooled in memory where the system offers a memory file system: a file written
# to disk only to be read back at once costs writeback (measured: 0.6-1 s for 256 MiB, as much
# as a third of the PUT). Downloads stay on disk, where the mapped pages can be reclaimed.
_MEMORY_FOLDER = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
    else None


@contextlib.contextmanager
def _spool(folder: str | None = None) -> Iterator[str]:
    """A temporary file (in `folder`, else the system's), removed afterwards (a mapping of it
    stays valid)."""
    descriptor, path = tempfile.mkstemp(prefix="paramstore-s3-", suffix=".safetensors",
                                        dir=folder)
    os.close(descriptor)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def _s3_errors(where: str) -> Iterator[None]:
    """botocore's errors as the storage layer's: a missing object is `FileNotFoundError`, a
    taken key `_Taken`, anything else (endpoint down, dropped or stalled connections,
    throttling, denied) a `BackendError` naming the object."""
    try:
        yield
    except botocore.exceptions.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise FileNotFoundError(f"no object {where}") from None
        if code in _TAKEN:
            raise _Taken(where) from None
        raise BackendError(f"object storage refused {where}: {code or error}") from None
    except botocore.exceptions.BotoCoreError as error:
        raise BackendError(f"object storage unreachable for {where}: "
                           f"{type(error).__name__}") from None

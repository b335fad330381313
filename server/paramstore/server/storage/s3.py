"""The S3-compatible backend: objects under `s3://BUCKET/PREFIX/`, through boto3.

boto3 because it is the reference client of the protocol: conditional writes (`IfNoneMatch`),
multipart uploads whose parts and abort the backend controls, ranged GETs, and timeouts and
retries set per client. (obstore, measured against the same moto server in one run, was no
faster for single PUTs; boto3's explicit multipart calls let a failed upload be aborted.)

A commit is `PutObject` with `If-None-Match: *`, which only one writer can win. A snapshot goes
up from the arrays' own memory (the header, then each array's bytes, never copied into a file
or one buffer) and comes down into memory, its arrays views of what was read; a selected
restore reads the header, then only the selected tensors' bytes, in ranged GETs. Objects over
`single_request_bytes` go up as parallel multipart uploads and come down as parallel ranged
GETs. Every upload carries its CRC-32C, which the object store checks on arrival; every read of
a snapshot checks each tensor's CRC-32C from its commit record. So the client's own per-request
checksums and payload hashing are turned off (`client_config`): they would read every byte
again for no more safety. Interrupted multipart uploads are aborted when a store is opened.
"""

from __future__ import annotations

import base64
import contextlib
import io
import mmap
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
import crc32c
from botocore.config import Config

from paramstore import checkpoint
from paramstore.server.storage.backend import Backend, BackendError, checked_key

# Objects up to this size move as one request each way; larger ones in parallel parts of
# PART_BYTES. Measured against an S3-compatible server on loopback (bench/s3.py), parts lose to
# one request at 256 MiB (each costs a request and the server's reassembly); over long links
# and for the largest snapshots, parallel parts win.
SINGLE_REQUEST_BYTES = 512 << 20
PART_BYTES = 64 << 20  # S3 wants parts of at least 5 MiB (but the last)
PARALLEL_TRANSFERS = 4
_COPY_BYTES = 8 << 20  # the piece of a single download written to the spool file at a time
_MISSING = {"NoSuchKey", "404", "NotFound"}
_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def client_config(timeout: float = 30.0) -> Config:
    """The configuration of the backend's boto3 client: `timeout` seconds for a stalled
    request, standard retries, and no checksums or payload hashes of botocore's own (the
    backend sends and checks CRC-32C itself)."""
    return Config(connect_timeout=min(timeout, 10.0), read_timeout=timeout,
                  retries={"mode": "standard", "max_attempts": 3},
                  max_pool_connections=2 * PARALLEL_TRANSFERS,
                  request_checksum_calculation="when_required",
                  response_checksum_validation="when_required",
                  s3={"payload_signing_enabled": False})


class S3Backend(Backend):
    """Objects in `bucket` under `prefix`. Credentials, region and endpoint come from the
    standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    `AWS_ENDPOINT_URL`); `endpoint` overrides the last. Objects larger than
    `single_request_bytes` move in parallel parts of `part_bytes`."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 timeout: float = 30.0, single_request_bytes: int = SINGLE_REQUEST_BYTES,
                 part_bytes: int = PART_BYTES) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.single_request_bytes, self.part_bytes = single_request_bytes, part_bytes
        try:
            with _s3_errors(self.location()):
                self.client = boto3.client("s3", endpoint_url=endpoint,
                                           config=client_config(timeout))
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
        with _spool(in_memory=True) as path:
            produce(path)
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                # The mapping outlives the file's name and descriptor.
                mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            self._upload(key, [memoryview(mapped)], size)
        return size

    def write_checkpoint(self, key: str, planned: checkpoint.Planned) -> None:
        self._upload(key, planned.pieces(), planned.size)

    def _upload(self, key: str, pieces: Sequence[memoryview], size: int) -> None:
        """Make object `key` of the `size` bytes of `pieces`, in order, sent from where they
        are: one request, or parallel parts above `single_request_bytes`."""
        name = self._key(key)
        with _s3_errors(self.location(key)):
            if size <= self.single_request_bytes:
                self.client.put_object(Bucket=self.bucket, Key=name, Body=_Reader(pieces),
                                       ContentLength=size, ChecksumCRC32C=_crc32c(pieces))
            else:
                self._upload_parts(name, pieces, size)

    def _upload_parts(self, name: str, pieces: Sequence[memoryview], size: int) -> None:
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=name, ChecksumAlgorithm="CRC32C")["UploadId"]
        try:
            def part(number: int, start: int) -> dict[str, Any]:
                body = _sliced(pieces, start, min(start + self.part_bytes, size))
                checksum = _crc32c(body)
                reply = self.client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload, PartNumber=number,
                    Body=_Reader(body), ContentLength=sum(len(piece) for piece in body),
                    ChecksumCRC32C=checksum)
                return {"PartNumber": number, "ETag": reply["ETag"], "ChecksumCRC32C": checksum}

            starts = range(0, size, self.part_bytes)
            with ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
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
                                       IfNoneMatch="*", ChecksumCRC32C=_crc32c([data]))
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

    def open_checkpoint(
        self,
        key: str,
        checksums: Mapping[str, int] | None = None,
        select: Callable[[str], bool] | None = None,
    ) -> checkpoint.Checkpoint:
        """Read into memory: a whole snapshot up to `single_request_bytes` in one GET, else
        its header, then its tensors (only those `select` keeps) in parallel ranged GETs."""
        with _s3_errors(self.location(key)):
            size = self.client.head_object(Bucket=self.bucket, Key=self._key(key)
                                           )["ContentLength"]
        if select is None and size <= self.single_request_bytes:
            return checkpoint.loads(self.read(key), checksums)
        return checkpoint.open_ranged(size, lambda spans: self._read_spans(key, spans),
                                      checksums, select, run_bytes=self.part_bytes)

    def _read_spans(self, key: str, spans: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each [start, stop) span of object `key`, read in parallel."""
        if len(spans) == 1:
            return [self.read_range(key, spans[0][0], spans[0][1] - spans[0][0])]
        with ThreadPoolExecutor(PARALLEL_TRANSFERS) as pool:
            return list(pool.map(lambda span: self.read_range(key, span[0], span[1] - span[0]),
                                 spans))

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[str]:
        name = self._key(key)
        with _s3_errors(self.location(key)):
            size = self.client.head_object(Bucket=self.bucket, Key=name)["ContentLength"]
        with _spool() as path:
            with open(path, "wb") as file, _s3_errors(self.location(key)):
                if size <= self.single_request_bytes:
                    body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
                    while piece := body.read(_COPY_BYTES):
                        file.write(piece)
                else:
                    file.truncate(size)
                    spans = [(start, min(start + self.part_bytes, size))
                             for start in range(0, size, self.part_bytes)]
                    for (start, _), data in zip(spans, self._read_spans(key, spans)):
                        os.pwrite(file.fileno(), data, start)
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


class _Reader(io.RawIOBase):
    """A request body read from `pieces` in order, each read a view of them (no copy); it
    rewinds for a retry."""

    def __init__(self, pieces: Sequence[memoryview]) -> None:
        super().__init__()
        self._pieces = [piece.cast("B") for piece in pieces if len(piece)]
        self._index = self._offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> memoryview:  # type: ignore[override]
        if self._index == len(self._pieces):
            return memoryview(b"")
        piece = self._pieces[self._index]
        stop = len(piece) if size < 0 else min(len(piece), self._offset + size)
        view = piece[self._offset:stop]
        self._offset = stop
        if stop == len(piece):
            self._index, self._offset = self._index + 1, 0
        return view

    def readinto(self, buffer: Any) -> int:
        view = self.read(len(buffer))
        buffer[:len(view)] = view
        return len(view)

    def tell(self) -> int:
        return sum(len(piece) for piece in self._pieces[:self._index]) + self._offset

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) not in ((0, io.SEEK_SET), (0, io.SEEK_CUR)):
            raise io.UnsupportedOperation("a request body rewinds only to its start")
        if whence == io.SEEK_SET:
            self._index = self._offset = 0
        return self.tell()


def _sliced(pieces: Sequence[memoryview], start: int, stop: int) -> list[memoryview]:
    """Views of bytes [start, stop) of the concatenation of `pieces`."""
    sliced, position = [], 0
    for piece in pieces:
        piece = piece.cast("B")
        low, high = max(start - position, 0), min(stop - position, len(piece))
        if low < high:
            sliced.append(piece[low:high])
        position += len(piece)
    return sliced


def _crc32c(pieces: Sequence[bytes | memoryview]) -> str:
    """The CRC-32C of the concatenation of `pieces`, as S3 headers give it (base64)."""
    checksum = 0
    for piece in pieces:
        checksum = crc32c.crc32c(piece, checksum)
    return base64.b64encode(checksum.to_bytes(4, "big")).decode()


class _Taken(Exception):
    """A conditional write found its key taken."""


# Files uploaded (imports, optimizer states) are spooled in memory where the system offers
# anonymous memory files: a file written to disk only to be read back at once costs writeback
# (measured: 0.6-1 s for 256 MiB, as much as a third of the PUT). A memory file has no name, so
# it is gone with the process however that ends (one named in /dev/shm outlived a killed server
# and held its memory until reboot). Downloads for a local file stay on disk, where the mapped
# pages can be reclaimed.
_MEMORY_FILES = sys.platform.startswith("linux") and hasattr(os, "memfd_create")


@contextlib.contextmanager
def _spool(in_memory: bool = False) -> Iterator[str]:
    """The path of a temporary file, removed afterwards (a mapping of it stays valid): a memory
    file without a name when `in_memory` and the system has them, else a file in the system's
    temporary folder."""
    if in_memory and _MEMORY_FILES:
        descriptor = os.memfd_create("paramstore-s3-upload", os.MFD_CLOEXEC)
        try:
            yield f"/proc/self/fd/{descriptor}"  # opened by path, it is this very file
        finally:
            os.close(descriptor)
        return
    descriptor, path = tempfile.mkstemp(prefix="paramstore-s3-", suffix=".safetensors")
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
    except botocore.exceptions.NoCredentialsError:
        raise BackendError(f"object storage unreachable for {where}: no credentials; set "
                           "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    except botocore.exceptions.BotoCoreError as error:
        raise BackendError(f"object storage unreachable for {where}: "
                           f"{type(error).__name__}") from None

"""Storage: the one layer that owns every byte the server persists (see `catalog`)."""

import os

from paramstore.server.storage.backend import Backend, BackendError
from paramstore.server.storage.catalog import (
    Catalog,
    Contents,
    PendingSnapshot,
    SnapshotInfo,
    inspect_file,
)
from paramstore.server.storage.local import LocalBackend
from paramstore.server.storage.retention import RetentionPolicy
from paramstore.server.storage.steps import COMMIT_STEPS


def open_backend(
    data_dir: str | os.PathLike[str],
    *,
    s3_endpoint: str | None = None,
    s3_timeout: float = 30.0,
) -> Backend:
    """The backend of `--data-dir`: a local folder, or `s3://BUCKET[/PREFIX]` (endpoint from
    `s3_endpoint`, else `AWS_ENDPOINT_URL`; a request stalled `s3_timeout` seconds fails).
    Raises `ValueError` for a URL scheme no backend serves, `BackendError` when the storage
    cannot be used."""
    text = os.fspath(data_dir)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme == "s3":
        from paramstore.server.storage.s3 import S3Backend  # boto3 only where S3 is used

        return S3Backend.from_url(text, endpoint=s3_endpoint, timeout=s3_timeout)
    if scheme:
        raise ValueError(f"--data-dir {text!r}: the {scheme}:// scheme is not served; use a "
                         "local folder or s3://BUCKET/PREFIX")
    if text.lower().startswith("s3:"):  # a mistyped URL would become a local folder "s3:"
        raise ValueError(f"--data-dir {text!r} is not an s3://BUCKET[/PREFIX] URL")
    return LocalBackend(text)

__all__ = [
    "COMMIT_STEPS", "Backend", "BackendError", "Catalog", "Contents", "LocalBackend",
    "PendingSnapshot", "RetentionPolicy", "SnapshotInfo", "inspect_file", "open_backend",
]

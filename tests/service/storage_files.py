"""What a backend holds for a store, for tests that check or damage it behind the server's back
(the server itself finds its objects only through its commit records)."""

from __future__ import annotations

from pathlib import Path

from paramstore.server.storage import Backend, LocalBackend


def store_folder(data_dir: Path, store: str) -> Path:
    """The folder of the store's live incarnation, on a local backend."""
    (folder,) = [path.parent for path in (data_dir / "stores" / store).glob("*/created")
                 if not (path.parent / "deleted").exists()]
    return folder


def snapshot_path(data_dir: Path, store: str, snapshot_id: str) -> Path:
    """The parameters file of a committed snapshot, on a local backend."""
    (path,) = [path for path in (store_folder(data_dir, store) / "data").glob(
        f"{snapshot_id}.*.safetensors") if not path.name.endswith(".optimizer.safetensors")]
    return path


def optimizer_path(data_dir: Path, store: str, snapshot_id: str) -> Path:
    (path,) = (store_folder(data_dir, store) / "data").glob(
        f"{snapshot_id}.*.optimizer.safetensors")
    return path


def files_of(data_dir: Path, store: str) -> list[Path]:
    """Every file a local backend holds for `store`, in all its incarnations."""
    return sorted(path for path in (data_dir / "stores" / store).rglob("*") if path.is_file())


def partial_writes(backend: Backend, store: str) -> list[str]:
    """What interrupted writes left for `store`: hidden files on local disk, incomplete
    multipart uploads on object storage."""
    if isinstance(backend, LocalBackend):
        return [str(path) for path in files_of(backend.root, store)
                if path.name.startswith(".")]
    uploads = backend.client.list_multipart_uploads(  # type: ignore[attr-defined]
        Bucket=backend.bucket, Prefix=backend._key(f"stores/{store}") + "/")  # type: ignore
    return [upload["Key"] for upload in uploads.get("Uploads", [])]


def assert_no_leftovers(backend: Backend, store: str) -> None:
    """No half-written object, and no data object that no commit record names."""
    assert partial_writes(backend, store) == [], "half-written objects survived a restart"
    keys = backend.list(f"stores/{store}")
    records = {key.rsplit("/", 1)[1].removesuffix(".json") for key in keys
               if "/snapshots/" in key}
    data = {key.rsplit("/", 1)[1].split(".")[0] for key in keys if "/data/" in key}
    assert data <= records, f"uncommitted data survived a restart: {sorted(data - records)}"

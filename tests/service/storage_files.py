"""Where the local backend keeps a store's files, for tests that damage or inspect them (the
server itself finds them only through its commit records)."""

from pathlib import Path


def store_folder(data_dir: Path, store: str) -> Path:
    """The folder of the store's live incarnation."""
    (folder,) = [path.parent for path in (data_dir / "stores" / store).glob("*/created")
                 if not (path.parent / "deleted").exists()]
    return folder


def snapshot_path(data_dir: Path, store: str, snapshot_id: str) -> Path:
    """The parameters file of a committed snapshot."""
    (path,) = [path for path in (store_folder(data_dir, store) / "data").glob(
        f"{snapshot_id}.*.safetensors") if not path.name.endswith(".optimizer.safetensors")]
    return path


def optimizer_path(data_dir: Path, store: str, snapshot_id: str) -> Path:
    (path,) = (store_folder(data_dir, store) / "data").glob(
        f"{snapshot_id}.*.optimizer.safetensors")
    return path


def files_of(data_dir: Path, store: str) -> list[Path]:
    """Every file the backend holds for `store`, in all its incarnations."""
    return sorted(path for path in (data_dir / "stores" / store).rglob("*") if path.is_file())


def assert_no_leftovers(data_dir: Path, store: str) -> None:
    """No half-written file, and no data file that no commit record names."""
    files = files_of(data_dir, store)
    hidden = [path for path in files if path.name.startswith(".")]
    assert hidden == [], f"half-written files survived: {hidden}"
    records = {path.stem for path in files if path.parent.name == "snapshots"}
    data = {path.name.split(".")[0] for path in files if path.parent.name == "data"}
    assert data <= records, f"uncommitted data survived a restart: {sorted(data - records)}"

"""The local-folder backend: one file per object under a root folder."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from paramstore import _files
from paramstore.server.storage.backend import Backend, BackendError, checked_key

# Files being written are hidden (`.NAME.HEX.tmp` as `_files.replace` names them, `.tmpXXXXXX`
# as the safetensors library names its own): a hidden name is never a key, and what a crash
# leaves is removed by `remove_partial_writes`.


class LocalBackend(Backend):
    """Objects as files under `root`. Durability comes from fsync of each file and of each
    folder whose entries change; `create` is a hard link, which fails when the name exists."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # its strerror, "File exists", would not say what is wrong
            raise BackendError(f"cannot use {self.root} as the data folder: it is a file, not "
                               "a folder") from None
        except OSError as error:
            raise BackendError(f"cannot use {self.root} as the data folder: {error.strerror}"
                               ) from None

    def location(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def write(self, key: str, produce: Callable[[str], None]) -> int:
        path = self._path(key)
        self._make_folder(path.parent)
        _files.replace(path, produce)
        return path.stat().st_size

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        self._make_folder(path.parent)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            with open(temporary, "xb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)  # atomic, and refused when `path` exists
            except FileExistsError:
                return False
        finally:
            temporary.unlink(missing_ok=True)
        _files.fsync_folder(path.parent)
        return True

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with open(self._path(key), "rb") as file:
            return os.pread(file.fileno(), length, start)

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[str]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no object {key!r}")
        yield str(path)

    def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix) if prefix else self.root
        keys = []
        for parent, folders, files in os.walk(folder):  # os.walk follows no symbolic link
            folders.sort()
            base = Path(parent).relative_to(self.root)
            keys += [(base / name).as_posix() for name in files
                     if not name.startswith(".") and not os.path.islink(Path(parent, name))]
        return sorted(keys)

    def folders(self, prefix: str) -> list[str]:
        try:
            entries = list(os.scandir(self._path(prefix)))
        except FileNotFoundError:
            return []
        return sorted(entry.name for entry in entries
                      if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."))

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _files.fsync_folder(path.parent)
        self._remove_empty_folders(path.parent)

    def remove_partial_writes(self, prefix: str) -> None:
        folder = self._path(prefix)
        for parent, _, files in os.walk(folder, topdown=False):
            for name in files:
                if name.startswith("."):
                    Path(parent, name).unlink(missing_ok=True)
            self._remove_empty_folders(Path(parent))

    # ---- paths: only this class turns keys into paths ------------------------------------------

    def _path(self, key: str) -> Path:
        path = self.root / checked_key(key)
        # A symbolic link anywhere below the root could lead writes or deletes outside it.
        for parent in [path, *path.parents]:
            if parent == self.root:
                break
            if parent.is_symlink():
                raise BackendError(f"{parent.relative_to(self.root)} in the data folder is a "
                                   "symbolic link, which storage never follows")
        return path

    def _make_folder(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            created.mkdir(exist_ok=True)
            _files.fsync_folder(created.parent)

    def _remove_empty_folders(self, folder: Path) -> None:
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty, or gone
            _files.fsync_folder(folder.parent)
            folder = folder.parent

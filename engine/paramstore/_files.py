"""Files replaced atomically: the one place that writes a temporary name, fsyncs and renames."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable


def replace(path: str | os.PathLike[str], produce: Callable[[str], None]) -> None:
    """Make `path` hold what `produce(temporary_path)` writes, atomically and durably.

    `produce` writes a hidden temporary file beside `path` (same file system, so the rename is
    atomic); it is fsynced, renamed over `path`, and the folder fsynced: a crash leaves the old
    file or the new one, never half of one. On any error the temporary file is removed.
    Raises `IsADirectoryError` when `path` is a folder, `FileNotFoundError` when its folder
    does not exist.
    """
    path = os.fspath(path)
    # Said here, these mistakes name the user's path, not the temporary file's.
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder: name the file to write in it, such as "
                                f"{os.path.join(path, 'params.safetensors')}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: there is no folder {folder}")
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    try:
        produce(temporary)
        fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_folder(folder)


def fsync_file(path: str | os.PathLike[str]) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make the folder's entries (a rename, a new or removed file) durable."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # some platforms cannot open a folder; there the rename is as durable as it gets
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

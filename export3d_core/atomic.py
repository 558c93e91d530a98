"""Atomic file writes: write beside the target, then rename over it.

A reader never sees half a file, and a failed or cancelled write leaves the target as it was and
no temporary file behind. The result gets ordinary permissions (0666 minus the umask), not the
0600 that `tempfile.mkstemp` gives.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from export3d_core.errors import Export3DError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yields a temporary path in the target's folder; renamed over `target` if the block succeeds.

    `suffix` defaults to the target's own, so writers that pick a format by extension still work.
    An `OSError` about the temporary file (a full disk, a read-only folder) is raised naming the
    target instead: the temporary name means nothing to the user and is gone by then.
    """
    target = Path(target)
    _make_folder(target.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                   suffix=target.suffix if suffix is None else suffix)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.filename in (None, tmp) or exc.filename2 == tmp or exc.filename == str(target.parent):
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _make_folder(folder: Path) -> None:
    """mkdir -p, but a path through a regular file says so (mkdir's own error says 'File exists')."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
            break
    folder.mkdir(parents=True, exist_ok=True)


def check_writable(target: str | os.PathLike) -> None:
    """Raise the OSError a write of `target` would meet (a read-only folder, a path through a
    file, a full inode table), before any work is done: the nearest existing folder on the way
    to it must take a new file. Missing folders below it are not created."""
    folder = Path(target).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".export3d-write-test.")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(folder)) from None
    os.close(fd)
    os.unlink(probe)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | os.PathLike, data: Any) -> Path:
    """`data` as JSON (indent 1: readable, small), written atomically."""
    return write_text_atomic(target, json.dumps(data, indent=1))


def resolve_output(path: Path) -> Path:
    """`path`, or the file a symlink there points to; refused when it is a folder or a symlink
    that leads nowhere (a loop, a missing target), which a rename would silently replace."""
    path = Path(path)
    if path.is_symlink():
        try:
            path = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise Export3DError(f"{path} is a symbolic link that leads nowhere (a loop or a missing "
                                "target); remove it or choose another name") from None
    if path.is_dir():
        raise Export3DError(f"{path} is a folder; choose a file name")
    return path

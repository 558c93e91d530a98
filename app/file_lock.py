"""An inter-process lock on a shared file, held on a side file `<name>.lock` beside it.

The lock lives on a separate file because the shared file itself is replaced by an atomic rename
on every save: a lock on the old inode would not exclude a writer that opened the new one. The OS
drops the lock when its holder dies, so a crashed editor never leaves a stale lock behind.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from export3d_core import Export3DError

LOCK_TIMEOUT_S = 5.0  # another editor holds the lock only for one read-merge-write
POLL_S = 0.05

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class LockUnavailable(Export3DError):
    """The lock could not be had: another editor holds it, or its folder cannot be written."""


def lock_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".lock")


def try_acquire(path: str | os.PathLike) -> int | None:
    """The open descriptor holding the lock on `path`, or None when another process holds it.

    LockUnavailable when the lock file cannot be created (a read-only folder).
    """
    target = lock_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise LockUnavailable(f"cannot lock {Path(path).name}: {exc.strerror or exc}") from None
    if _try_lock(fd):
        return fd
    os.close(fd)
    return None


def release(fd: int) -> None:
    try:
        _unlock(fd)
    finally:
        os.close(fd)


@contextmanager
def locked(path: str | os.PathLike, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock on `path` for the block; waits up to `timeout_s`, then refuses in one line."""
    deadline = time.monotonic() + timeout_s
    while (fd := try_acquire(path)) is None:
        if time.monotonic() >= deadline:
            raise LockUnavailable(f"{Path(path).name} is being written by another Export3D Studio; "
                                "nothing was saved, try again")
        time.sleep(POLL_S)
    try:
        yield
    finally:
        release(fd)

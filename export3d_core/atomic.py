"""Atomic file writes: write beside the target, then rename over it.

A reader never sees half a file, and a failed or cancelled write leaves the target as it was and
no temporary file behind. The result gets ordinary permissions (0666 minus the umask), not the
0600 that `tempfile.mkstemp` gives.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yields a temporary path in the target's folder; renamed over `target` if the block succeeds.

    `suffix` defaults to the target's own, so writers that pick a format by extension still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                               suffix=target.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | os.PathLike, data: Any) -> Path:
    """`data` as JSON (indent 1: readable, small), written atomically."""
    return write_text_atomic(target, json.dumps(data, indent=1))

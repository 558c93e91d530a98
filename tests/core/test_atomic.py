"""Atomic writes: all or nothing, no temp file left, ordinary permissions."""
import os
import stat

import pytest

from export3d_core.atomic import atomic_path, write_text_atomic


def test_success_replaces_target_with_normal_permissions(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    mode = stat.S_IMODE(os.stat(target).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("precious")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_temp_path_keeps_the_suffix(tmp_path):
    with atomic_path(tmp_path / "x.gif") as tmp:
        assert tmp.endswith(".gif")
        open(tmp, "wb").close()

"""The preset library: separate from projects, merged under a lock, broken files kept aside."""
from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QSettings

from export3d_core.errors import Export3DError

from app import file_lock
from app.main_window import MainWindow
from app.presets import LIBRARY_FORMAT, Preset, PresetLibrary, load_library, save_library
from app.state import MAX_ABS_LAMBDA

N = 10  # the tiny model's basis size


def _preset(name: str, value: float) -> Preset:
    return Preset(name, (value,) + (0.0,) * (N - 1))


def _window(qtbot, settings_file) -> MainWindow:
    win = MainWindow(QSettings(str(settings_file), QSettings.Format.IniFormat), explore_on_load=False)
    qtbot.addWidget(win)
    return win


def test_opening_a_project_keeps_the_library_and_import_is_explicit(qtbot, window, tmp_path):
    c = window.controller
    for name, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        c.apply_lam([value] + [0.0] * (N - 1))
        c.save_preset(name)
    project_file = tmp_path / "other.e3d.json"
    assert window.save_project(project_file)
    data = json.loads(project_file.read_text())
    data["presets"] = [_preset("project smile", 6.0).to_dict()]
    project_file.write_text(json.dumps(data))

    assert window.open_project(project_file)
    assert [p.name for p in load_library(window.presets_file)] == ["a", "b", "c"]
    assert [p.name for p in c.presets] == ["a", "b", "c"]
    assert [p.name for p in c.project_presets] == ["project smile"]
    panel = window.presets_panel
    assert [panel.list.item(i).text() for i in range(panel.list.count())] == ["a", "b", "c",
                                                                             "project smile · project"]

    window.import_presets_action.trigger()
    assert [p.name for p in load_library(window.presets_file)] == ["a", "b", "c", "project smile"]
    window.import_presets_action.trigger()  # importing twice does not double a preset
    assert len(load_library(window.presets_file)) == 4


@pytest.mark.parametrize("content", ["[]", "null", "5", '{"format": "export3d-studio-presets", "presets": 3}',
                                     '{"format": "export3d-studio-presets", "presets": [{"name": "x", '
                                     '"lambda": [NaN]}]}', '{"format": "export3d-stu'])
def test_a_broken_library_is_kept_aside_and_the_editor_starts_empty(qtbot, tmp_path, content):
    presets_file = tmp_path / "presets.json"
    presets_file.write_text(content)
    win = _window(qtbot, tmp_path / "settings.ini")
    try:
        assert win.controller.presets == []
        assert len(win.errors) == 1 and "\n" not in win.errors[0] and "kept it as presets.json.broken-" in \
            win.errors[0]
        aside = list(tmp_path.glob("presets.json.broken-*"))
        assert len(aside) == 1 and aside[0].read_text() == content and not presets_file.exists()

        win.controller.save_preset("fresh")  # the next save writes a new library, the broken one stays aside
        assert [p.name for p in load_library(presets_file)] == ["fresh"]
        assert aside[0].read_text() == content
    finally:
        win.controller.shutdown()


def test_two_libraries_on_one_file_keep_each_others_presets(tmp_path):
    path = tmp_path / "presets.json"
    first, second = PresetLibrary(path), PresetLibrary(path)
    assert first.load() is None and second.load() is None
    first.add(_preset("from first", 1.0))
    second.add(_preset("from second", 2.0))  # read the file before the first one saved
    assert [p.name for p in load_library(path)] == ["from first", "from second"]
    first.remove(_preset("from first", 1.0))
    assert [p.name for p in load_library(path)] == ["from second"]
    assert [p.name for p in first.presets] == ["from second"]


def test_a_library_save_waits_for_the_lock_and_refuses_when_it_stays_held(tmp_path):
    path = tmp_path / "presets.json"
    save_library(path, [_preset("kept", 1.0)])
    library = PresetLibrary(path, lock_timeout_s=0.2)
    assert library.load() is None
    held = file_lock.try_acquire(path)  # another editor in the middle of its save
    assert held is not None
    try:
        with pytest.raises(Export3DError, match="another Export3D Studio"):
            library.add(_preset("new", 2.0))
        assert [p.name for p in load_library(path)] == ["kept"]
    finally:
        file_lock.release(held)
    library.add(_preset("new", 2.0))
    assert [p.name for p in load_library(path)] == ["kept", "new"]


def test_a_library_broken_on_disk_during_a_save_is_kept_aside_not_overwritten(tmp_path):
    path = tmp_path / "presets.json"
    save_library(path, [_preset("mine", 1.0)])
    library = PresetLibrary(path)
    library.load()
    path.write_text('{"format": "' + LIBRARY_FORMAT + '", "presets": [')  # truncated by someone else
    notice = library.add(_preset("new", 2.0))
    assert notice and "kept it as presets.json.broken-" in notice
    assert [p.name for p in load_library(path)] == ["mine", "new"]
    assert list(tmp_path.glob("presets.json.broken-*"))[0].read_text().endswith('"presets": [')


def test_a_preset_whose_names_do_not_match_its_lambda_is_refused_in_one_line(qtbot, window, tmp_path):
    bad = {"name": "odd", "lambda": [1.0] * N, "names": ["a", "b"]}
    with pytest.raises(ValueError, match="2 names for 10"):
        Preset.from_dict(bad)
    window.controller.apply_preset(Preset("odd", (1.0,) * N, ("a", "b")))  # made in code, never a traceback
    assert "has 10 coefficients and 2 names" in window.errors[-1]
    assert window.state.lam == (0.0,) * N


@pytest.mark.parametrize("value", [1e20, 1e308, -2 * MAX_ABS_LAMBDA])
def test_a_preset_beyond_the_lambda_limit_is_refused(value):
    with pytest.raises(ValueError, match="outside"):
        Preset.from_dict({"name": "huge", "lambda": [value] + [0.0] * (N - 1)})

"""Menus built from a table: entries run their callbacks, groups are exclusive, keys and shortcuts unique."""
from __future__ import annotations

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu

from app.menus import SEPARATOR, Entry, Submenu, build_menu_bar


def _all_actions(menu: QMenu) -> list[QAction]:
    found = []
    for action in menu.actions():
        found.append(action)
        if action.menu() is not None:
            found += _all_actions(action.menu())
    return found


def test_a_table_becomes_menus_whose_entries_run_their_callbacks(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    ran: list[str] = []
    ready = QAction("Ready-made", window)
    table = {
        "&File": [Entry("open", "Open…", lambda: ran.append("open"), "Ctrl+O", "Open a file"), SEPARATOR,
                  Submenu("recent", "Recent"), ready, Entry("off", "Later", lambda: None, enabled=False)],
        "&View": [Entry(f"mode:{m}", m, lambda m=m: ran.append(m), group="mode", checked=m == "a") for m in "ab"],
    }
    built = build_menu_bar(window.menuBar(), window, table)
    assert [a.text() for a in window.menuBar().actions()] == ["&File", "&View"]
    file_menu = window.menuBar().actions()[0].menu()
    assert [a.text() for a in file_menu.actions()] == ["Open…", "", "Recent", "Ready-made", "Later"]
    assert isinstance(built["recent"], QMenu) and not built["off"].isEnabled()
    assert built["open"].shortcut().toString() == "Ctrl+O" and built["open"].statusTip() == "Open a file"
    built["open"].trigger()
    built["mode:b"].trigger()
    assert ran == ["open", "b"]
    assert built["mode:b"].isChecked() and not built["mode:a"].isChecked()  # one group: exclusive


def test_two_entries_with_one_key_are_refused(qtbot):
    window = QMainWindow()
    qtbot.addWidget(window)
    with pytest.raises(ValueError, match="two menu entries have the key 'same'"):
        build_menu_bar(window.menuBar(), window, {"&A": [Entry("same", "One", print)],
                                                  "&B": [Entry("same", "Two", print)]})


def test_the_editors_menu_shortcuts_are_unique_and_the_view_menu_follows_the_mode(window):
    # An entry added with a shortcut that is already taken would silently never fire.
    shortcuts = [s.toString() for top in window.menuBar().actions() for a in _all_actions(top.menu())
                 for s in a.shortcuts()]
    assert shortcuts and len(shortcuts) == len(set(shortcuts)), sorted(shortcuts)
    view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    window.state.set_mode("depth")
    assert [a.text() for a in view.actions() if a.isChecked() and a.actionGroup() is not None][0] == "Depth"
    docks = {a.text() for a in view.actions() if a.isCheckable() and a.actionGroup() is None}
    assert {"View", "Expression λ", "Basis explorer", "Presets"} <= docks

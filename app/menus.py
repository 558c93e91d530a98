"""Menus built from a table: the window says what each entry is and runs; this module makes the Qt menus.

The table maps a menu title to its items, top to bottom:

- `Entry`: an action (text, callback, shortcut, tip); entries sharing a `group` are exclusive
  check boxes (the render modes, the themes);
- `Submenu`: an empty sub-menu the window fills later (recent portraits);
- a ready-made `QAction` (undo and redo from the undo stack, a dock's show/hide toggle);
- `SEPARATOR`.

`build_menu_bar` returns the actions and sub-menus by key, so the window keeps the ones it updates
later (enable "Match expression…" when the model has an estimator) without this module knowing
the window. Adding an entry is one `Entry(...)` line in the window's table (`MainWindow._menu_table`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QWidget


@dataclass(frozen=True)
class Entry:
    key: str  # how the window finds the action afterwards; unique in the whole menu bar
    text: str
    run: Callable[[], object]
    shortcut: str | None = None
    tip: str = ""  # status-bar and tool tip
    group: str | None = None  # entries of one group are exclusive check boxes
    checked: bool = False  # with a group: the entry checked at the start
    enabled: bool = True


@dataclass(frozen=True)
class Submenu:
    key: str
    text: str


SEPARATOR = None
Item = Entry | Submenu | QAction | None


def build_menu_bar(bar: QMenuBar, parent: QWidget, table: dict[str, list[Item]]) -> dict[str, QAction | QMenu]:
    """Fill `bar` with `table`'s menus (in order); the entries' actions and the sub-menus by key."""
    built: dict[str, QAction | QMenu] = {}
    groups: dict[str, QActionGroup] = {}
    for title, items in table.items():
        menu = bar.addMenu(title)
        for item in items:
            if item is SEPARATOR:
                menu.addSeparator()
            elif isinstance(item, QAction):
                menu.addAction(item)
            elif isinstance(item, Submenu):
                built[item.key] = menu.addMenu(item.text)
            else:
                if item.key in built:
                    raise ValueError(f"two menu entries have the key {item.key!r}")
                built[item.key] = _action(menu, parent, item, groups)
    return built


def _action(menu: QMenu, parent: QWidget, entry: Entry, groups: dict[str, QActionGroup]) -> QAction:
    action = QAction(entry.text, parent)
    if entry.shortcut:
        action.setShortcut(QKeySequence(entry.shortcut))
    if entry.tip:
        action.setStatusTip(entry.tip)
        action.setToolTip(entry.tip)
    if entry.group is not None:
        action.setCheckable(True)
        action.setChecked(entry.checked)
        groups.setdefault(entry.group, QActionGroup(parent)).addAction(action)
    action.setEnabled(entry.enabled)
    run = entry.run
    action.triggered.connect(lambda _=False: run())  # `triggered` passes `checked`; callbacks take nothing
    menu.addAction(action)
    return action

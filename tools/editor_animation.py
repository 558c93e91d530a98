"""Make an animation the way an artist does in the editor (offscreen): open a demo portrait, pose it
with the sliders and the camera, add a key at each playhead position on the Timeline, and export the
keys with File ▸ Export animation…'s job. Writes the GIF the README shows.

    QT_QPA_PLATFORM=offscreen python tools/editor_animation.py OUT.gif
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402

from app.main_window import MainWindow, application  # noqa: E402

PORTRAIT = Path(__file__).resolve().parents[1] / "resources" / "portraits" / "synthetic_02.png"
# (time s, {slider: λ}, yaw°): the poses keyed on the Timeline, as an artist would set them
POSES = [(0.0, {}, -12.0), (1.0, {0: 14.0}, 0.0), (2.0, {4: 14.0}, 12.0), (3.0, {}, 0.0)]


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main(out: Path) -> int:
    application()
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "editor.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, explore_on_load=False)
    window.startup(PORTRAIT, None, recover=False)
    window.controller.service.wait_until_idle()
    timeline, state = window.timeline, window.state
    timeline.set_timing(12.0, 3.0)
    for t, lam, yaw in POSES:
        timeline.scrub(t)
        for index in range(state.n_basis):
            state.set_coefficient(index, lam.get(index, 0.0))
        state.set_camera(state.camera.replace(yaw_deg=yaw))
        timeline.add_key()
    job = window.run_export(window.controller.export_spec("animation", out, overwrite=True,
                                                          animation=state.animation))
    while job is not None and not job.isFinished():
        wait(100)
    wait(50)
    print(window.statusBar().currentMessage() or "no message", file=sys.stderr)
    window.controller.mark_saved()
    window.close()
    return 0 if out.is_file() else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "editor_animation.gif")))

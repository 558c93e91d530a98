"""The editor's fit, end to end, on the demo model: the out-of-domain measure and banner for a few
portraits, then "Fit to this portrait" on the last one (time until the fitted model renders, file size).

    QT_QPA_PLATFORM=offscreen python tools/editor_fit.py [PORTRAIT ...]

Runs a real (offscreen) window with a throw-away settings folder; prints one line per portrait and
one for the fit. Times are wall clock: on a shared machine they include others' work.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_PORTRAITS = ["resources/portraits/synthetic_01.png", "resources/portraits/synthetic_05.png",
                     "resources/portraits/astronaut.png"]


def main(paths: list[str]) -> int:
    from PySide6.QtCore import QSettings

    from app.main_window import MainWindow, application
    from export3d_core.checkpoint import DEMO_CHECKPOINT

    app = application()
    folder = Path(tempfile.mkdtemp(prefix="editor_fit_"))
    window = MainWindow(QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat), explore_on_load=False)
    window.show()
    controller = window.controller
    measured: list[tuple[bool, float, float]] = []
    controller.domain_checked.connect(lambda outside, psnr: measured.append((outside, psnr, time.perf_counter())))
    if not controller.load_model(DEMO_CHECKPOINT):
        print(f"no demo model at {DEMO_CHECKPOINT}", file=sys.stderr)
        return 1
    for path in map(Path, paths):
        start, count = time.perf_counter(), len(measured)
        if not controller.open_portrait(path):
            print(f"{path.name}: could not open ({window.errors[-1] if window.errors else '?'})")
            continue
        while len(measured) == count:
            app.processEvents()
            time.sleep(0.01)
        outside, psnr, done = measured[-1]
        print(f"{path.name}: reconstruction {psnr:.1f} dB, out of domain {outside}, "
              f"banner shown {window.domain_banner.isVisible()}, open + measure {done - start:.1f} s")
    start = time.perf_counter()
    window.fit_portrait()
    while controller.fit is None and controller.jobs:
        app.processEvents()
        time.sleep(0.01)
    if controller.fit is None:
        print(f"the fit failed: {window.errors[-1] if window.errors else '?'}")
        return 1
    print(f"fit of {paths[-1]}: {controller.fit_settings.steps} steps, fitted model rendering after "
          f"{time.perf_counter() - start:.1f} s; fit file {controller.fit.path.stat().st_size / 1024:.0f} KB; "
          f"banner shown {window.domain_banner.isVisible()}")
    controller.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_PORTRAITS))

"""Export3D Studio: `python main.py [PORTRAIT] [--checkpoint C] [--fit] [--screenshot PNG] [--theme dark|light]`.

Thin entry point: arguments -> QApplication -> MainWindow. `--screenshot` opens the editor, waits
for the first full-quality frame, saves a PNG of the whole window and exits 0 (smoke tests, README).
`--fit` fits the model to the portrait once it is open ("Fit to this portrait"); with `--screenshot`,
the picture is taken after the fit.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SCREENSHOT_TIMEOUT_MS = 120_000  # give up (exit 1) if no full frame arrives
SCREENSHOT_SETTLE_MS = 300  # let the window paint the frame before grabbing it
SCREENSHOT_IDLE_MS = 30_000  # after the first full frame, wait at most this for background cells
POLL_MS = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", description="Export3D Studio: the portrait editor")
    parser.add_argument("portrait", nargs="?", type=Path, help="portrait photo (default: a shipped demo portrait)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped demo model)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the window after the first full frame, exit")
    parser.add_argument("--fit", action="store_true", help="fit the model to the portrait once it is open")
    parser.add_argument("--theme", choices=("dark", "light"), default=None, help="colour theme (default: dark)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from PySide6.QtCore import QSettings, QTimer

    from app.main_window import MainWindow, application
    from app.theme import apply_theme

    app = application()
    settings = QSettings("Export3D", "Export3D Studio")
    # The theme goes first: pyqtgraph takes its colours when the chart is created.
    theme = apply_theme(app, args.theme or str(settings.value("theme", "dark")))
    window = MainWindow(settings=settings, theme=theme)
    window.show()
    result = {"code": 0}
    if args.screenshot is not None:
        def grab() -> None:
            window.grab().save(str(args.screenshot))
            print(f"saved {args.screenshot}")
            window.controller.mark_saved()  # a screenshot run (a --fit included) quits without asking to save
            app.quit()

        def grab_when_idle(waited: int = 0) -> None:
            # Background work (explorer cells, thumbnails) fills in after the first full frame;
            # give it a bounded moment so the picture shows a working window, then grab.
            if window.controller.service.is_idle() or waited >= SCREENSHOT_IDLE_MS:
                QTimer.singleShot(SCREENSHOT_SETTLE_MS, grab)
            else:
                QTimer.singleShot(POLL_MS, lambda: grab_when_idle(waited + POLL_MS))

        def on_frame(frame) -> None:
            fitted = not args.fit or window.controller.fit is not None
            if frame.request.quality == "full" and fitted and not result.get("armed"):
                result["armed"] = True
                grab_when_idle()

        def give_up() -> None:
            if not result.get("armed"):
                print("no full-quality frame arrived in time", file=sys.stderr)
                result["code"] = 1
                app.quit()

        window.controller.frame_shown.connect(on_frame)
        QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, give_up)
    QTimer.singleShot(0, lambda: window.startup(args.portrait, args.checkpoint, recover=args.screenshot is None))
    if args.fit:
        QTimer.singleShot(0, window.fit_portrait)
    code = app.exec()
    window.controller.shutdown()
    return result["code"] or code


if __name__ == "__main__":
    sys.exit(main())

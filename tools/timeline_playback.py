"""Measure what the editor's timeline shows while it plays: frames on screen per second at preview quality.

    QT_QPA_PLATFORM=offscreen python tools/timeline_playback.py [PROJECT] [--seconds S] [--fps F ...]

A real `MainWindow` (offscreen) with the demo model opens PROJECT (default: the shipped example
`resources/examples/open_wink_turn.e3d.json`), then plays its keys in a loop for S seconds at each
timeline fps asked for, counting the frames the viewport received (the render service drops a
pose when a newer one is waiting, so the count is what an artist sees) and their render times.
`export3d animate PROJECT --bench` measures the same preview frames without the editor around them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "resources" / "examples" / "open_wink_turn.e3d.json"


def measure(window, fps: float, seconds: float) -> dict[str, float]:
    from PySide6.QtCore import QCoreApplication

    timeline, state = window.timeline, window.state
    state.set_animation(replace(state.animation, fps=fps))  # not an edit: only the playing rate
    timeline.loop = True
    timeline.scrub(0.0)
    window.controller.service.wait_until_idle(60)
    shown: list[float] = []

    def on_frame(result) -> None:
        if timeline.playing and result.request.quality == "preview":
            shown.append(result.seconds)

    window.controller.frame_shown.connect(on_frame)
    start = time.perf_counter()
    timeline.play()
    while time.perf_counter() - start < seconds:
        QCoreApplication.processEvents()
        time.sleep(0.001)
    timeline.stop()
    elapsed = time.perf_counter() - start
    window.controller.frame_shown.disconnect(on_frame)
    return {"timeline_fps": fps, "shown_per_s": len(shown) / elapsed, "poses_per_s": timeline.frames_played / elapsed,
            "median_render_ms": 1000 * statistics.median(shown) if shown else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", nargs="?", type=Path, default=EXAMPLE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, nargs="+", default=[12.0, 30.0])
    args = parser.parse_args(argv)

    from PySide6.QtCore import QCoreApplication, QSettings

    from app.main_window import MainWindow, application

    application()
    with tempfile.TemporaryDirectory() as folder:
        settings = QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings=settings, explore_on_load=False)
        window.show()
        if not window.controller.load_model(None) or not window.open_project(args.project):
            print("; ".join(window.errors), file=sys.stderr)
            return 1
        if window.state.animation is None:
            print(f"{args.project.name} has no keys", file=sys.stderr)
            return 1
        print(f"{window.controller.loaded.info.splitlines()[0]} · {args.project.name} · "
              f"{len(window.state.animation.keys)} keys")
        for fps in args.fps:
            row = measure(window, fps, args.seconds)
            print(f"timeline {row['timeline_fps']:g} fps: {row['shown_per_s']:.1f} preview frames shown/s "
                  f"({row['poses_per_s']:.1f} poses set/s), median preview render {row['median_render_ms']:.0f} ms")
        window.controller.shutdown()
        window.deleteLater()  # deleted by Qt while the application lives, not by Python's exit
        QCoreApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())

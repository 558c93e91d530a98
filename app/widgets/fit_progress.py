"""The fit's progress dialog: steps, time left, Cancel; the fit's previews go to the viewport."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QProgressDialog, QWidget


def show_fit_progress(parent: QWidget, job, viewport) -> QProgressDialog:
    """A window-modal progress dialog for a running `FitJob`; Cancel stops it (nothing is written)."""
    total = job.request.settings.steps
    dialog = QProgressDialog("Fitting the model to this portrait…", "Cancel", 0, total, parent)
    dialog.setWindowTitle("Fit to this portrait")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.canceled.connect(job.cancel)

    def progress(step: int, steps: int, eta_s: float) -> None:
        # the steps count the fit's, then (when the photo is large enough) the 2× upscaler's
        stage = "Fitting the model to this portrait" if step <= total else "Learning the 2× upscaler from the photo"
        dialog.setMaximum(steps)
        dialog.setLabelText(f"{stage}: step {step} of {steps}, about {eta_s:.0f} s left")
        dialog.setValue(min(step, steps))

    job.progress.connect(progress)
    job.preview.connect(lambda image, step, steps: viewport.set_image(image, f"fit preview · step {step}/{steps}"))
    job.finished.connect(dialog.reset)
    job.finished.connect(dialog.deleteLater)
    dialog.show()
    return dialog

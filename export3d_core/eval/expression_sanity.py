"""Real-photo sanity table of the expression reader: β read from real faces through the editor's path.

No real photo comes with a true β, so this is a sanity check, not a measurement: the astronaut
(scikit-image) smiles, and a few of scikit-image's LFW faces are neutral, smiling or open-mouthed
by eye. Each photo is cropped as the editor crops a portrait (intake: dlib, FFHQ framing), and
the expression reader reads dlib's landmarks in the aligned face box (as `expression_estimate` does).

The LFW faces are 25x25 crops: they are enlarged (bicubic, 8x) and padded before detection, and
their eyes are a few pixels, so their blinks are the least reliable column.

    python -m export3d_core.eval.expression_sanity [READER.safetensors] [--size 128]
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np

from export3d_core.data.head_landmarks import BETA_NAMES

# lfw_subset indices, chosen by eye (the first 100 entries are faces).
LFW_GROUPS = {"neutral": (3, 6, 20, 40, 60, 62, 72), "smile": (37, 52, 91, 93), "open": (29, 51)}
COLUMNS = ("jaw_open", "smile", "pucker", "blink_left", "blink_right", "brow_raise_left", "brow_raise_right",
           "brow_furrow", "mouth_left_right")


def lfw_face(index: int) -> np.ndarray:
    """One 25x25 LFW face of scikit-image, enlarged to 200 px and padded so dlib's HOG finds it."""
    import cv2
    from skimage import data

    grey = cv2.resize((data.lfw_subset()[index] * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
    return np.dstack([cv2.copyMakeBorder(grey, 60, 60, 60, 60, cv2.BORDER_REPLICATE)] * 3)


def photos() -> Iterator[tuple[str, str, np.ndarray]]:
    """(name, group, RGB image) of every photo in the table."""
    from skimage import data

    yield "astronaut", "astronaut", data.astronaut()
    yield "astronaut mirrored", "astronaut", np.ascontiguousarray(data.astronaut()[:, ::-1])
    for group, indices in LFW_GROUPS.items():
        for index in indices:
            yield f"lfw {index} {group}", group, lfw_face(index)


def sanity_rows(reader_path, size: int) -> list[tuple[str, str, np.ndarray]]:
    """(name, group, β) per photo, read through the editor's crop and the aligned face box."""
    from export3d_core.data.intake import crop_portrait
    from export3d_core.data.landmarks_dlib import get_dlib_landmarker
    from export3d_core.data.expression_reader_data import aligned_landmark_beta
    from export3d_core.data.expression_reader import load_reader

    reader, landmarker = load_reader(reader_path), get_dlib_landmarker()
    rows = []
    for name, group, image in photos():
        aligned = crop_portrait(image, size=size).image
        rows.append((name, group, aligned_landmark_beta(reader, landmarker, aligned)))
    return rows


def format_table(rows: list[tuple[str, str, np.ndarray]]) -> str:
    index = [BETA_NAMES.index(c) for c in COLUMNS]
    short = [c.replace("brow_raise_", "brow_").replace("mouth_left_right", "mouth_lr") for c in COLUMNS]
    lines = [f"{'photo':22s}" + "".join(f"{c:>12s}" for c in short)]
    lines += [f"{name:22s}" + "".join(f"{beta[i]:12.2f}" for i in index) for name, _, beta in rows]
    for group in LFW_GROUPS:
        mean = np.mean([beta for _, g, beta in rows if g == group], axis=0)
        lines.append(f"{'mean lfw ' + group:22s}" + "".join(f"{mean[i]:12.2f}" for i in index))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from export3d_core.data.expression_reader import DEFAULT_READER

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reader", nargs="?", default=str(DEFAULT_READER), help="expression reader file")
    parser.add_argument("--size", type=int, default=128, help="side of the aligned crops (the demo model's: 128)")
    args = parser.parse_args(argv)
    print(format_table(sanity_rows(args.reader, args.size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

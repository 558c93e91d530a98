"""Offline face and eye detection with the cascades that ship inside OpenCV and scikit-image.

Used when face-alignment's weights are absent. Two independent detectors vote: OpenCV's Haar
frontal-face cascade and scikit-image's bundled LBP cascade (a second opinion). A Haar face is
kept; an LBP-only face is kept only when OpenCV's eye cascade finds an eye in it, which removes
most of the LBP cascade's false positives on texture. Eyes come from the Haar eye cascade inside
the upper part of each face box. No landmarks: the crop then frames from the box and the eyes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

WORK_SIDE = 800  # detection runs on a copy downscaled to this longest side (speed; faces stay big)
MIN_FACE_FRACTION = 0.06  # smallest face side, as a fraction of the image's shorter side
SCALE_STEP = 1.1  # Haar pyramid step
MIN_NEIGHBOURS = 5  # Haar: overlapping hits needed for a face (OpenCV's recommended value)
LBP_SCALE_STEP = 1.2  # scikit-image LBP cascade pyramid step
MERGE_IOU = 0.3  # boxes overlapping more than this are the same face
EYE_REGION = (0.15, 0.6)  # eyes are searched between these fractions of the box height
EYE_SIZE = (0.1, 0.35)  # eye box side as fractions of the face width
EYE_PAIR_DISTANCE = (0.25, 0.65)  # eye-centre distance as fractions of the face width
EYE_PAIR_MAX_TILT = 0.2  # |dy| / face width for a plausible pair
# Voting weights: Haar and LBP agree -> high confidence; eyes found adds a little more.
SCORE_HAAR, SCORE_LBP, SCORE_EYES = 0.5, 0.3, 0.2


@dataclass
class CvFace:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in pixels of the input image
    score: float  # vote in [0, 1]
    eyes: np.ndarray | None  # (2, 2) centres: image-left eye, image-right eye


@functools.lru_cache(maxsize=None)
def _haar(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV cascade {name} is missing from cv2.data")
    return cascade


@functools.lru_cache(maxsize=1)
def _lbp():  # -> skimage.feature.Cascade
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


def _haar_faces(gray: np.ndarray, min_side: int) -> list[np.ndarray]:
    found = _haar("haarcascade_frontalface_default.xml").detectMultiScale(
        gray, scaleFactor=SCALE_STEP, minNeighbors=MIN_NEIGHBOURS, minSize=(min_side, min_side))
    return [np.array([x, y, x + w, y + h], dtype=np.float64) for x, y, w, h in np.reshape(found, (-1, 4))]


def _lbp_faces(gray: np.ndarray, min_side: int) -> list[np.ndarray]:
    max_side = min(gray.shape)
    found = _lbp().detect_multi_scale(img=gray, scale_factor=LBP_SCALE_STEP, step_ratio=1,
                                      min_size=(min_side, min_side), max_size=(max_side, max_side))
    return [np.array([d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]], dtype=np.float64)
            for d in found]


def _merge(boxes: list[np.ndarray]) -> list[np.ndarray]:
    """Greedy merge of overlapping boxes of one detector (the LBP cascade reports duplicates)."""
    merged: list[list[np.ndarray]] = []
    for box in sorted(boxes, key=lambda b: -(b[2] - b[0])):
        for group in merged:
            if _iou(group[0], box) > MERGE_IOU:
                group.append(box)
                break
        else:
            merged.append([box])
    return [np.mean(group, axis=0) for group in merged]


def find_eyes(gray: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """(2, 2) eye centres (image-left, image-right) inside a face box, or None."""
    x0, y0, x1, y1 = box
    width = x1 - x0
    top, bottom = int(y0 + EYE_REGION[0] * width), int(y0 + EYE_REGION[1] * width)
    left, right = int(max(x0, 0)), int(min(x1, gray.shape[1]))
    top, bottom = max(top, 0), min(bottom, gray.shape[0])
    roi = gray[top:bottom, left:right]
    if roi.size == 0:
        return None
    small, large = int(EYE_SIZE[0] * width), int(EYE_SIZE[1] * width)
    found = _haar("haarcascade_eye.xml").detectMultiScale(
        roi, scaleFactor=SCALE_STEP, minNeighbors=3, minSize=(small, small), maxSize=(large, large))
    centres = [np.array([left + x + w / 2, top + y + h / 2]) for x, y, w, h in np.reshape(found, (-1, 4))]
    best, best_cost = None, np.inf
    mid = x0 + width / 2
    for a in centres:
        for b in centres:
            if not (a[0] < mid < b[0]):
                continue
            distance, tilt = (b[0] - a[0]) / width, abs(b[1] - a[1]) / width
            if not (EYE_PAIR_DISTANCE[0] <= distance <= EYE_PAIR_DISTANCE[1]) or tilt > EYE_PAIR_MAX_TILT:
                continue
            cost = abs((a[0] + b[0]) / 2 - mid) / width + tilt  # prefer symmetric, level pairs
            if cost < best_cost:
                best, best_cost = np.stack([a, b]), cost
    return best


def detect_faces_cv(image: np.ndarray) -> list[CvFace]:
    """Faces in an (H, W, 3) uint8 RGB image, largest first."""
    height, width = image.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)  # the cascades were trained on contrast-normalised faces
    min_side = max(20, int(MIN_FACE_FRACTION * min(gray.shape)))
    haar = _merge(_haar_faces(gray, min_side))
    lbp = _merge(_lbp_faces(gray, min_side))
    faces: list[CvFace] = []
    for box in haar:
        confirmed = any(_iou(box, other) > MERGE_IOU for other in lbp)
        eyes = find_eyes(gray, box)
        score = SCORE_HAAR + SCORE_LBP * confirmed + SCORE_EYES * (eyes is not None)
        faces.append(CvFace(box=box, score=score, eyes=eyes))
    for box in lbp:
        if any(_iou(box, face.box) > MERGE_IOU for face in faces):
            continue
        eyes = find_eyes(gray, box)
        if eyes is not None:  # an LBP-only face needs the eye cascade's agreement
            faces.append(CvFace(box=box, score=SCORE_LBP + SCORE_EYES, eyes=eyes))
    for face in faces:  # back to input pixels
        face.box = face.box / scale
        face.eyes = None if face.eyes is None else face.eyes / scale
    faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return faces

"""How far the synthetic corpus' own expressions move dlib's 68 landmarks, and how large a λ they are.

    python tools/corpus_expression_motion.py [--identities 8]

For held-out synthetic identities at the frontal camera, each expression parameter β_i is set to
the end of its range alone (both ends for the signed ones) and rendered by the ground-truth head
renderer (not the model). Printed per parameter: the mean displacement of the 68 dlib landmarks
from the neutral face over the inter-ocular distance (eval-real's measure of the basis response),
and |Δλ|, the norm of the change of λ = LeBS(β) it makes in the demo model. It says whether a
basis target such as "3 % IOD at λ ± 10" lies inside what the training corpus shows the model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint  # noqa: E402
from export3d_core.data.landmarks_dlib import aligned_face_box, get_dlib_landmarker  # noqa: E402
from export3d_core.data.synthetic import BETA_NAMES, BETA_RANGES, HeadRenderer  # noqa: E402
from export3d_core.data.synthetic_views import HELDOUT_SEED, draw_head, orbit_camera  # noqa: E402
from export3d_core.eval.real_photo import interocular  # noqa: E402

SIZE = 128  # the demo model's output side: landmarks are read as eval-real reads renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(DEMO_CHECKPOINT)
    landmarker, box, camera = get_dlib_landmarker(), aligned_face_box(SIZE), orbit_camera(0.0, 0.0)
    motion = {name: [] for name in BETA_NAMES}
    lam_change = {name: [] for name in BETA_NAMES}
    neutral = np.zeros(len(BETA_NAMES), np.float32)
    with HeadRenderer(SIZE) as renderer, torch.no_grad():
        lam_neutral = model.coefficients(torch.from_numpy(neutral)[None])
        for index in range(args.identities):
            head = draw_head(HELDOUT_SEED, index, 1)
            start = landmarker.landmarks_in_box(renderer.render(head.identity, neutral, camera, head.background).image, box)
            iod = interocular(start)
            for i, name in enumerate(BETA_NAMES):
                for end in (v for v in BETA_RANGES[name] if v != 0):
                    beta = neutral.copy()
                    beta[i] = end
                    image = renderer.render(head.identity, beta, camera, head.background).image
                    moved = landmarker.landmarks_in_box(image, box)
                    motion[name].append(float(np.linalg.norm(moved - start, axis=1).mean() / iod))
                    lam = model.coefficients(torch.from_numpy(beta)[None])
                    lam_change[name].append(float((lam - lam_neutral).norm()))
    print(f"{args.identities} held-out identities, frontal, each β at the end of its range alone")
    for name in BETA_NAMES:
        print(f"{name:18s} landmarks {100 * np.mean(motion[name]):5.2f} % IOD   |Δλ| {np.mean(lam_change[name]):6.2f}")


if __name__ == "__main__":
    main()

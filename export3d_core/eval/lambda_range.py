"""How far λ can go: where the image stops changing and where the arithmetic overflows.

`python -m export3d_core.eval.lambda_range [--checkpoint C]` prints, for |λ| from 10 to 1e12 on one
coefficient at a time (the worst of v1..vn, both signs), how far the final image is from λ = 0
(mean absolute difference, 0..255) and whether the tri-plane is finite, then bisects, per
coefficient, the |λ| at which it is not. It bypasses the λ limit of `PortraitSession`
(`lambda_units.MAX_ABS_LAMBDA`), whose value it justifies.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

MAGNITUDES = (10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e8, 1e10, 1e11, 1e12)


def _planes(model, appearance, lam: list[float]) -> torch.Tensor:
    e = model.expression(lam=torch.tensor([lam], dtype=torch.float32))
    return model.triplane(appearance, e)


def _image(model, planes: torch.Tensor, camera: torch.Tensor) -> np.ndarray:
    out = model.render(planes, camera).image[0]  # (3, H, W) in [-1, 1]
    return ((torch.nan_to_num(out, nan=-1.0).clamp(-1, 1) + 1) * 127.5).cpu().numpy()


def overflow_threshold(model, appearance, index: int, sign: float, low: float = 1e3, high: float = 1e14) -> float:
    """The largest |λ| (within 5 %) on coefficient `index` whose tri-plane is still finite."""
    n = model.config.n_basis
    while high / low > 1.05:
        middle = (low * high) ** 0.5
        lam = [0.0] * n
        lam[index] = sign * middle
        if bool(torch.isfinite(_planes(model, appearance, lam)).all()):
            low = middle
        else:
            high = middle
    return low


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    from export3d_core.camera import OrbitCamera
    from export3d_core.checkpoint import DEMO_CHECKPOINT, load_checkpoint
    from export3d_core.portrait import default_portrait, load_portrait

    parser = argparse.ArgumentParser(prog="python -m export3d_core.eval.lambda_range", description=__doc__)
    parser.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.checkpoint)
    portrait = load_portrait(default_portrait().path, model.config.input_size)
    source = torch.from_numpy(np.array(portrait.image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    appearance = model.encode(source)
    camera = OrbitCamera().params()[None]
    n = model.config.n_basis
    neutral = _image(model, _planes(model, appearance, [0.0] * n), camera)
    for magnitude in MAGNITUDES:
        diffs, broken = [], 0
        for index in range(n):
            for sign in (1.0, -1.0):
                lam = [0.0] * n
                lam[index] = sign * magnitude
                planes = _planes(model, appearance, lam)
                broken += not bool(torch.isfinite(planes).all())
                diffs.append(float(np.abs(_image(model, planes, camera) - neutral).mean()))
        print(f"|λ| {magnitude:8.0e}: image differs from λ=0 by {min(diffs):6.1f}..{max(diffs):6.1f} "
              f"(0..255); non-finite tri-plane in {broken}/{2 * n} cases", flush=True)
    limits = [overflow_threshold(model, appearance, i, s) for i in range(n) for s in (1.0, -1.0)]
    print(f"tri-plane finite up to |λ| = {min(limits):.3g} (smallest over v1..v{n}, both signs; "
          f"largest {max(limits):.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The editor's demo portraits: held-out synthetic heads plus one real photo, listed in portraits.json.

Synthetic portraits come from identity seeds that no training corpus uses (corpus seeds stay below
`HELDOUT_SEED`; these are above it and apart from the evaluation identities), rendered frontal
with a neutral expression, so they are already aligned to the model's framing. The astronaut
photo from scikit-image is added as a real photo, marked as outside the demo model's domain.

    export3d demo-portraits [--count 8] [--res 256] [-o resources/portraits]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from export3d_core.atomic import write_json_atomic

PORTRAIT_SEED = 30_000_000  # identity seeds of the demo portraits: disjoint from training, evaluation (10M) and the regressor (20M)
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "resources" / "portraits"


def write_demo_portraits(out_dir: Path, count: int = 8, resolution: int = 256) -> list[dict]:
    from PIL import Image

    from export3d_core.camera import OrbitCamera
    from export3d_core.data.synthetic import BETA_DIM, HeadRenderer, sample_background, sample_identity

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    with HeadRenderer(resolution) as renderer:
        for index in range(count):
            rng = np.random.default_rng([PORTRAIT_SEED, index])
            identity, background = sample_identity(rng), sample_background(rng)
            head = renderer.render(identity, np.zeros(BETA_DIM), OrbitCamera().params().numpy(), background)
            name = f"synthetic_{index + 1:02d}.png"
            Image.fromarray(head.image).save(out_dir / name)
            entries.append({"file": name, "label": f"Synthetic head {index + 1} (held out)",
                            "aligned": True, "in_domain": True})
    from skimage import data

    Image.fromarray(data.astronaut()).save(out_dir / "astronaut.png")
    entries.append({"file": "astronaut.png", "label": "Astronaut photo (real; outside the demo model's domain)",
                    "aligned": False, "in_domain": False})
    write_json_atomic(out_dir / "portraits.json", entries)
    return entries


def add_demo_portraits_command(subparsers) -> None:
    """Register `export3d demo-portraits`."""
    parser = subparsers.add_parser("demo-portraits", help="write the editor's demo portraits and portraits.json",
                                   description=__doc__.splitlines()[0])
    add_demo_portraits_arguments(parser)
    parser.set_defaults(handler=run_demo_portraits)


def add_demo_portraits_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=8, help="synthetic portraits (default 8)")
    parser.add_argument("--res", type=int, default=256, help="their side in pixels (default 256)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_DIR, help="folder (default resources/portraits)")


def run_demo_portraits(args: argparse.Namespace) -> int:
    for entry in write_demo_portraits(args.output, args.count, args.res):
        print(entry["file"], "-", entry["label"])
    return 0


def main() -> None:
    """`python -m export3d_core.data.demo_portraits`: the same as `export3d demo-portraits`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_demo_portraits_arguments(parser)
    run_demo_portraits(parser.parse_args())


if __name__ == "__main__":
    main()

"""How much of a view `changed_fraction` calls changed, the test that holds a stop.

    OMP_NUM_THREADS=1 python benchmarks/view_change.py [--flow-px 0.3 0.5] [--noise 2] \\
        [--data CLIP ...] [--size 128x416]

Per synthetic domain, between a rendered frame with fresh sensor noise (``--noise`` grey
levels) and:
itself, the next frame and the one after (the camera drove one and two steps), itself panned by
2 pixels, and itself with an object 0.4 of the width crossing (`passing_object`, all in view).
With ``--data``, the distribution over each clip's consecutive frames (at most 300), at the
width the tracker works at.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import torch
import torch.nn.functional as F

from sfm_ros.core.stop_view import changed_fraction
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.synthetic.domains import DOMAINS
from sfm_ros.core.synthetic.occluder import passing_object
from sfm_ros.messages.sources import open_sources


def grey(
    image: np.ndarray, noise_seed: int | None = None, width: int | None = None, sigma: float = 2.0
):
    """(1, 1, h, w) grey in [0, 1] of an (H, W[, 3]) uint8 image, with fresh noise of ``sigma``
    grey levels, resized to ``width`` (aspect kept) where it is wider."""
    image = image.astype(np.float32)
    if image.ndim == 3:
        image = image.mean(-1)
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).normal(0, sigma, image.shape)
        image = np.clip(np.round(image + noise), 0, 255)
    out = torch.from_numpy(image / 255.0).float()[None, None]
    if width is not None and out.shape[-1] > width:
        size = (round(out.shape[-2] * width / out.shape[-1]), width)
        out = F.interpolate(out, size=size, mode="bilinear", antialias=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-px", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise, grey levels")
    parser.add_argument("--data", nargs="*", default=[], help="clips, as for sfm-ros eval pose")
    parser.add_argument("--size", default="128x416", help="synthetic frames' HxW")
    args = parser.parse_args()
    height, width = (int(x) for x in args.size.split("x"))
    for domain in DOMAINS:
        frames = render_sequence(domain, 3, seed=5, height=height, width=width).images
        frames = frames.round().astype(np.uint8)
        noisy = functools.partial(grey, noise_seed=1, sigma=args.noise)
        still = grey(frames[0], 0, sigma=args.noise)
        crossed = passing_object(frames[0], 9, fraction=0.4, speed=0.06)
        pairs = {
            "noise": noisy(frames[0]),
            "one step": noisy(frames[1]),
            "two steps": noisy(frames[2]),
            "2 px pan": F.pad(still, (2, 0, 0, 0), mode="replicate")[..., :width],
            "object 0.4": noisy(crossed),
        }
        row = [
            f"{name} " + "/".join(f"{changed_fraction(still, g, t):.2f}" for t in args.flow_px)
            for name, g in pairs.items()
        ]
        print(f"{domain:9s} " + " | ".join(row))
    for clip in args.data:
        seq = open_sources([clip])[0]
        changed, prev = [], None
        for i in range(min(len(seq), 300)):
            g = grey(seq.load(i).image, width=416)
            if prev is not None and prev.shape == g.shape:
                changed.append(changed_fraction(prev, g, args.flow_px[0]))
            prev = g
        c = np.array(changed)
        p = np.nanpercentile(c, [1, 5, 50])
        print(
            f"{seq.name}: {len(c)} pairs at {args.flow_px[0]} px, changed min {np.nanmin(c):.3f}, "
            f"1/5/50th percentiles {p[0]:.3f}/{p[1]:.3f}/{p[2]:.3f}, under 0.2: "
            f"{int((c < 0.2).sum())}, under 0.4: {int((c < 0.4).sum())}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

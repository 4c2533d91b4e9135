"""The networks across exposure changes, with and without what they do to their input's
brightness (`sfm_ros.core.models.exposure`).

    OMP_NUM_THREADS=1 python benchmarks/exposure_steps.py \\
        [--data ../shared/data/real/kitti_odometry_00] [--frames 160] [--checkpoint CKPT]

Pose, on the clip: each frame's motion from the one before, by the pose network alone on the
snippet ending at it, with the frames' brightness changed in four patterns: none, every frame
at gain 0.5, every second frame at gain 0.5 (an exposure step at every frame), and a seeded gain
per frame between 0.5 and 1.5. Prints the mean rotation error (degrees), the mean angle of the
translation to the true one (degrees), and the median and mean absolute spread of log(length /
true length).

Depth, on held-out synthetic frames (five domains, seed 1000, four frames each at the
network's size) scaled to a mean grey of 0.12 to 0.7: the median-scaled Abs Rel of the depth
network.

"unmatched" runs the networks without `exposure_matched` and `in_band` (as before they were
added); "shipped" as they are.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.metrics import direction_error_deg, rotation_error_deg
from sfm_ros.core.models import dispnet, posenet, resnet
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.messages.sources import open_source

PATTERNS = ("none", "every frame 0.5", "every second 0.5", "random 0.5-1.5")
MEANS = (0.12, 0.18, 0.25, 0.32, 0.4, 0.5, 0.6, 0.7)
DOMAINS = ("street", "field", "corridor", "warehouse", "rural")


@contextmanager
def _as(label: str) -> Iterator[None]:
    """The networks as shipped, or ("unmatched") with their brightness handling taken out."""
    saved = posenet.exposure_matched, dispnet.in_band, resnet.in_band
    if label == "unmatched":
        posenet.exposure_matched = lambda tgt, srcs: (tgt, srcs)
        dispnet.in_band = resnet.in_band = lambda images: images
    try:
        yield
    finally:
        posenet.exposure_matched, dispnet.in_band, resnet.in_band = saved


def _gains(pattern: str, n: int) -> np.ndarray:
    if pattern == "none":
        return np.ones(n)
    if pattern == "every frame 0.5":
        return np.full(n, 0.5)
    if pattern == "every second 0.5":
        return np.where(np.arange(n) % 2 == 0, 1.0, 0.5)
    return np.exp(np.random.default_rng(0).uniform(np.log(0.5), np.log(1.5), n))


def _scaled(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image * gain, 0, 255).astype(np.uint8)


def pose_errors(est: DepthPoseEstimator, frames: list, gains: np.ndarray) -> str:
    """Rotation / direction / log length figures of each frame's motion from the one before."""
    errors = []
    for i in range(est.snippet_length - 1, len(frames)):
        first = i - est.snippet_length + 1
        snippet = zip(frames[first : i + 1], gains[first : i + 1], strict=True)
        images = [_scaled(f.image, g) for f, g in snippet]
        T_first = est.snippet_poses(images, frames[i].K)
        T = np.linalg.inv(T_first[-2]) @ T_first[-1]
        G = np.linalg.inv(frames[i - 1].T_world_cam) @ frames[i].T_world_cam
        t, g = T[:3, 3], G[:3, 3]
        errors.append((
            rotation_error_deg(G[None], T[None])[0],
            direction_error_deg(t, g),
            np.log(np.linalg.norm(t) / np.linalg.norm(g)),
        ))  # fmt: skip
    e = np.array(errors)
    log_length = np.median(e[:, 2])
    spread = np.abs(e[:, 2] - log_length).mean()
    return f"{e[:, 0].mean():.3f} / {np.nanmean(e[:, 1]):.2f} / {log_length:+.3f} +- {spread:.3f}"


def depth_abs_rel(est: DepthPoseEstimator, mean: float) -> float:
    """Mean median-scaled Abs Rel over the held-out frames scaled to ``mean`` grey."""
    abs_rel = []
    for domain in DOMAINS:
        seq = render_sequence(domain, 4, seed=1000, height=est.height, width=est.width)
        for image, true_m in zip(seq.images, seq.depth_m, strict=True):
            depth_m = est.depth(_scaled(image, mean * 255 / image.mean()), seq.K)
            valid = (true_m > 0) & np.isfinite(depth_m)
            scaled = depth_m[valid] * np.median(true_m[valid]) / np.median(depth_m[valid])
            abs_rel.append(np.mean(np.abs(scaled - true_m[valid]) / true_m[valid]))
    return float(np.mean(abs_rel))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/real/kitti_odometry_00")
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--checkpoint", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seq = open_source(args.data)[0]
    frames = [seq.load(i) for i in range(min(args.frames, len(seq)))]
    est = DepthPoseEstimator.load(args.checkpoint)
    print(f"pose, {seq.name}, {len(frames)} frames: rotation / direction (deg) / log length")
    for pattern in PATTERNS:
        for label in ("unmatched", "shipped"):
            with _as(label):
                figures = pose_errors(est, frames, _gains(pattern, len(frames)))
            print(f"  {pattern:18s} {label:9s} {figures}")
    print(
        "depth, held-out synthetic frames: Abs Rel at a mean grey of " + " / ".join(map(str, MEANS))
    )
    for label in ("unmatched", "shipped"):
        with _as(label):
            print(f"  {label:9s} " + " / ".join(f"{depth_abs_rel(est, m):.3f}" for m in MEANS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

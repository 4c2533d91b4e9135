"""The pose network across exposure changes, with and without the estimator's brightness match.

    OMP_NUM_THREADS=1 python benchmarks/exposure_steps.py \\
        [--data ../shared/data/real/kitti_odometry_00] [--frames 160] [--checkpoint CKPT]

Each frame's motion from the one before, by the pose network alone on the snippet ending at
it, with the frames' brightness changed in four patterns: none, every frame at gain 0.5, every
second frame at gain 0.5 (an exposure step at every frame), and a seeded gain per frame between
0.5 and 1.5. "raw" feeds the network the frames as they are; "matched" runs the estimator's own
snippet code, which takes what exceeds `EXPOSURE_STEP` out of the brightness ratios. Prints the
mean rotation error (degrees), the mean angle of the translation to the true one (degrees), and
the median and mean absolute spread of log(length / true length).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sfm_ros.core.geometry import snippet_poses_in_target
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.metrics import rotation_error_deg
from sfm_ros.messages.sources import open_source


def _gains(pattern: str, n: int) -> np.ndarray:
    if pattern == "none":
        return np.ones(n)
    if pattern == "every frame 0.5":
        return np.full(n, 0.5)
    if pattern == "every second 0.5":
        return np.where(np.arange(n) % 2 == 0, 1.0, 0.5)
    return np.exp(np.random.default_rng(0).uniform(np.log(0.5), np.log(1.5), n))


PATTERNS = ("none", "every frame 0.5", "every second 0.5", "random 0.5-1.5")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/real/kitti_odometry_00")
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--checkpoint", default="")
    args = parser.parse_args()
    seq = open_source(args.data)[0]
    frames = [seq.load(i) for i in range(min(args.frames, len(seq)))]
    est = DepthPoseEstimator.load(args.checkpoint)
    pose_net, length, mid = est._nets[1], est.snippet_length, est.snippet_length // 2
    print(f"{seq.name}, {len(frames)} frames; rotation / direction (deg) / log length ratio")
    for pattern in PATTERNS:
        gains = _gains(pattern, len(frames))
        images = [
            np.clip(f.image * g, 0, 255).astype(np.uint8)
            for f, g in zip(frames, gains, strict=True)
        ]
        inputs = [
            est._prepare(*est._check_inputs(im, f.K)).image
            for im, f in zip(images, frames, strict=True)
        ]
        for label in ("raw", "matched"):
            errors = []
            for i in range(length - 1, len(frames)):
                snippet = inputs[i - length + 1 : i + 1]
                with torch.inference_mode():
                    if label == "matched":
                        T_tgt_frame, _ = est._snippet_poses(pose_net, snippet)
                    else:
                        srcs = torch.stack(snippet[:mid] + snippet[mid + 1 :], dim=1)
                        T_src_tgt, _ = pose_net(snippet[mid], srcs)
                        T_tgt_frame = snippet_poses_in_target(T_src_tgt[0].double())
                T = (torch.linalg.inv(T_tgt_frame[-2]) @ T_tgt_frame[-1]).numpy()
                G = np.linalg.inv(frames[i - 1].T_world_cam) @ frames[i].T_world_cam
                t, g = T[:3, 3], G[:3, 3]
                cosine = t @ g / max(np.linalg.norm(t) * np.linalg.norm(g), 1e-12)
                errors.append((
                    rotation_error_deg(G[None], T[None])[0],
                    np.degrees(np.arccos(np.clip(cosine, -1, 1))),
                    np.log(np.linalg.norm(t) / np.linalg.norm(g)),
                ))  # fmt: skip
            e = np.array(errors)
            log_length = np.median(e[:, 2])
            spread = np.abs(e[:, 2] - log_length).mean()
            print(
                f"{pattern:18s} {label:8s} {e[:, 0].mean():.3f} / {e[:, 1].mean():.2f} / "
                f"{log_length:+.3f} +- {spread:.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

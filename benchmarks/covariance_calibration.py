"""Is the refined pose's covariance honest? Squared error per predicted variance, per axis.

    OMP_NUM_THREADS=1 python benchmarks/covariance_calibration.py [--covariance-scale 1 1] \\
        [--clips synthetic:field:60:1000 ../shared/data/kitti_odometry_06 ...]

Runs the packaged model (or ``--checkpoint``) and `KeyframeTracker` (`pose_source: refined`)
over each clip and compares every refined step (reason "ok") with the ground truth: the
rotation error and the translation error (after one scale for the clip, the median ratio of
true to estimated step length) in the current camera frame, each divided by the standard
deviation the tracker predicts on that axis. A consistent covariance gives a mean squared
ratio near 1; above 1 it is overconfident. Repeated frames are skipped, as the node skips
them. The default clips are the five synthetic domains (held-out seed 1000), on which
`KeyframeConfig.covariance_scale` was set.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.keyframes import KeyframeConfig, KeyframeTracker
from sfm_ros.core.lie import se3_inverse, so3_log
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.frame_pipeline import is_repeat

DOMAINS = ("street", "corridor", "field", "warehouse", "rural")


def squared_ratios(
    estimator: DepthPoseEstimator, source: str, frames: int, config: KeyframeConfig
) -> tuple[np.ndarray, np.ndarray, int]:
    """(M, 3) squared error / variance for rotation and translation, and the frame count."""
    seq = open_source(source)[0]
    tracker = KeyframeTracker(config)
    estimator.reset()
    true, est, cov, prev, prev_image = [], [], [], None, None
    n = min(frames, len(seq))
    for i in range(n):
        frame = seq.load(i)
        if is_repeat(prev_image, frame.image):
            continue  # the node skips it too
        prev_image = frame.image
        out = estimator.step(frame.image, frame.K, i * 100_000_000)
        track = tracker.track(frame.image, out.depth_m, frame.K, out.T_prev_cur)
        if prev is not None and track.diagnostics.reason == "ok":
            true.append(se3_inverse(prev) @ frame.T_world_cam)
            est.append(track.T_prev_cur)
            cov.append(track.covariance)
        prev = frame.T_world_cam
    true, est, cov = np.array(true), np.array(est), np.array(cov)
    scale = np.median(np.linalg.norm(true[:, :3, 3], axis=1)) / np.median(
        np.linalg.norm(est[:, :3, 3], axis=1)
    )
    rot = np.stack([so3_log(T[:3, :3].T @ E[:3, :3]) for T, E in zip(true, est, strict=True)])
    # translation error in the current camera frame, in the estimate's units
    trans = np.einsum("nji,nj->ni", true[:, :3, :3], est[:, :3, 3] - true[:, :3, 3] / scale)
    var = np.diagonal(cov, axis1=1, axis2=2)
    return rot**2 / var[:, 3:], trans**2 / var[:, :3], n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", default=[f"synthetic:{d}:60:1000" for d in DOMAINS])
    parser.add_argument("--checkpoint", default="", help="empty = the packaged model")
    parser.add_argument("--frames", type=int, default=200, help="frames per clip (at most)")
    parser.add_argument(
        "--covariance-scale",
        type=float,
        nargs=2,
        default=KeyframeConfig().covariance_scale,
        metavar=("TRANSLATION", "ROTATION"),
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    estimator = DepthPoseEstimator.load(args.checkpoint, device="cpu")
    config = KeyframeConfig(covariance_scale=tuple(args.covariance_scale))  # as in the node
    all_rot, all_trans = [], []
    print(f"covariance_scale {tuple(args.covariance_scale)}: mean (error / sigma)^2 per axis")
    for clip in args.clips:
        rot, trans, n = squared_ratios(estimator, clip, args.frames, config)
        all_rot.append(rot)
        all_trans.append(trans)
        print(
            f"{clip:40s} {len(rot):4d} of {n - 1} steps refined  rotation {rot.mean():7.2f} "
            f"{np.round(rot.mean(0), 2)}  translation {trans.mean():7.2f} "
            f"{np.round(trans.mean(0), 2)}"
        )
    rot, trans = np.concatenate(all_rot), np.concatenate(all_trans)
    print(f"{'all':40s} {len(rot):4d} steps  rotation {rot.mean():7.2f}  translation "
          f"{trans.mean():7.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

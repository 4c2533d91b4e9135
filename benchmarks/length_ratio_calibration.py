"""Is classical VO's claimed length-ratio variance honest? Squared log error per claim.

    OMP_NUM_THREADS=1 python benchmarks/length_ratio_calibration.py [--render-size 128x416] \\
        [--clips synthetic:street:61:2000 ../shared/data/kitti_odometry_06 ...]

Runs `OrbMotion` as the node does (frames at most `CLASSICAL_MAX_WIDTH` wide, repeated frames
skipped) over each clip and compares every length ratio (`classical_vo.length_ratio`: the last
motion's length over the one before) with the true one. It prints the rms log error, the rms
claimed standard deviation, and the squared error per claimed variance as a mean (what an
inverse-variance weight needs) and as a median over 0.455 (the median of a chi-square with
one degree of freedom; robust to the few wrong pairs). A calibrated claim gives both near 1.
The claim leaves out the errors all points of a pair share (its motion's), by a factor that
depends on the camera, which is why `LengthFusion` weighs the ratio by variances measured from
disagreements and uses the claim only relative to its average. The default clips are the five
synthetic domains at a seed that no evaluation uses (2000), at 128x416.
"""

from __future__ import annotations

import argparse

import numpy as np

from sfm_ros.cli import image_size
from sfm_ros.core.classical_vo import CLASSICAL_MAX_WIDTH, RELIABLE_INLIERS, OrbMotion
from sfm_ros.core.data import has_poses
from sfm_ros.core.length_fusion import LengthFusion
from sfm_ros.messages.sources import open_sources
from sfm_ros.pipeline.frame_pipeline import is_repeat

DOMAINS = ("street", "corridor", "field", "warehouse", "rural")


def ratio_errors(seq) -> tuple[np.ndarray, np.ndarray]:
    """Log errors (M,) of the clip's length ratios and their claimed variances (M,)."""
    stream = OrbMotion(max_width=CLASSICAL_MAX_WIDTH, min_inliers=RELIABLE_INLIERS)
    errors, claims, poses, prev_image = [], [], [], None
    max_ratio = LengthFusion().max_ratio
    for i in range(len(seq)):
        frame = seq.load(i)
        if is_repeat(prev_image, frame.image):
            continue  # the node skips it too
        prev_image = frame.image
        stream.step(frame.image, frame.K)
        poses.append(frame.T_world_cam)
        ratio, claim = stream.last_length_ratio, stream.last_length_ratio_variance
        if len(poses) < 3 or not np.isfinite(ratio) or not 1 / max_ratio <= ratio <= max_ratio:
            continue  # what the fusion would not use
        a, b, c = poses[-3:]
        true = np.linalg.norm((np.linalg.inv(b) @ c)[:3, 3]) / np.linalg.norm(
            (np.linalg.inv(a) @ b)[:3, 3]
        )
        errors.append(np.log(ratio / true))
        claims.append(claim)
    return np.array(errors), np.array(claims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = [f"synthetic:{d}:61:2000" for d in DOMAINS]
    parser.add_argument("--clips", nargs="+", default=default)
    parser.add_argument("--render-size", type=image_size, default=(128, 416))
    args = parser.parse_args()
    height, width = args.render_size
    pooled = [], []
    print(f"{'clip':34s} ratios  rms log err  rms claim  mean e2/claim  median e2/claim/0.455")
    for clip in args.clips:
        (seq,) = open_sources([clip], height=height, width=width)
        if not has_poses(seq):
            print(f"{clip:34s} skipped: no ground-truth poses")
            continue
        for pool, values in zip(pooled, ratio_errors(seq), strict=True):
            pool.append(values)
        row(clip, *(pool[-1] for pool in pooled))
    if len(args.clips) > 1:
        row("all", *(np.concatenate(pool) for pool in pooled))


def row(name: str, e: np.ndarray, c: np.ndarray) -> None:
    if len(e) == 0:
        print(f"{name:34s} no ratios")
        return
    r = e**2 / c
    print(
        f"{name:34s} {len(e):6d}  {np.sqrt(np.mean(e**2)):11.3f}  {np.sqrt(np.mean(c)):9.3f}"
        f"  {np.mean(r):13.2f}  {np.median(r) / 0.455:21.2f}"
    )


if __name__ == "__main__":
    main()

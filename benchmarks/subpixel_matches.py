"""Classical VO with ORB's keypoints as they are and refined to a fraction of a pixel.

    OMP_NUM_THREADS=1 python benchmarks/subpixel_matches.py [--render-size 128x416] \\
        [--clips ../shared/data/kitti_odometry_06 synthetic:street:61:2000 ...]

Runs `OrbMotion` as the node does (frames at most `CLASSICAL_MAX_WIDTH` wide, at least
`RELIABLE_INLIERS` inliers, turns detected) over each clip twice, without and with
`refine_matches`, and prints against the ground truth, per frame with a motion: the rotation's
error (degrees, median / rms), the translation's direction error (degrees, median / rms; not
where the camera only turned) and the length ratio's log error (mean / rms: `length_ratio`,
the last motion's length over the one before). The default clips are the real drives and the
five synthetic domains at a seed no evaluation uses (2000), at 128x416.
"""

from __future__ import annotations

import argparse

import numpy as np

from sfm_ros.cli import image_size
from sfm_ros.core.classical_vo import CLASSICAL_MAX_WIDTH, RELIABLE_INLIERS, OrbMotion
from sfm_ros.core.metrics import direction_error_deg, rotation_error_deg
from sfm_ros.messages.sources import open_sources

DOMAINS = ("street", "corridor", "field", "warehouse", "rural")
MIN_STEP_M = 1e-3


def errors(seq, subpixel: bool) -> tuple[list[float], list[float], list[float], int]:
    """Rotation and direction errors (degrees) of every motion, log errors of every length
    ratio, and the number of failed pairs."""
    stream = OrbMotion(
        max_width=CLASSICAL_MAX_WIDTH,
        min_inliers=RELIABLE_INLIERS,
        detect_turns=True,
        subpixel=subpixel,
    )
    rotation, direction, ratio, failed = [], [], [], 0
    frames = [seq.load(i) for i in range(len(seq))]
    for i, frame in enumerate(frames):
        T = stream.step(frame.image, frame.K)
        if i == 0:
            continue
        if T is None:
            failed += 1
            continue
        true = np.linalg.inv(frames[i - 1].T_world_cam) @ frame.T_world_cam
        rotation.append(float(rotation_error_deg(true[:3, :3], T[:3, :3])))
        length = np.linalg.norm(true[:3, 3])
        if not stream.last_turns_only and length > MIN_STEP_M:
            direction.append(float(direction_error_deg(T[:3, 3], true[:3, 3])))
        if i >= 2 and np.isfinite(stream.last_length_ratio):
            before = np.linalg.inv(frames[i - 2].T_world_cam) @ frames[i - 1].T_world_cam
            if np.linalg.norm(before[:3, 3]) > MIN_STEP_M and length > MIN_STEP_M:
                true_ratio = length / np.linalg.norm(before[:3, 3])
                ratio.append(float(np.log(stream.last_length_ratio / true_ratio)))
    return rotation, direction, ratio, failed


def _median_rms(x: list[float]) -> str:
    if not x:
        return "   -  /   -  "
    a = np.asarray(x)
    return f"{np.median(a):.3f} / {np.sqrt(np.mean(a**2)):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips",
        nargs="+",
        default=[
            "../shared/data/kitti_odometry_06",
            "../shared/data/real/kitti_odometry_00",
            *(f"synthetic:{d}:61:2000" for d in DOMAINS),
        ],
    )
    parser.add_argument("--render-size", type=image_size, default=(128, 416), help="HxW")
    args = parser.parse_args()
    height, width = args.render_size
    print("clip / keypoints: rotation deg (median / rms); direction deg (median / rms);")
    print("  length ratio log error (mean / rms, count); failed pairs")
    for seq in open_sources(args.clips, height=height, width=width):
        for subpixel in (False, True):
            rotation, direction, ratio, failed = errors(seq, subpixel)
            r = np.asarray(ratio)
            ratio_text = f"{r.mean():+.4f} / {np.sqrt(np.mean(r**2)):.4f}" if len(r) else "-"
            print(
                f"{seq.name[:28]:28s} {'refined' if subpixel else 'ORB    '}"
                f" {_median_rms(rotation)}; {_median_rms(direction)};"
                f" {ratio_text} ({len(r)}); {failed}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

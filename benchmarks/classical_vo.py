"""The classical baseline beside `sfm-ros eval pose`: ORB + essential-matrix VO on a whole clip.

    python benchmarks/classical_vo.py --clip ../shared/data/real/kitti_odometry_00

Textbook monocular VO (OpenCV ORB features, `findEssentialMat` with RANSAC, `recoverPose`),
frame to frame at the clip's full resolution with unit-length steps (the previous motion where
it fails), scored with exactly the metrics of `sfm-ros eval pose`: legacy 5-frame ATE (scale
fitted per snippet), SfMLearner's rotation error RE, Sim(3)-aligned RMSE ATE, KITTI t_err /
r_err and the mean frame-to-frame rotation error; constant velocity is printed beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from refinement import Clip, run_orb_essential  # benchmarks/refinement.py: the same VO

from sfm_ros.core.evaluate import segment_lengths, trajectory_metrics
from sfm_ros.core.metrics import (
    chain_relative_poses,
    constant_velocity_baseline,
    evaluate_snippets,
    evaluate_snippets_rotation,
    format_table,
)
from sfm_ros.messages.sources import open_source


def pose_row(gt: np.ndarray, motions: np.ndarray) -> dict[str, float]:
    """`sfm-ros eval pose`'s numbers for (N-1, 4, 4) frame-to-frame motions."""
    return {
        "ate5_mean": evaluate_snippets(gt, motions)[0],
        "re_mean": evaluate_snippets_rotation(gt, motions)[0],
        **trajectory_metrics(gt, chain_relative_poses(motions), segment_lengths(gt)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="a source with ground-truth poses")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    seq = open_source(args.clip)[0]
    frames = [seq.load(i) for i in range(len(seq))]
    gt_world = np.stack([f.T_world_cam for f in frames])
    gt = np.linalg.inv(gt_world[0]) @ gt_world
    images = [f.image if f.image.ndim == 3 else cv2.cvtColor(f.image, cv2.COLOR_GRAY2RGB)
              for f in frames]  # fmt: skip
    K = np.asarray(frames[0].K, dtype=np.float64)
    clip = Clip(seq.name, images, K, gt, None, images, K)
    motions, failed_percent, seconds = run_orb_essential(clip)
    cv = constant_velocity_baseline(gt)
    rows = {
        "ORB + E (unit steps)": {**pose_row(gt, np.stack(motions)), "failed %": failed_percent},
        "constant velocity": pose_row(gt, np.linalg.inv(cv[:-1]) @ cv[1:]),
    }
    print(f"{seq.name}: {len(frames)} frames, {1000 * seconds:.0f} CPU ms per frame")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

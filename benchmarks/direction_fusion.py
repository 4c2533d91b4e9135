"""The node's pose with and without the fused translation direction (``fuse_translation``).

    OMP_NUM_THREADS=1 python benchmarks/direction_fusion.py [--checkpoint CKPT] \\
        [--clips ../shared/data/kitti_odometry_06 synthetic:field:61:1000 ...]

Runs the node's pipeline (`PipelinePredictor`, default parameters: ``pose_source: fused``,
``fuse_classical: true``) over each clip twice, with ``fuse_translation`` false and true, and
prints the legacy 5-frame ATE (m), RE (rad), the Sim(3) RMSE ATE (m), t_err (%) and r_err
(deg / 100 m) of both beside constant velocity and ORB + essential-matrix VO
(`evaluate_pose_sequences`, as ``sfm-ros eval pose``). Synthetic clips are
rendered at ``--height`` x ``--width`` (default 128x416: at the packaged model's 64x208 ORB
finds too few inliers for the classical estimate, and nothing is fused).
"""

from __future__ import annotations

import argparse

from sfm_ros.core.evaluate import CLASSICAL, POSE_FIGURES, evaluate_pose_sequences
from sfm_ros.core.metrics import format_table
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.evaluate import PipelinePredictor

DATA = "../shared/data"
CLIPS = (
    f"{DATA}/kitti_odometry_06",
    f"{DATA}/real/kitti_odometry_00",
    "synthetic:street:61:1000",
    "synthetic:field:61:1000",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="", help="empty = the packaged model")
    parser.add_argument("--clips", nargs="*", default=list(CLIPS))
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=416)
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for clip in args.clips:
        seqs = open_source(clip, height=args.height, width=args.width)
        for fuse in (False, True):
            cfg = PipelineConfig(checkpoint=args.checkpoint or None, fuse_translation=fuse)
            report = evaluate_pose_sequences(PipelinePredictor(cfg), seqs, progress=False)
            for name, entry in report["sequences"].items():
                label = f"{name}, fuse_translation {str(fuse).lower()}"
                rows[label] = {k: entry["model"][k] for k in POSE_FIGURES}
                if fuse:
                    for base in ("baseline: constant velocity", CLASSICAL):
                        rows[f"{name}, {base}"] = {k: entry[base][k] for k in POSE_FIGURES}
        print(format_table(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

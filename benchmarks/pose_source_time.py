"""Time per frame of the node's pipeline for each pose source, on real frames.

    OMP_NUM_THREADS=1 python benchmarks/pose_source_time.py [--clip CLIP] [--frames 30] \\
        [--threads 1] [--checkpoint CKPT]

Runs `PipelinePredictor` (the node's pipeline, default parameters but ``pose_source``,
``fuse_classical`` and ``depth_source``) over the first frames of a clip twice and reports the
second pass's median and 90th percentile milliseconds a frame: with the network's depth,
`network`, `refined_rotation`, `fused` without and with the classical rotation (ORB +
essential matrix, in a worker thread beside the tracker); and the defaults, `fused` with
multi-view depth (a plane sweep every frame).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.evaluate import PipelinePredictor

NET = {"depth_source": "network"}
VARIANTS = {
    "network": {"pose_source": "network", **NET},
    "refined_rotation": {"pose_source": "refined_rotation", **NET},
    "fused, fuse_classical false": {"pose_source": "fused", "fuse_classical": False, **NET},
    "fused": {"pose_source": "fused", **NET},
    "fused, multi-view depth (the defaults)": {"pose_source": "fused", "depth_source": "multiview"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="../shared/data/kitti_odometry_06")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--checkpoint", default="", help="empty = the packaged model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq = open_source(args.clip)[0]
    frames = [seq.load(i) for i in range(min(args.frames, len(seq)))]
    print(f"{args.clip}: {len(frames)} frames of {frames[0].image.shape}, {args.threads} thread(s)")
    for name, params in VARIANTS.items():
        predictor = PipelinePredictor(PipelineConfig(checkpoint=args.checkpoint, **params))
        for _ in range(2):  # the second pass is timed
            predictor.reset()
            times = []
            for frame in frames:
                t0 = time.perf_counter()
                predictor.predict(frame)
                times.append(1e3 * (time.perf_counter() - t0))
        ms = np.array(times[1:])
        print(f"{name}: {np.median(ms):.1f} ms (p90 {np.percentile(ms, 90):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

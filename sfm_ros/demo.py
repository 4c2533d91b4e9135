"""`sfm-ros demo`: the whole system on the bundled synthetic sample, in a few CPU minutes.

1. renders a synthetic street sequence (with ground truth) and writes it to OUT/sample;
2. trains the default recipe briefly on it (OUT/run: checkpoints, TensorBoard, previews);
3. evaluates depth and pose on a held-out stretch of another street against ground truth,
   beside the trivial baselines, and writes OUT/metrics.json, depth previews and a
   trajectory plot (PNG).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sfm_ros.core.config import load_config
from sfm_ros.core.evaluate import (
    DepthEvalOptions,
    evaluate_depth_sequences,
    evaluate_pose_sequences,
)
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.sources import open_source
from sfm_ros.core.synthetic import render_sequence, write_sequence
from sfm_ros.core.train import Trainer
from sfm_ros.core.visualize import colorize_depth, plot_trajectories, save_png

HEIGHT, WIDTH = 64, 208
TRAIN_SOURCE = "synthetic:street:300:0"
HELD_OUT = "synthetic:street:40:1000"


def run_demo(out: Path, minutes: float = 2.0) -> dict:
    """Run the demo into `out`; returns the metrics written to OUT/metrics.json."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/3] rendering the synthetic sample to {out / 'sample'}")
    write_sequence(
        render_sequence("street", 40, seed=1000, height=HEIGHT, width=WIDTH), out / "sample"
    )

    print(f"[2/3] training the default recipe for {minutes:g} min on {TRAIN_SOURCE}")
    cfg = load_config(
        overrides=[
            f"data.train=[{TRAIN_SOURCE}]",
            "data.val=[synthetic:street:30:500]",
            f"data.height={HEIGHT}",
            f"data.width={WIDTH}",
            "optim.steps=100000",
            f"optim.max_minutes={minutes}",
            f"log.out_dir={out / 'run'}",
            "log.val_every=0",
            "log.save_every=100000",
        ]
    )
    summary = Trainer(cfg).run()

    print(f"[3/3] evaluating on held-out frames of another street ({out / 'sample'})")
    estimator = DepthPoseEstimator.from_checkpoint(summary.checkpoint)
    sequences = open_source(str(out / "sample"))
    depth = evaluate_depth_sequences(estimator, sequences, DepthEvalOptions(max_depth=80.0))
    pose = evaluate_pose_sequences(estimator, sequences)
    seq = sequences[0]
    for i in (0, len(seq) // 2):
        frame = seq.load(i)
        pred = estimator.depth(frame.image, frame.K)
        save_png(
            out / f"depth_{i:03d}.png",
            np.concatenate([frame.image, colorize_depth(pred), colorize_depth(frame.depth_m)]),
        )
    (entry,) = pose["sequences"].values()
    plot_trajectories(out / "trajectory.png", entry["trajectory_xyz"], title="held-out street")
    metrics = {
        "depth": {k: v for k, v in depth.items() if k != "table"},
        "pose": {k: v for k, v in entry.items() if k != "trajectory_xyz"},
        "train": {"steps": summary.steps_done, "seconds_per_step": summary.seconds_per_step},
        "wall_time_s": time.perf_counter() - start,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    print(depth["table"])
    print(pose["table"])
    print(
        f"done in {metrics['wall_time_s']:.0f} s. Look at {out}/depth_*.png (image | predicted "
        f"depth | true depth), {out}/trajectory.png and {out}/metrics.json"
    )
    return metrics

"""`sfm-ros demo`: the whole system on the bundled synthetic sample, in a few CPU minutes.

1. writes the sample: a synthetic street the packaged model never saw, as a rosbag2 with
   Image + CameraInfo + ground-truth odometry (OUT/sample_bag);
2. warms the packaged default model up on that recording with the online fine-tuner
   (OUT/warmup: versioned checkpoints that passed their held-out check);
3. runs the offline depth-and-odometry pipeline (exactly the ROS node's) over the bag with the
   warmed-up model: OUT/output_bag plus depth previews and a trajectory plot (PNG) in
   OUT/output_bag_previews;
4. scores the pipeline's depth and pose (the node's outputs, default parameters) against ground
   truth, before and after the warm-up, beside the trivial baselines, and writes
   OUT/metrics.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from sfm_ros.core.checkpoint import resolve_checkpoint
from sfm_ros.core.evaluate import (
    DepthEvalOptions,
    RecordedPredictor,
    evaluate_depth_sequences,
    evaluate_pose_sequences,
)
from sfm_ros.core.online import OnlineAdapter, OnlineConfig, adapt_sequences
from sfm_ros.messages.bag_io import make_bag
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.bag_tool import process_bag
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.evaluate import PipelinePredictor

DOMAIN, SEED, FRAMES, HEIGHT, WIDTH = "street", 1000, 60, 128, 416
IMAGE_TOPIC = "/camera/image_raw"


def _scores(checkpoint: Path, sample: str) -> dict:
    """Depth (median-scaled) and pose metrics of the node's pipeline with a checkpoint on the
    sample, with baselines; one pass of the pipeline serves both."""
    predictor = RecordedPredictor(PipelinePredictor(PipelineConfig(checkpoint=str(checkpoint))))
    sequences = open_source(sample, height=HEIGHT, width=WIDTH)
    depth = evaluate_depth_sequences(predictor, sequences, DepthEvalOptions(), progress=False)
    pose = evaluate_pose_sequences(predictor, sequences, progress=False)
    (entry,) = pose["sequences"].values()
    return {
        "depth": depth["model"]["median_scaled"],
        "depth_baseline_mean": depth["baseline_mean_depth"]["median_scaled"],
        "pose": entry["model"],
        "pose_baseline_constant_velocity": entry["baseline: constant velocity"],
    }


def run_demo(
    out: Path,
    warmup_steps_per_frame: int = 1,
    checkpoint: str | None = None,
    frames: int = FRAMES,
) -> dict:
    """Run the demo into `out`; returns what it writes to OUT/metrics.json."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    base = resolve_checkpoint(checkpoint)
    sample = f"synthetic:{DOMAIN}:{frames}:{SEED}"

    print(f"[1/4] writing the sample ({frames} frames of an unseen {DOMAIN}) to {out}/sample_bag")
    bag = make_bag(out / "sample_bag", synthetic=DOMAIN, frames=frames, seed=SEED,
                   height=HEIGHT, width=WIDTH, overwrite=True)  # fmt: skip

    print(f"[2/4] warming {base.name} up on the recording with the online fine-tuner")
    # No replay: the sample is the synthetic world that the replay would render.
    adapter = OnlineAdapter(
        OnlineConfig().replace(
            checkpoint=str(base), out_dir=str(out / "warmup"), resume=False, replay_data=""
        )
    )
    sequences = open_source(str(bag), height=adapter.height, width=adapter.width)
    warmup = adapt_sequences(adapter, sequences, steps_per_frame=warmup_steps_per_frame)
    print(warmup.format())
    adapted = out / "warmup" / "latest.pt"
    model = adapted if adapted.is_file() else base

    print(f"[3/4] depth and odometry over the bag with {model}")
    # The sample camera is 1.5 m above a flat road: the ground plane makes the outputs metric.
    cfg = PipelineConfig(checkpoint=str(model), scale_source="camera_height", camera_height_m=1.5)
    summary = process_bag(bag, out / "output_bag", IMAGE_TOPIC, cfg=cfg, overwrite=True)
    print(summary.format())

    print("[4/4] scoring against ground truth")
    metrics = {
        "sample": sample,
        "default_model": {"checkpoint": str(base), **_scores(base, sample)},
        "after_warmup": {"checkpoint": str(model), **_scores(model, sample)},
        "warmup": {"frames": warmup.frames, "seconds": warmup.seconds,
                   "version": warmup.version, "message": warmup.message},
        "pipeline": {"fps": summary.fps, "stage_ms": summary.stage_ms},
    }  # fmt: skip
    metrics["wall_time_s"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    print(format_metrics(metrics))
    print(
        f"done in {metrics['wall_time_s']:.0f} s. Look at {out}/output_bag_previews/ "
        f"(depth_*.png: camera image over predicted depth; trajectory.png: estimated vs. true "
        f"path) and {out}/metrics.json; replay {out}/output_bag with `ros2 bag play`."
    )
    return metrics


def format_metrics(metrics: dict) -> str:
    """A small table: Abs Rel, delta1, 5-frame ATE and Sim(3) RMSE ATE per row."""
    rows = [
        ("default model", metrics["default_model"]["depth"], metrics["default_model"]["pose"]),
        ("after warm-up", metrics["after_warmup"]["depth"], metrics["after_warmup"]["pose"]),
        ("baselines (mean depth, constant velocity)",
         metrics["default_model"]["depth_baseline_mean"],
         metrics["default_model"]["pose_baseline_constant_velocity"]),
    ]  # fmt: skip
    lines = [f"{'':42s} {'AbsRel':>7s} {'delta1':>7s} {'ATE5 m':>8s} {'ATE m':>7s}"]
    for name, depth, pose in rows:
        lines.append(
            f"{name:42s} {depth['abs_rel']:7.3f} {depth['a1']:7.3f} "
            f"{pose['ate5_mean']:8.4f} {pose['ate_rmse_sim3']:7.3f}"
        )
    return "\n".join(lines)

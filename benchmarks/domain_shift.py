"""Issue-4 benchmark: online adaptation under domain shift, and forgetting.

1. A base model is trained on the synthetic street domain (or given with --base).
2. It is adapted online on a stream of corridor frames (`sfm-ros finetune`'s adapter, a fixed
   number of frames and training steps per frame, deterministic).
3. Depth (median-scaled Abs Rel, delta1) and pose (5-frame ATE, Sim(3) RMSE ATE, rotation
   error) are measured before and after on held-out sequences of the new domain (corridor,
   another seed) and of the original one (street, another seed: forgetting), beside the
   trivial baselines.
4. The same before/after on the real KITTI odometry 06 clip of ../shared/data (pose only,
   against its ground truth; the clip is also the adaptation stream, as on a robot).

    python benchmarks/domain_shift.py --out runs/domain_shift --train-minutes 20 \\
        --adapt-frames 300 --steps-per-frame 1

On CPU the step budget is small (about one step per frame); say so when reporting.
Results: OUT/results.json and OUT/results.md (with the command line and the budgets).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from sfm_ros.core.config import load_config
from sfm_ros.core.evaluate import (
    DepthEvalOptions,
    evaluate_depth_sequences,
    evaluate_pose_sequences,
)
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.online import LATEST, OnlineAdapter, OnlineConfig, adapt_sequences
from sfm_ros.core.train import Trainer
from sfm_ros.messages.sources import open_source

ROOT = Path(__file__).resolve().parents[1]
HEADER = [
    "| model | Abs Rel | delta1 | 5-frame ATE (m) | RMSE ATE Sim(3) (m) | rot err (deg/frame) |",
    "|---|---|---|---|---|---|",
]
TRAIN = "[synthetic:street:400:0,synthetic:street:400:1]"
VAL = "[synthetic:street:60:500]"
KITTI = ROOT.parent / "shared" / "data" / "kitti_odometry_06"


def train_base(out: Path, minutes: float, height: int, width: int, device: str) -> Path:
    overrides = [
        f"data.train={TRAIN}", f"data.val={VAL}", f"data.height={height}", f"data.width={width}",
        "optim.steps=1000000", f"optim.max_minutes={minutes}", f"log.out_dir={out}",
        "log.val_every=500", "log.save_every=500", f"device={device}",
    ]  # fmt: skip
    summary = Trainer(load_config(overrides=overrides)).run()
    print(f"base model: {summary.steps_done} steps, {summary.seconds_per_step:.3f} s/step")
    return out / "checkpoints" / "last.pt"


def adapt(base: Path, source: str, out: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    cfg = OnlineConfig(
        checkpoint=str(base), out_dir=str(out), resume=False, device=args.device, lr=args.lr,
        save_period=args.save_period, replay_data=args.replay_data,
        anchor_weight=args.anchor_weight, batch_size=args.batch_size, freeze_bn=args.freeze_bn,
    )  # fmt: skip
    adapter = OnlineAdapter(cfg)
    sequences = open_source(source, height=adapter.height, width=adapter.width)
    summary = adapt_sequences(
        adapter, sequences, steps_per_frame=args.steps_per_frame,
        max_frames=args.adapt_frames, progress=True,
    )  # fmt: skip
    print(summary.format())
    s = summary.stats
    info = {
        "source": source, "frames": summary.frames, "steps": s.steps,
        "train_seconds": s.train_time_s, "seconds_per_step": s.train_time_s / max(s.steps, 1),
        "versions": summary.version, "rollbacks": s.rollbacks, "checks": s.checks,
        "holdout_loss_start": summary.holdout_start,
        "holdout_loss_adapted": summary.holdout_adapted,
        "device": str(adapter.device),
    }  # fmt: skip
    return (out / LATEST if summary.version else base), info


def evaluate(checkpoint: Path, source: str, device: str, depth: bool) -> dict:
    estimator = DepthPoseEstimator.from_checkpoint(checkpoint, device=device)
    sequences = open_source(source, height=estimator.height, width=estimator.width)
    result = {"pose": evaluate_pose_sequences(estimator, sequences, progress=False)}
    if depth:
        options = DepthEvalOptions(max_depth=80.0)
        result["depth"] = evaluate_depth_sequences(estimator, sequences, options, progress=False)
    return result


def row(name: str, result: dict, model_key: str = "model") -> str:
    (pose,) = result["pose"]["sequences"].values()
    pose = pose[model_key]
    cells = ["-", "-"]
    if "depth" in result:
        key = "model" if model_key == "model" else "baseline_mean_depth"
        depth = result["depth"][key]["median_scaled"]
        cells = [f"{depth['abs_rel']:.3f}", f"{depth['a1']:.3f}"]
    return (
        f"| {name} | {cells[0]} | {cells[1]} | {pose['ate5_mean']:.4f} | "
        f"{pose['ate_rmse_sim3']:.3f} | {pose['rot_err_deg_per_frame']:.3f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/domain_shift")
    parser.add_argument("--base", help="base checkpoint (skips training)")
    parser.add_argument("--train-minutes", type=float, default=20.0)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=208)
    parser.add_argument("--new-domain", default="corridor")
    parser.add_argument("--adapt-frames", type=int, default=300, help="frames of the stream")
    parser.add_argument("--steps-per-frame", type=int, default=1)
    parser.add_argument("--eval-frames", type=int, default=100, help="frames per eval sequence")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--save-period", type=int, default=25)
    parser.add_argument("--replay-data", default="", help="e.g. synthetic:street:100:0")
    parser.add_argument("--anchor-weight", type=float, default=0.0)
    parser.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep BatchNorm statistics (the finetune node's default is true)",
    )
    parser.add_argument("--kitti", default=str(KITTI), help="KITTI clip ('' to skip)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    base = Path(args.base) if args.base else train_base(
        out / "base", args.train_minutes, args.height, args.width, args.device
    )  # fmt: skip

    new = f"synthetic:{args.new_domain}:{args.eval_frames}:1000"
    old = f"synthetic:street:{args.eval_frames}:1000"
    stream = f"synthetic:{args.new_domain}:{args.adapt_frames}:0"
    adapted, adapt_info = adapt(base, stream, out / f"adapt_{args.new_domain}", args)
    results: dict = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "base": str(base),
        "adaptation": adapt_info,
    }
    lines = [
        f"Command: `{results['command']}`",
        "",
        f"Adaptation on {stream}: {adapt_info['steps']} steps "
        f"({adapt_info['seconds_per_step']:.3f} s/step on {adapt_info['device']}), "
        f"{adapt_info['versions']} versions published, {adapt_info['rollbacks']} rollbacks.",
        "",
        *HEADER,
    ]
    for domain, source in ((args.new_domain, new), ("street (forgetting)", old)):
        for name, ckpt in (("before", base), ("after", adapted)):
            result = evaluate(ckpt, source, args.device, depth=True)
            results[f"{domain}/{name}"] = {k: {kk: vv for kk, vv in v.items() if kk != "table"}
                                           for k, v in result.items()}  # fmt: skip
            lines.append(row(f"{domain}: {name}", result))
        lines.append(row(f"{domain}: baseline (mean depth / constant velocity)", result,
                         "baseline: constant velocity"))  # fmt: skip

    if args.kitti and Path(args.kitti).exists():
        kitti_adapted, kitti_info = adapt(base, args.kitti, out / "adapt_kitti", args)
        results["kitti_adaptation"] = kitti_info
        lines += ["", f"KITTI 06 clip ({kitti_info['frames']} frames, {kitti_info['steps']} steps, "
                  f"{kitti_info['versions']} versions, {kitti_info['rollbacks']} rollbacks):", "",
                  *HEADER]  # fmt: skip
        for name, ckpt in (("before", base), ("after", kitti_adapted)):
            result = evaluate(ckpt, args.kitti, args.device, depth=False)
            results[f"kitti/{name}"] = result["pose"]["sequences"]
            lines.append(row(f"KITTI 06: {name}", result))
        lines.append(row("KITTI 06: baseline (constant velocity)", result,
                         "baseline: constant velocity"))  # fmt: skip
    lines += ["", f"Total time: {(time.perf_counter() - start) / 60:.1f} min."]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Warm-up benchmark (issue 10): the online fine-tuner on a real clip, before and after.

For each step budget of ``--steps`` the starting checkpoint is warmed up on the clip with the
loop of ``sfm-ros finetune`` (``steps_per_frame`` steps after each frame, then training on the
buffer and the replayed synthetic data until the budget is spent; one thread, deterministic),
and the starting and the adapted model are measured the same way:

- pose on the clip against its ground truth: the legacy 5-frame ATE and RE (SfMLearner's
  snippet rotation error, radians), the rotation error per frame and the Sim(3)-aligned RMSE
  ATE of the pose network, beside constant velocity, and ATE5 / RE of what the node publishes
  with its default parameters (``pose_source: fused``, the keyframe tracker);
- depth on the clip (no ground truth there): the fraction of pixels the depth node would publish
  as NaN, the median depth and the spread of log depth;
- forgetting: Abs Rel / delta1 (median-scaled) on held-out synthetic frames of each domain
  (``--eval-seeds`` trajectories from seed 1000 on, never trained on, ``--eval-frames`` frames
  each: many places, since one trajectory's neighbouring frames show one place and its Abs
  Rel moves by 10-20 % from one place to another), beside a constant depth, and the worst
  domain's change against the starting model with its standard error (paired over the
  trajectories);
- seconds per training step, versions published and rollbacks (with the last reason);
- depth previews (PNG): for a few clip frames the image, then depth before and after each budget.

    python benchmarks/warmup.py --clip ../shared/data/kitti_odometry_06 --steps 200,1000 \\
        --out runs/warmup [--set lr=1e-4 replay_fraction=0.5]

Clips with ground-truth poses in ../shared/data: kitti_odometry_06, real/kitti_odometry_00,
real/redkitchen_7scenes. Results: OUT/results.json and OUT/results.md (with the command line).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sfm_ros.core.checkpoint import resolve_checkpoint
from sfm_ros.core.config import parse_overrides
from sfm_ros.core.evaluate import (
    DepthEvalOptions,
    evaluate_depth_sequences,
    evaluate_pose_sequences,
)
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.online import LATEST, OnlineAdapter, OnlineConfig, adapt_sequences
from sfm_ros.core.visualize import colorize_depth, save_png
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.evaluate import PipelinePredictor

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DOMAINS = ("street", "corridor", "field", "warehouse", "rural")
CV = "baseline: constant velocity"


def clip_depth(estimator: DepthPoseEstimator, frames: list) -> dict[str, float]:
    """What the depth node would publish on the clip: NaN fraction, median depth, log spread."""
    nan, median, spread = [], [], []
    for frame in frames:
        depth = estimator.depth(frame.image, frame.K)
        finite = depth[np.isfinite(depth)]
        nan.append(1.0 - finite.size / depth.size)
        if finite.size:
            median.append(float(np.median(finite)))
            spread.append(float(np.log(finite).std()))
    return {
        "nan_fraction": float(np.mean(nan)),
        "median_depth": float(np.median(median)) if median else float("nan"),
        "log_spread": float(np.mean(spread)) if spread else float("nan"),
    }


def measure(checkpoint: Path, clip: list, frames: list, synthetic: dict, device: str) -> dict:
    """Pose on the clip, depth statistics on the clip, depth per synthetic domain."""
    estimator = DepthPoseEstimator.from_checkpoint(checkpoint, device=device)
    (pose,) = evaluate_pose_sequences(estimator, clip, progress=False)["sequences"].values()
    node = PipelinePredictor(PipelineConfig(checkpoint=str(checkpoint), device=device))
    (node_pose,) = evaluate_pose_sequences(node, clip, progress=False)["sequences"].values()
    result = {
        "pose": {k: pose[k] for k in ("model", CV)} | {"node": node_pose["model"]},
        "clip_depth": clip_depth(estimator, frames),
        "synthetic": {},
    }
    for domain, sequences in synthetic.items():
        report = evaluate_depth_sequences(
            estimator, sequences, DepthEvalOptions(max_depth=80.0), progress=False
        )
        per_trajectory = [
            evaluate_depth_sequences(
                estimator, [seq], DepthEvalOptions(max_depth=80.0), progress=False
            )["model"]["median_scaled"]["abs_rel"]
            for seq in sequences
        ]
        result["synthetic"][domain] = {
            "model": report["model"]["median_scaled"],
            "baseline": report["baseline_mean_depth"]["median_scaled"],
            "abs_rel_per_trajectory": per_trajectory,
        }
    return result


def forgetting(after: dict, before: dict) -> tuple[float, float, str]:
    """The worst domain's relative change of Abs Rel (mean over trajectories) from ``before``
    to ``after``, its standard error (paired over the same trajectories) and the domain."""
    worst = (-math.inf, 0.0, "")
    for d in DOMAINS:
        a = np.asarray(after[d]["abs_rel_per_trajectory"])
        b = np.asarray(before[d]["abs_rel_per_trajectory"])
        change = a.mean() / b.mean() - 1.0
        stderr = (a - (1.0 + change) * b).std(ddof=1) / np.sqrt(len(a)) / b.mean()
        worst = max(worst, (float(change), float(stderr), d))
    return worst


def previews(out: Path, frames: list, models: dict[str, Path], device: str) -> list[Path]:
    """One PNG per frame: the image, then depth of each model (colours per image, NaN black)."""
    estimators = {
        n: DepthPoseEstimator.from_checkpoint(p, device=device) for n, p in models.items()
    }
    paths = []
    for k, frame in enumerate(frames):
        image = frame.image if frame.image.ndim == 3 else np.repeat(frame.image[..., None], 3, 2)
        rows = [image] + [
            colorize_depth(e.depth(frame.image, frame.K)) for e in estimators.values()
        ]
        paths.append(save_png(out / f"depth_{k}.png", np.concatenate(rows, axis=0)))
    (out / "previews.txt").write_text(
        "rows, top to bottom: image, " + ", ".join(f"depth ({n})" for n in models) + "\n"
    )
    return paths


def pose_cells(pose: dict) -> str:
    ate5, re, ate = pose["ate5_mean"], pose["re_mean"], pose["ate_rmse_sim3"]
    rot = pose["rot_err_deg_per_frame"]
    return f"{ate5:.4f} | {re:.4f} | {rot:.3f} | {ate:.3f}"


def table(results: dict, budgets: list[int]) -> list[str]:
    head = "| model | steps | s/step | versions / rollbacks | ATE5 (m) | RE (rad) "
    head += "| rot. (deg/frame) | ATE Sim(3) (m) | node's ATE5 / RE | clip NaN % "
    head += "| clip median depth | clip log spread | worst forgetting | "
    head += " | ".join(f"{d} Abs Rel / d1" for d in DOMAINS) + " |"
    lines = [head, "|" + "---|" * (13 + len(DOMAINS))]
    before = results["before"]["synthetic"]

    def row(name: str, r: dict, steps: str = "-", speed: str = "-", versions: str = "-") -> str:
        c = r["clip_depth"]
        synth = " | ".join(
            f"{r['synthetic'][d]['model']['abs_rel']:.3f} / {r['synthetic'][d]['model']['a1']:.3f}"
            for d in DOMAINS
        )
        change, stderr, domain = forgetting(r["synthetic"], before)
        worst = f"{100 * change:+.1f} ± {100 * stderr:.1f} % ({domain})"
        if r is results["before"]:
            worst = "-"
        node = r["pose"]["node"]
        return (
            f"| {name} | {steps} | {speed} | {versions} | {pose_cells(r['pose']['model'])} | "
            f"{node['ate5_mean']:.4f} / {node['re_mean']:.4f} | {100 * c['nan_fraction']:.1f} | "
            f"{c['median_depth']:.3g} | {c['log_spread']:.3f} | {worst} | {synth} |"
        )

    lines.append(row("before", results["before"], "0"))
    lines += [row(f"measured: {path}", r) for path, r in results["measured"].items()]
    for n in budgets:
        r, a = results[f"after_{n}"], results[f"after_{n}"]["adaptation"]
        lines.append(
            row(
                f"after {n} steps",
                r,
                str(a["steps"]),
                f"{a['seconds_per_step']:.2f}",
                f"{a['versions']} / {a['rollbacks']}",
            )  # fmt: skip
        )
    base = results["before"]
    synth = " | ".join(
        f"{base['synthetic'][d]['baseline']['abs_rel']:.3f} / "
        f"{base['synthetic'][d]['baseline']['a1']:.3f}"
        for d in DOMAINS
    )
    lines.append(
        f"| baselines (constant velocity / constant depth) | - | - | - | "
        f"{pose_cells(base['pose'][CV])} | - | - | - | - | - | {synth} |"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="", help="starting model (default: packaged)")
    parser.add_argument("--clip", default=str(DATA / "kitti_odometry_06"), help="real clip")
    parser.add_argument("--steps", default="200", help="step budgets, e.g. 200,1000 (0: none)")
    parser.add_argument("--steps-per-frame", type=int, default=1)
    parser.add_argument(
        "--measure", nargs="+", default=[], metavar="CKPT",
        help="earlier warm-ups' checkpoints, measured beside the starting model (no training)",
    )  # fmt: skip
    parser.add_argument("--out", default="runs/warmup")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--eval-seeds", type=int, default=25, help="trajectories per domain")
    parser.add_argument("--eval-frames", type=int, default=4, help="frames per trajectory")
    parser.add_argument("--previews", type=int, default=3, help="clip frames to preview")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="fine-tuner settings (OnlineConfig), e.g. --set lr=1e-4 replay_fraction=0.5",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    base = resolve_checkpoint(args.checkpoint)
    budgets = [int(n) for n in args.steps.split(",") if int(n) > 0]  # 0: measure only
    overrides = parse_overrides(args.set)

    clip = open_source(args.clip)
    picks = np.linspace(0, len(clip[0]) - 1, args.previews + 2).round().astype(int)[1:-1]
    frames = [clip[0].load(int(i)) for i in picks]
    seeds = range(1000, 1000 + args.eval_seeds)
    synthetic = {
        d: [
            seq
            for seed in seeds
            for seq in open_source(
                f"synthetic:{d}:{args.eval_frames}:{seed}", height=128, width=416
            )
        ]
        for d in DOMAINS
    }
    data = clip, frames, synthetic
    results: dict = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "checkpoint": str(base),
        "clip": args.clip,
        "settings": OnlineConfig().replace(**overrides).to_dict(),
        "before": measure(base, clip, frames, synthetic, args.device),
        "measured": {p: measure(Path(p), *data, args.device) for p in args.measure},
    }
    models = {"before": base, **{p: Path(p) for p in args.measure}}
    for n in budgets:
        cfg = OnlineConfig().replace(**{
            **overrides, "checkpoint": str(base), "out_dir": str(out / f"steps_{n}"),
            "resume": False, "device": args.device, "threads": args.threads,
        })  # fmt: skip
        adapter = OnlineAdapter(cfg)
        native = cfg.adapt_resolution == "camera_aspect"  # the adapter resizes, keeping detail
        size = {} if native else {"height": adapter.height, "width": adapter.width}
        summary = adapt_sequences(
            adapter, open_source(args.clip, **size),
            steps_per_frame=args.steps_per_frame, max_steps=n, progress=False,
        )  # fmt: skip
        print(summary.format())
        s = summary.stats
        model = adapter.out_dir / LATEST if summary.version else base
        models[f"after {n} steps"] = model
        results[f"after_{n}"] = measure(model, clip, frames, synthetic, args.device)
        results[f"after_{n}"]["adaptation"] = {
            "steps": summary.steps, "seconds_per_step": s.train_time_s / max(summary.steps, 1),
            "versions": summary.version, "rollbacks": s.rollbacks,
            "last_rollback": s.last_rollback, "stopped": summary.stopped,
            "holdout_loss_start": summary.holdout_start,
            "holdout_loss_adapted": summary.holdout_adapted, "holdout_depth": s.holdout_depth,
        }  # fmt: skip
    pngs = previews(out / "previews", frames, models, args.device)
    minutes = (time.perf_counter() - start) / 60
    lines = [
        f"Command: `{results['command']}`",
        "",
        f"Clip {args.clip} ({len(clip[0])} frames), {args.threads} thread(s), "
        f"{args.steps_per_frame} step(s) per frame then the buffer until the budget; "
        f"settings: {overrides or 'defaults'}.",
        "",
        *table(results, budgets),
        "",
        *(
            f"after {n} steps: stopped by {a['stopped']}; last rollback: "
            f"{a['last_rollback'] or 'none'}"
            for n, a in ((n, results[f"after_{n}"]["adaptation"]) for n in budgets)
        ),
        f"Previews: {', '.join(str(p) for p in pngs)} ({out / 'previews' / 'previews.txt'}).",
        f"Total time: {minutes:.1f} min.",
    ]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue-9 benchmark: photometric pose refinement and multi-view depth against the network,
constant velocity, PnP-RANSAC and a classical ORB + essential-matrix VO.

    OMP_NUM_THREADS=1 python benchmarks/refinement.py --frames 100 --out runs/bench_refine.json

Sequences: the synthetic held-out field (with turns) and street (seed 1000), and the real KITTI
clips ../shared/data/kitti_odometry_06 and ../shared/data/real/kitti_odometry_00 when present,
all at 128x416 (KITTI resized, K scaled exactly). Pose methods, all chained frame to frame:

- network: the packaged model's `DepthPoseEstimator.step` motion;
- refined (network init): `KeyframeTracker` with its defaults, started from the network motion
  (keyframes aligned with their multi-view depth); "network keyframe depth": with the
  network's depth instead. Multi-view depth (on the refined poses, and on the network poses
  with `refine_poses=False`) is compared with the network's where ground truth exists;
- refined (const-vel init): the tracker without the network motion;
- PnP: ORB matches between consecutive frames, `cv2.solvePnPRansac` on the previous frame's
  network depth (network motion where it fails); refined (PnP init): the tracker from it;
- ORB + E: `cv2.findEssentialMat` + `cv2.recoverPose` at full input resolution, unit-length
  steps (the metrics fit the scale: per snippet for ATE5, Sim(3) for the others);
- constant velocity: `metrics.constant_velocity_baseline` (ground-truth mean speed, straight).

Metrics (`sfm_ros.core.metrics`): ATE5 = legacy 5-frame snippet ATE, rot = mean frame-to-frame
rotation error, ATE = Sim(3)-aligned RMSE, t_err / r_err = KITTI relative errors on 10-80 % of
the run length. Times are CPU (process) time per frame with one thread, which the load of a
shared machine inflates less than wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from sfm_ros.core.classical_vo import orb_essential_motions, orb_matches
from sfm_ros.core.data.kitti import KittiOdometrySequence
from sfm_ros.core.evaluate import segment_lengths, trajectory_metrics
from sfm_ros.core.geometry import scale_intrinsics
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.keyframes import KeyframeConfig, KeyframeTracker
from sfm_ros.core.lie import se3_inverse
from sfm_ros.core.metrics import (
    chain_relative_poses,
    constant_velocity_baseline,
    evaluate_depth,
    evaluate_snippets,
    format_table,
)
from sfm_ros.core.multiview import multiview_depth
from sfm_ros.core.refine import prepare_reference, refine_with_reference
from sfm_ros.core.synthetic import render_sequence

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KITTI = {
    "kitti_06": SHARED / "kitti_odometry_06" / "sequences" / "06",
    "kitti_00": SHARED / "real" / "kitti_odometry_00" / "sequences" / "00",
}


@dataclass
class Clip:
    """Frames at the working size, plus the full-size frames for the classical baseline."""

    name: str
    images: list[np.ndarray]  # (h, w, 3) uint8
    K: np.ndarray
    T_world_cam: np.ndarray  # (N, 4, 4)
    depth_gt: list[np.ndarray] | None
    full_images: list[np.ndarray]
    K_full: np.ndarray


def synthetic_clip(domain: str, frames: int, height: int, width: int) -> Clip:
    seq = render_sequence(domain, frames, seed=1000, height=height, width=width)
    images = list(seq.images)
    return Clip(
        f"synthetic {domain}", images, seq.K, seq.T_world_cam, list(seq.depth_m), images, seq.K
    )


def kitti_clip(name: str, path: Path, frames: int, height: int, width: int) -> Clip:
    seq = KittiOdometrySequence(path, max_frames=frames)
    full = [seq.load(i).image for i in range(len(seq))]
    H, W = full[0].shape[:2]
    images = [cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA) for im in full]
    K = scale_intrinsics(seq.K, width / W, height / H)
    return Clip(name, images, K, seq.T_world_cam[: len(seq)], None, full, seq.K)


# ------------------------------------------------------------------------------------ methods


def run_network(estimator: DepthPoseEstimator, clip: Clip) -> tuple[list, list, float]:
    """Network motions (N-1), depths (N) and the mean time per frame (s)."""
    estimator.reset()
    motions, depths, start = [], [], time.process_time()
    for i, image in enumerate(clip.images):
        out = estimator.step(image, clip.K, i)
        depths.append(out.depth_m)
        if out.T_prev_cur is not None:
            motions.append(out.T_prev_cur)
    return motions, depths, (time.process_time() - start) / len(clip.images)


def run_tracker(clip: Clip, depths: list, inits: list | None, config: KeyframeConfig) -> dict:
    """Chain the tracker's motions; ``inits[i - 1]`` is the initial motion into frame i."""
    tracker = KeyframeTracker(config)
    motions, fused, confidence, times, iterations = [], [], [], [], []
    for i, image in enumerate(clip.images):
        start = time.process_time()
        out = tracker.track(
            image, depths[i], clip.K, None if inits is None or i == 0 else inits[i - 1]
        )
        times.append(time.process_time() - start)
        fused.append(out.depth_m)
        confidence.append(out.confidence)
        if out.T_prev_cur is not None:
            motions.append(out.T_prev_cur)
            iterations.append(out.diagnostics.iterations)
    counts = Counter(out.diagnostics.reason_counts)
    counts.pop("first_frame", None)
    return {
        "motions": motions,
        "fused": fused,
        "confidence": confidence,
        "time": float(np.median(times[1:])),
        "fallback_percent": 100.0 * (1 - counts["ok"] / max(sum(counts.values()), 1)),
        "reasons": dict(counts),
        "switches": tracker.keyframe_switches,
        "iterations": float(np.mean(iterations)),
    }


def run_pnp(clip: Clip, depths: list, fallback: list) -> tuple[list, float, float]:
    """PnP-RANSAC motions on the previous frame's network depth, the share of frames where it
    failed (network motion used instead, %) and the mean time per frame (s)."""
    orb, matcher = cv2.ORB_create(1000), cv2.BFMatcher(cv2.NORM_HAMMING)
    motions, failed, start = [], 0, time.process_time()
    for i in range(1, len(clip.images)):
        prev, cur = (cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in clip.images[i - 1 : i + 1])
        pa, pb = orb_matches(orb, matcher, prev, cur)
        T = None
        if len(pa) >= 12:
            u, v = np.round(pa).astype(int).T
            z = depths[i - 1][
                v.clip(0, depths[i - 1].shape[0] - 1), u.clip(0, depths[i - 1].shape[1] - 1)
            ]
            ok = np.isfinite(z) & (z > 0)
            rays = np.c_[pa, np.ones(len(pa))] @ np.linalg.inv(clip.K).T
            X = rays[ok] * z[ok, None]
            if ok.sum() >= 12:
                found, rvec, tvec, inliers = cv2.solvePnPRansac(
                    X, pb[ok], clip.K, None, reprojectionError=2.0, iterationsCount=200
                )
                if found and inliers is not None and len(inliers) >= 12:
                    T_cur_prev = np.eye(4)
                    T_cur_prev[:3, :3] = cv2.Rodrigues(rvec)[0]
                    T_cur_prev[:3, 3] = tvec[:, 0]
                    T = se3_inverse(T_cur_prev)
        if T is None or not np.all(np.isfinite(T)):
            T, failed = fallback[i - 1], failed + 1
        motions.append(T)
    n = max(len(clip.images) - 1, 1)
    return motions, 100.0 * failed / n, (time.process_time() - start) / n


def run_orb_essential(clip: Clip) -> tuple[list, float, float]:
    """Unit-length ORB + essential-matrix motions at full resolution (`core/classical_vo.py`,
    the baseline `sfm-ros eval pose` prints), the failed share (%) and the time per frame (s)."""
    start = time.process_time()
    motions, failed = orb_essential_motions(clip.full_images, clip.K_full)
    n = max(len(clip.full_images) - 1, 1)
    return list(motions), 100.0 * failed / n, (time.process_time() - start) / n


# ------------------------------------------------------------------------------------ metrics


def pose_metrics(gt: np.ndarray, motions: list) -> dict:
    T = np.stack(motions)
    m = trajectory_metrics(gt, chain_relative_poses(T), segment_lengths(gt))
    return {
        "ATE5": evaluate_snippets(gt, T, 5)[0],
        "rot deg/frame": m["rot_err_deg_per_frame"],
        "ATE m": m["ate_rmse_sim3"],
        "t_err %": m["t_err_percent"],
        "r_err deg/100m": m["r_err_deg_per_100m"],
    }


def depth_metrics(gt: list, pred: list, mask: list | None = None) -> dict:
    if mask is not None:
        gt = [np.where(m, g, 0.0) for g, m in zip(gt, mask, strict=True)]
    res = evaluate_depth(gt, pred, max_depth=80.0)
    return {"Abs Rel": res.median_scaled["abs_rel"], "delta1": res.median_scaled["a1"]}


def component_timing(
    clip: Clip, depths: list, motions: list, config: KeyframeConfig, repeats: int
) -> dict:
    """Median CPU time (ms) of preparing a keyframe, one refinement against it and one
    multi-view depth with ``config.num_views`` sources, on the clip's first frames with the
    network's depth and motions."""

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255

    K = torch.as_tensor(clip.K, dtype=torch.float32)[None]
    depth = torch.from_numpy(depths[0])[None, None]
    T_0_i = chain_relative_poses(np.stack(motions[: config.num_views]))  # frame i -> frame 0
    T_i_0 = torch.as_tensor(se3_inverse(T_0_i), dtype=torch.float32)  # (n + 1, 4, 4)
    key, target = tensor(clip.images[0]), tensor(clip.images[1])
    ref = prepare_reference(key, depth, K, config.refine)
    n = config.num_views
    srcs = torch.stack([tensor(clip.images[i]) for i in range(1, n + 1)], 1)
    times = {"prepare keyframe": [], "refine": [], "multi-view": []}
    for _ in range(repeats):
        t0 = time.process_time()
        prepare_reference(key, depth, K, config.refine)
        t1 = time.process_time()
        refine_with_reference(ref, target, T_i_0[1:2].double(), config.refine)
        t2 = time.process_time()
        multiview_depth(key, depth, K, srcs, T_i_0[None, 1:], config.multiview)
        t3 = time.process_time()
        for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[name].append(1000 * dt)
    return {name: float(np.median(v)) for name, v in times.items()}


# --------------------------------------------------------------------------------------- main


def evaluate_clip(
    clip: Clip, estimator: DepthPoseEstimator, config: KeyframeConfig, pnp: bool
) -> dict:
    gt = clip.T_world_cam
    net_motions, net_depths, t_net = run_network(estimator, clip)
    rows = {"network": {**pose_metrics(gt, net_motions), "ms/frame": 1000 * t_net}}
    variants = {
        "refined (network init)": (net_motions, config),
        "refined (network init, network keyframe depth)": (
            net_motions,
            replace(config, keyframe_depth="network"),
        ),
        "refined (const-vel init)": (None, config),
    }
    if pnp:
        pnp_motions, pnp_failed, t_pnp = run_pnp(clip, net_depths, net_motions)
        rows["PnP-RANSAC on network depth"] = {
            **pose_metrics(gt, pnp_motions),
            "fallback %": pnp_failed,
            "ms/frame": 1000 * t_pnp,
        }
        variants["refined (PnP init)"] = (pnp_motions, config)
    unrefined = replace(config, refine_poses=False)  # multi-view depth on network poses
    runs = {"network poses": run_tracker(clip, net_depths, net_motions, unrefined)}
    for name, (inits, cfg) in variants.items():
        runs[name] = run = run_tracker(clip, net_depths, inits, cfg)
        rows[name] = {
            **pose_metrics(gt, run["motions"]),
            "fallback %": run["fallback_percent"],
            "ms/frame": 1000 * run["time"],
        }
    orb_motions, orb_failed, t_orb = run_orb_essential(clip)
    rows["ORB + E (unit steps)"] = {
        **pose_metrics(gt, orb_motions),
        "fallback %": orb_failed,
        "ms/frame": 1000 * t_orb,
    }
    cv = constant_velocity_baseline(gt)
    rows["constant velocity (gt speed)"] = pose_metrics(gt, list(se3_inverse(cv[:-1]) @ cv[1:]))
    notes = {
        name: {k: run[k] for k in ("reasons", "switches", "iterations")}
        for name, run in runs.items()
    }
    result = {"pose": rows, "notes": notes}
    if clip.depth_gt is not None:
        gts = clip.depth_gt[1:]
        result["depth"] = {"network": depth_metrics(gts, net_depths[1:])}
        for name in ("refined (network init)", "network poses"):
            result["depth"]["multi-view, " + name] = depth_metrics(gts, runs[name]["fused"][1:])
        main = runs["refined (network init)"]
        confident = [c > 0.5 for c in main["confidence"][1:]]
        result["depth"]["network, confident pixels"] = depth_metrics(gts, net_depths[1:], confident)
        result["depth"]["multi-view (refined), confident pixels"] = depth_metrics(
            gts, main["fused"][1:], confident
        )
        result["confident_percent"] = 100 * float(np.mean([c.mean() for c in confident]))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per sequence (at most)")
    parser.add_argument("--domains", nargs="*", default=["field", "street"])
    parser.add_argument("--no-kitti", action="store_true", help="skip the real KITTI clips")
    parser.add_argument("--no-pnp", action="store_true", help="skip PnP (and PnP-initialised)")
    parser.add_argument("--robust", choices=["huber", "cauchy"], default=None)
    parser.add_argument(
        "--max-rotation-deg",
        type=float,
        default=None,
        help="override the tracker's limit on the rotation a refinement may add to its start",
    )
    parser.add_argument("--timing-repeats", type=int, default=10)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)

    config = KeyframeConfig()
    if args.robust:
        config = replace(config, refine=replace(config.refine, robust=args.robust))
    if args.max_rotation_deg is not None:
        refine = replace(config.refine, max_rotation_deg=args.max_rotation_deg)
        config = replace(config, refine=refine)
    estimator = DepthPoseEstimator.load("", device="cpu")
    clips = [synthetic_clip(d, args.frames, args.height, args.width) for d in args.domains]
    if not args.no_kitti:
        clips += [
            kitti_clip(name, path, args.frames, args.height, args.width)
            for name, path in KITTI.items()
            if path.is_dir()
        ]
    results = {}
    for clip in clips:
        start = time.perf_counter()
        res = evaluate_clip(clip, estimator, config, not args.no_pnp)
        print(
            f"\n## {clip.name}: {len(clip.images)} frames ({time.perf_counter() - start:.0f} s)\n"
        )
        print(format_table(res["pose"], precision=3))
        if "depth" in res:
            share = res["confident_percent"]
            print(
                f"\ndepth (median-scaled; confident = confidence > 0.5, {share:.0f} % of pixels):"
            )
            print(format_table(res["depth"], precision=3))
        for name, note in res["notes"].items():
            print(f"{name}: {note}")
        results[clip.name] = res
    motions, depths, _ = run_network(estimator, clips[0])
    timing = component_timing(clips[0], depths, motions, config, args.timing_repeats)
    print(f"\nCPU time per frame at {args.height}x{args.width}, 1 thread (median ms):")
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))
    results["timing_ms"] = timing
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

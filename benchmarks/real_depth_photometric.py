"""Depth on real recordings without depth ground truth: does it explain a view it never saw?

    OMP_NUM_THREADS=1 python benchmarks/real_depth_photometric.py [--checkpoint CKPT] \\
        [--clips ../shared/data/real/kitti_odometry_00:2 synthetic:field:61:1000:1 ...] \\
        [--frames 150] [--carry-over 0.8]

The real clips have true poses but no true depth. For every frame i (after the third) each
depth map of frame i synthesises it from frame i + AHEAD, a later frame that neither the
network nor the plane sweep has seen, through the true relative pose (`inverse_warp`), at the
depth's best global scale (49 log-spaced factors over 1/8 to 8: the true poses are metric, the
depths are not). Reported: Monodepth2's photometric error (0.85 SSIM + 0.15 L1, grey levels)
over the pixels every depth map projects into the later frame, lower = more consistent with
the geometry; occlusions, moving objects and lighting add the same error to every depth map.

Depth maps: the network's (``depth_source: network``), the multi-view fused depth
(``depth_source: multiview``, the keyframe tracker on the network's motion, as
`depth_confidence.py` runs it) and a constant (the network's median), the trivial baseline.
Synthetic clips, which have true depth, check that the ranking follows Abs Rel. Frames are
processed at 416 px wide.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sfm_ros.core.checkpoint import resolve_checkpoint
from sfm_ros.core.data.augment import resize
from sfm_ros.core.geometry import inverse_warp
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.keyframes import KeyframeConfig, KeyframeTracker
from sfm_ros.core.losses import photometric_error
from sfm_ros.core.refine import to_grey
from sfm_ros.core.sources import open_source

DATA = "../shared/data"
CLIPS = [
    f"{DATA}/kitti_odometry_06:1",
    f"{DATA}/real/kitti_odometry_00:1",
    f"{DATA}/real/redkitchen_7scenes:10",
    "synthetic:field:61:1000:1",
    "synthetic:street:61:1000:1",
    "synthetic:corridor:61:1000:1",
]
SCALES = torch.exp(torch.linspace(math.log(1 / 8), math.log(8), 49))
WIDTH = 416
METHODS = ("network", "multi-view", "constant")


def _resized(image: np.ndarray, K: np.ndarray, depth_m: np.ndarray | None):
    """(image, K, depth) at ``WIDTH`` px wide (unchanged if narrower)."""
    h, w = image.shape[:2]
    if w <= WIDTH:
        return image, K, depth_m
    images, K, depth_m = resize(image[None], K, round(h * WIDTH / w), WIDTH, depth_m)
    return images[0], K, depth_m


def _grey(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 1, H, W) grey in [0, 1], as the tracker sees it."""
    return to_grey(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)


def _best_warp(depth_m: np.ndarray, src: torch.Tensor, tgt: torch.Tensor, T_src_tgt, K):
    """Error map (1, 1, H, W) and valid mask (H, W) of the best global scale of a depth map."""
    d = torch.from_numpy(np.nan_to_num(depth_m, nan=0.0).astype(np.float32))[None, None]
    n = len(SCALES)
    warped, valid = inverse_warp(
        src.expand(n, -1, -1, -1),
        d * SCALES.view(n, 1, 1, 1),
        T_src_tgt.expand(n, -1, -1),
        K.expand(n, -1, -1),
        padding_mode="border",
    )
    valid = valid.bool() & (d > 0)
    error = photometric_error(warped, tgt.expand(n, -1, -1, -1), 0.85)
    mean = torch.where(valid, error, 0.0).sum((1, 2, 3)) / valid.sum((1, 2, 3)).clamp(min=1)
    best = int(torch.argmin(torch.where(valid.flatten(1).any(1), mean, math.inf)))
    return error[best : best + 1], valid[best, 0]


def tracker_config(carry_over: float | None) -> KeyframeConfig:
    """The tracker's defaults, the published sweep's ``carry_over`` replaced unless None."""
    config = KeyframeConfig()
    if carry_over is not None:
        config.multiview = replace(config.multiview, carry_over=carry_over)
    return config


def evaluate(
    checkpoint: str, spec: str, frames: int, carry_over: float | None = None
) -> dict[str, float]:
    source, ahead = spec.rsplit(":", 1)
    (seq,) = open_source(source)
    est = DepthPoseEstimator.from_checkpoint(resolve_checkpoint(checkpoint))
    tracker = KeyframeTracker(tracker_config(carry_over))
    n = min(frames, len(seq))
    loaded = [seq.load(i) for i in range(n)]
    sums = dict.fromkeys(METHODS, 0.0)
    abs_rel = {m: [] for m in METHODS}
    pixels = 0
    for i in range(n - int(ahead)):
        frame, later = loaded[i], loaded[i + int(ahead)]
        image, K, true = _resized(frame.image, frame.K, frame.depth_m)
        out = est.step(image, K, frame.stamp_ns)
        track = tracker.track(image, out.depth_m, K, out.T_prev_cur, fuse_depth=True)
        if i < 3:
            continue
        depths = {
            "network": out.depth_m,
            "multi-view": track.depth_m,
            "constant": np.full_like(out.depth_m, np.nanmedian(out.depth_m)),
        }
        T = np.linalg.inv(later.T_world_cam) @ frame.T_world_cam
        T_src_tgt = torch.from_numpy(T.astype(np.float32))[None]
        K_t = torch.from_numpy(K.astype(np.float32))[None]
        src, tgt = _grey(_resized(later.image, later.K, None)[0]), _grey(image)
        warps = {m: _best_warp(d, src, tgt, T_src_tgt, K_t) for m, d in depths.items()}
        common = torch.stack([valid for _, valid in warps.values()]).all(0)
        pixels += int(common.sum())
        for m, (error, _) in warps.items():
            sums[m] += float(error[0, 0][common].sum())
            if true is not None:
                ok = (true > 0) & (true < 80) & np.isfinite(depths[m])
                d = depths[m][ok] * np.median(true[ok] / depths[m][ok])
                abs_rel[m].append(float(np.mean(np.abs(d - true[ok]) / true[ok])))
    result = {m: sums[m] / max(pixels, 1) for m in METHODS}
    for m in METHODS:
        if abs_rel[m]:
            result[f"{m} abs_rel"] = float(np.mean(abs_rel[m]))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="", help="default: the packaged model")
    parser.add_argument("--clips", nargs="+", default=CLIPS, help="SOURCE:AHEAD")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument(
        "--carry-over", type=float, help="multi-view carry_over (default: the tracker's)"
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print("clip | photometric error: network / multi-view / constant | Abs Rel (synthetic)")
    for spec in args.clips:
        source = spec.rsplit(":", 1)[0]
        if not source.startswith("synthetic:") and not Path(source).exists():
            print(f"{spec}: not found, skipped")
            continue
        r = evaluate(args.checkpoint, spec, args.frames, args.carry_over)
        errors = " / ".join(f"{r[m]:.4f}" for m in METHODS)
        rel = " / ".join(f"{r[f'{m} abs_rel']:.3f}" for m in METHODS if f"{m} abs_rel" in r)
        print(f"{spec} | {errors} | {rel or '-'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How well does ``depth/confidence`` rank the published depth's errors? (issue 9)

    OMP_NUM_THREADS=1 python benchmarks/depth_confidence.py [--checkpoint CKPT] \\
        [--clips synthetic:field:40:1000 ...] [--real ../shared/data/real/alley_iphone ...] \\
        [--carry-over 0.8]

Runs the packaged model (`DepthPoseEstimator`) and the keyframe tracker with its multi-view
depth (what the node runs for ``depth/confidence``) over held-out synthetic sequences at
128x416 with ground-truth depth. Every pixel's relative error (Abs Rel after scaling each
frame's depth by its median ratio to the truth) is ranked by each confidence, and the mean
error of the most confident 10 / 20 / 30 / 50 % is printed (lower = a better ranking), beside
the oracle (ranked by the error itself), for:

- the network's depth (``depth_source: network``) ranked by the multi-view confidence, what
  ``depth/confidence`` was before, and by ``prior_confidence`` (that confidence where geometry
  agrees with the network's depth), what it is now;
- the multi-view depth (``depth_source: multiview``) ranked by the multi-view confidence.

And the share of pixels above 0.5 with their mean error (a user's threshold).

Recordings without ground-truth depth (``--real``, default: the phone video and 7-Scenes
RedKitchen of ``../shared/data/real`` when present, first 150 frames) get the mean of both
confidences over their frames: not a ranking, but 0 there means the user is told nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from real_depth_photometric import tracker_config  # benchmarks/real_depth_photometric.py

from sfm_ros.core.checkpoint import resolve_checkpoint
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.keyframes import KeyframeTracker
from sfm_ros.core.sources import open_source

CLIPS = [f"synthetic:{d}:40:{s}" for s in (1000, 1001) for d in
         ("street", "corridor", "field", "warehouse", "rural")]  # fmt: skip
FRACTIONS = (0.1, 0.2, 0.3, 0.5)
REAL = [
    p
    for p in ("../shared/data/real/alley_iphone", "../shared/data/real/redkitchen_7scenes")
    if Path(p).is_dir()
]


def collect(checkpoint: str, clip: str, carry_over: float | None) -> dict[str, np.ndarray]:
    """Per valid pixel of every frame after the third: errors and confidences."""
    (seq,) = open_source(clip, height=128, width=416)
    est = DepthPoseEstimator.from_checkpoint(resolve_checkpoint(checkpoint))
    tracker = KeyframeTracker(tracker_config(carry_over))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("net", "fused", "c", "prior_c")}
    for i in range(len(seq)):
        frame = seq.load(i)
        out = est.step(frame.image, frame.K, frame.stamp_ns)
        track = tracker.track(frame.image, out.depth_m, frame.K, out.T_prev_cur, fuse_depth=True)
        if i < 3:  # the first frames have no source views yet
            continue
        true = frame.depth_m
        ok = np.isfinite(out.depth_m) & np.isfinite(track.depth_m) & (true > 0) & (true < 80)
        for key, depth in (("net", out.depth_m), ("fused", track.depth_m)):
            scaled = depth[ok] * np.median(true[ok] / depth[ok])
            parts[key].append(np.abs(scaled - true[ok]) / true[ok])
        parts["c"].append(track.confidence[ok])
        parts["prior_c"].append(track.prior_confidence[ok])
    return {k: np.concatenate(v) for k, v in parts.items()}


def mean_confidences(
    checkpoint: str, clip: str, frames: int, carry_over: float | None
) -> tuple[float, float]:
    """Mean multi-view confidence and ``prior_confidence`` over a recording's first frames
    (after the third), at its own resolution, as the node runs it."""
    (seq,) = open_source(clip)
    est = DepthPoseEstimator.from_checkpoint(resolve_checkpoint(checkpoint))
    tracker = KeyframeTracker(tracker_config(carry_over))
    means = []
    for i in range(min(frames, len(seq))):
        frame = seq.load(i)
        out = est.step(frame.image, frame.K, frame.stamp_ns)
        track = tracker.track(frame.image, out.depth_m, frame.K, out.T_prev_cur, fuse_depth=True)
        if i >= 3:
            means.append((track.confidence.mean(), track.prior_confidence.mean()))
    c, prior_c = np.mean(means, axis=0)
    return float(c), float(prior_c)


def ranked(confidence: np.ndarray, error: np.ndarray, threshold: bool = True) -> str:
    order = np.argsort(-confidence, kind="stable")
    means = [error[order[: int(f * len(error))]].mean() for f in FRACTIONS]
    above = confidence > 0.5
    share = f"{above.mean():.2f} at {error[above].mean():.3f}" if above.any() else "0"
    return " / ".join(f"{m:.3f}" for m in means) + f" | {share if threshold else '-'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="", help="default: the packaged model")
    parser.add_argument("--clips", nargs="+", default=CLIPS)
    parser.add_argument("--real", nargs="*", default=REAL, help="recordings without depth")
    parser.add_argument("--real-frames", type=int, default=150)
    parser.add_argument(
        "--carry-over", type=float, help="multi-view carry_over (default: the tracker's)"
    )
    args = parser.parse_args()
    data = [collect(args.checkpoint, clip, args.carry_over) for clip in args.clips]
    pooled = {k: np.concatenate([d[k] for d in data]) for k in data[0]}
    print(f"{len(pooled['net'])} pixels of {len(args.clips)} clips: {' '.join(args.clips)}")
    print(
        f"mean Abs Rel: network {pooled['net'].mean():.3f}, multi-view {pooled['fused'].mean():.3f}"
    )
    print(
        "ranking | Abs Rel of the most confident 10 / 20 / 30 / 50 % | share above 0.5 at Abs Rel"
    )
    print(f"network depth, oracle | {ranked(-pooled['net'], pooled['net'], threshold=False)}")
    rows = {
        "network depth, multi-view confidence (before)": (pooled["c"], pooled["net"]),
        "network depth, prior_confidence (now)": (pooled["prior_c"], pooled["net"]),
        "multi-view depth, multi-view confidence": (pooled["c"], pooled["fused"]),
    }
    for name, (confidence, error) in rows.items():
        print(f"{name} | {ranked(confidence, error)}")
    for clip in args.real:
        c, prior_c = mean_confidences(args.checkpoint, clip, args.real_frames, args.carry_over)
        print(f"{clip}: mean multi-view confidence {c:.3f}, prior_confidence {prior_c:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

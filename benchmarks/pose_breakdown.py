"""Where the node's pose error comes from: its lengths or its directions, and which source.

    OMP_NUM_THREADS=1 python benchmarks/pose_breakdown.py --data CLIP [CLIP ...] \\
        [--params config/sfm.yaml] [--set key=value ...] [--render-size 128x416]

Runs the node's pipeline over each clip (as `sfm-ros eval pose` does) and keeps each frame's
motion estimates before fusion (`MotionSources`: the pose network's, the refined and the
classical one). Printed per clip:
- ATE5 / Sim(3) ATE / t_err of the node, of the node's directions with the true lengths, and of
  the classical directions with the true lengths (where classical VO failed, the node's);
- each source's direction error against the truth (degrees, median and rms over the frames
  with all three, the published one beside them);
- the lengths' log error from one frame to the next (network, refined, published), the mean
  and rms of the classical length ratio's log error, and how far 10-frame means of each
  length's log ratio to the truth wander (std), which is what the whole trajectory feels;
- each source's rotation error against the truth (degrees a frame, median and rms over the
  frames with all three, the published one beside them).
"""

from __future__ import annotations

import argparse

import numpy as np

from sfm_ros.cli import image_size
from sfm_ros.core.evaluate import segment_lengths, trajectory_metrics
from sfm_ros.core.metrics import (
    chain_relative_poses,
    direction_error_deg,
    evaluate_snippets,
    rotation_error_deg,
)
from sfm_ros.messages.sources import open_sources
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config

BLOCK = 10
MIN_STEP = 1e-3


def _unit(v: np.ndarray) -> np.ndarray:
    """Unit vectors along the last axis; NaN for zero vectors (a stop)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _translations(motions: list[np.ndarray | None]) -> np.ndarray:
    """(N, 3) translations, NaN where there is no motion."""
    return np.stack([np.full(3, np.nan) if T is None else T[:3, 3] for T in motions])


def _rotations(motions: list[np.ndarray | None]) -> np.ndarray:
    """(N, 3, 3) rotations, NaN where there is no motion."""
    return np.stack([np.full((3, 3), np.nan) if T is None else T[:3, :3] for T in motions])


def _scores(gt: np.ndarray, motions: np.ndarray) -> str:
    ate5, _ = evaluate_snippets(gt, motions, 5)
    m = trajectory_metrics(gt, chain_relative_poses(motions), segment_lengths(gt))
    return f"{ate5:.4f} / {m['ate_rmse_sim3']:.3f} / {m['t_err_percent']:.1f}"


def _with(motions: np.ndarray, directions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``motions`` with their translations replaced by ``directions`` (NaN rows: kept) scaled
    to ``lengths``."""
    out = motions.copy()
    keep = ~np.isfinite(directions).all(1)
    directions = np.where(keep[:, None], out[:, :3, 3], directions)
    out[:, :3, 3] = np.nan_to_num(_unit(directions)) * lengths[:, None]
    return out


def _wander(lengths: np.ndarray, true: np.ndarray) -> float:
    """Std of 10-frame means of log(length / true length), after their median."""
    ok = np.isfinite(lengths) & (lengths > 0) & (true > MIN_STEP)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.where(ok, np.log(lengths / true), np.nan)
    blocks = [log_ratio[i : i + BLOCK] for i in range(0, len(log_ratio) - BLOCK + 1, BLOCK)]
    means = [np.nanmean(b) for b in blocks if np.isfinite(b).any()]
    return float(np.std(means)) if len(means) > 1 else float("nan")


def breakdown(predictor: PipelinePredictor, seq) -> None:
    predictor.reset()
    gts, published, sources = [], [], []
    for i in range(len(seq)):
        frame = seq.load(i)
        gts.append(frame.T_world_cam)
        prediction = predictor.predict(frame)
        if i == 0:
            continue
        T = None if prediction is None else prediction.T_prev_cur
        published.append(np.eye(4) if T is None else T)
        sources.append(predictor.pipeline.last_sources if T is not None else None)
    gt = np.linalg.inv(gts[0]) @ np.stack(gts)
    true = np.linalg.inv(gt[:-1]) @ gt[1:]
    t_true = true[:, :3, 3]
    true_length = np.linalg.norm(t_true, axis=1)
    published = np.stack(published)
    t_net, t_ref, t_cls = (
        _translations([None if s is None else getattr(s, k) for s in sources])
        for k in ("network", "refined", "classical")
    )
    ratio = np.array([np.nan if s is None else s.classical_length_ratio for s in sources])
    print(f"\n{seq.name} ({len(seq)} frames)")
    print("  ATE5 / Sim(3) ATE / t_err:")
    node_directions = published[:, :3, 3]
    for name, motions in (
        ("node", published),
        ("node's directions, true lengths", _with(published, node_directions, true_length)),
        ("classical directions, true lengths", _with(published, t_cls, true_length)),
    ):
        print(f"    {name:38s} {_scores(gt, motions)}")
    moving = true_length > MIN_STEP
    all_three = moving & np.isfinite(np.hstack([t_net, t_ref, t_cls])).all(1)
    print(f"  direction error, degrees (median / rms, {all_three.sum()} frames with all three):")
    for name, t in (("network", t_net), ("refined", t_ref), ("classical", t_cls)):
        a = direction_error_deg(t[all_three], t_true[all_three])
        print(f"    {name:10s} {np.median(a):.2f} / {np.sqrt(np.mean(a**2)):.2f}")
    a = direction_error_deg(node_directions[all_three], t_true[all_three])
    print(f"    published  {np.median(a):.2f} / {np.sqrt(np.mean(a**2)):.2f}")
    print("  lengths (log): frame-to-frame error rms; 10-frame means' wander (std):")
    true_change = np.diff(np.log(np.maximum(true_length, MIN_STEP)))
    both = moving[1:] & moving[:-1]
    for name, t in (("network", t_net), ("refined", t_ref), ("published", node_directions)):
        length = np.linalg.norm(t, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):  # a stop's zero length
            error = np.diff(np.log(length)) - true_change
        error = error[both & np.isfinite(error)]
        wander = _wander(length, true_length)
        print(f"    {name:10s} {np.sqrt(np.mean(error**2)):.3f}; {wander:.3f}")
    error = (np.log(ratio) - np.concatenate([[np.nan], true_change]))[np.r_[False, both]]
    error = error[np.isfinite(error)]
    if len(error):
        print(
            f"    classical ratio: mean {error.mean():+.4f}, rms {np.sqrt(np.mean(error**2)):.3f}"
            f" ({len(error)} frames)"
        )
    print(f"  rotation error, degrees a frame (median / rms, the {all_three.sum()} frames):")
    rotations = [
        (name, _rotations([None if s is None else getattr(s, name) for s in sources]))
        for name in ("network", "refined", "classical")
    ]
    for name, R in (*rotations, ("published", published[:, :3, :3])):
        a = rotation_error_deg(true[all_three, :3, :3], R[all_three])
        print(f"    {name:10s} {np.median(a):.3f} / {np.sqrt(np.mean(a**2)):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="clips with poses")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    parser.add_argument("--render-size", type=image_size, default=None, help="HxW (synthetic)")
    args = parser.parse_args()
    predictor = PipelinePredictor(pipeline_config(args.params, args.set))
    height, width = args.render_size or (predictor.estimator.height, predictor.estimator.width)
    for seq in open_sources(args.data, height=height, width=width):
        breakdown(predictor, seq)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`sfm-ros eval depth|pose`: run a checkpoint over sequences with ground truth and report the
metrics the field compares, always beside a trivial baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from sfm_ros.core.data import FrameSequence, has_depth, has_poses
from sfm_ros.core.errors import DatasetError
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.metrics import (
    KITTI_LENGTHS,
    chain_relative_poses,
    constant_velocity_baseline,
    evaluate_depth,
    evaluate_snippets,
    format_table,
    kitti_rpe,
    mean_depth_baseline,
    rmse_ate,
    rotation_error_deg,
)

LEGACY_SNIPPET = 5


@dataclass
class DepthEvalOptions:
    """Depth protocol options (SfMLearner / Monodepth2 defaults for KITTI)."""

    min_depth: float = 1e-3
    max_depth: float = 80.0
    garg_crop: bool = False
    metric: bool = False
    max_frames: int | None = None


def evaluate_depth_sequences(
    estimator: DepthPoseEstimator,
    sequences: list[FrameSequence],
    options: DepthEvalOptions,
    progress: bool = True,
) -> dict:
    """Depth metrics (median-scaled, and metric when asked) plus the mean-depth baseline."""
    usable = [s for s in sequences if has_depth(s)]
    if not usable:
        raise DatasetError("no sequence has ground-truth depth; depth evaluation needs it")
    gts, preds = [], []
    frames = [(s, i) for s in usable for i in range(len(s))][: options.max_frames]
    for seq, i in tqdm(frames, desc="depth", disable=not progress):
        frame = seq.load(i)
        pred = estimator.depth(frame.image, frame.K)
        gts.append(frame.depth_m)
        preds.append(np.where(np.isfinite(pred), pred, estimator.max_depth))
    kw = {
        "min_depth": options.min_depth,
        "max_depth": options.max_depth,
        "garg_crop": options.garg_crop,
    }
    result = evaluate_depth(gts, preds, metric=options.metric, **kw)
    baseline = mean_depth_baseline(gts, **kw)
    rows = {"model (median-scaled)": result.median_scaled}
    if result.metric is not None:
        rows["model (metric)"] = result.metric
    rows["baseline: mean depth"] = baseline.median_scaled
    return {
        "model": result.to_dict(),
        "baseline_mean_depth": baseline.to_dict(),
        "options": vars(options),
        "table": format_table(rows),
    }


def predict_trajectory(estimator: DepthPoseEstimator, seq: FrameSequence) -> np.ndarray:
    """Chain the estimator's frame-to-frame motions over a whole sequence: (N, 4, 4) T_first_cam."""
    estimator.reset()
    T_prev_cur = []
    for i in range(len(seq)):
        frame = seq.load(i)
        out = estimator.step(frame.image, frame.K, frame.stamp_ns)
        if out.T_prev_cur is not None:
            T_prev_cur.append(out.T_prev_cur)
    estimator.reset()
    return chain_relative_poses(np.stack(T_prev_cur))


def predict_snippets(estimator: DepthPoseEstimator, seq: FrameSequence) -> np.ndarray:
    """SfMLearner-style per-snippet poses (N-L+1, L, 4, 4), each relative to its first frame."""
    L = estimator.snippet_length
    images = [seq.load(i) for i in range(len(seq))]
    return np.stack(
        [
            estimator.snippet_poses([f.image for f in images[i : i + L]], images[i].K)
            for i in range(len(seq) - L + 1)
        ]
    )


def trajectory_metrics(gt: np.ndarray, pred: np.ndarray, lengths: tuple[float, ...]) -> dict:
    """Whole-trajectory metrics: Sim(3) RMSE ATE, KITTI t_err / r_err, mean rotation error."""
    rpe = kitti_rpe(gt, pred, lengths=lengths, align_scale=True)
    rel_gt = np.linalg.inv(gt[:-1]) @ gt[1:]
    rel_pred = np.linalg.inv(pred[:-1]) @ pred[1:]
    return {
        "ate_rmse_sim3": rmse_ate(gt, pred, align="sim3"),
        "t_err_percent": rpe.t_err_percent,
        "r_err_deg_per_100m": rpe.r_err_deg_per_100m,
        "rot_err_deg_per_frame": float(np.mean(rotation_error_deg(rel_gt, rel_pred))),
    }


def segment_lengths(gt: np.ndarray) -> tuple[float, ...]:
    """KITTI's 100..800 m when the run is long enough, else 10%..80% of the travelled distance."""
    total = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
    if total >= KITTI_LENGTHS[-1]:
        return KITTI_LENGTHS
    return tuple(round(total * k / 10, 2) for k in range(1, 9))


def evaluate_pose_sequences(
    estimator: DepthPoseEstimator, sequences: list[FrameSequence], progress: bool = True
) -> dict:
    """Legacy 5-frame snippet ATE and whole-trajectory metrics per sequence, with the
    constant-velocity baseline beside each."""
    usable = [s for s in sequences if has_poses(s) and len(s) >= LEGACY_SNIPPET]
    if not usable:
        raise DatasetError(
            f"no sequence has ground-truth poses and at least {LEGACY_SNIPPET} frames"
        )
    report: dict = {"sequences": {}}
    rows: dict[str, dict[str, float]] = {}
    for seq in tqdm(usable, desc="pose", disable=not progress):
        gt_world = np.stack([seq.load(i).T_world_cam for i in range(len(seq))])
        gt = np.linalg.inv(gt_world[0]) @ gt_world
        pred = predict_trajectory(estimator, seq)
        if estimator.snippet_length == LEGACY_SNIPPET:
            legacy_pred, legacy_source = predict_snippets(estimator, seq), "per-snippet"
        else:
            legacy_pred = np.linalg.inv(pred[:-1]) @ pred[1:]
            legacy_source = "chained"
        baseline = constant_velocity_baseline(gt)
        lengths = segment_lengths(gt)
        entry = {}
        for name, trajectory, legacy in (
            ("model", pred, legacy_pred),
            ("baseline: constant velocity", baseline, np.linalg.inv(baseline[:-1]) @ baseline[1:]),
        ):
            ate_mean, ate_std = evaluate_snippets(gt, legacy, LEGACY_SNIPPET)
            entry[name] = {
                "ate5_mean": ate_mean,
                "ate5_std": ate_std,
                **trajectory_metrics(gt, trajectory, lengths),
            }
            rows[f"{seq.name}: {name}"] = entry[name]
        entry["legacy_predictions"] = legacy_source
        entry["segment_lengths_m"] = list(lengths)
        entry["trajectory_xyz"] = {"gt": gt[:, :3, 3].tolist(), "pred": pred[:, :3, 3].tolist()}
        report["sequences"][seq.name] = entry
    report["table"] = format_table(rows)
    return report

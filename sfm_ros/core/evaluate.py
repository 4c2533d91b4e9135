"""`sfm-ros eval depth|pose`: run a model over sequences with ground truth and report the
metrics the field compares, always beside a trivial baseline.

What runs is a `FramePredictor`: the networks alone here, or the node's whole pipeline (pose
refinement, multi-view depth, scale source) from `sfm_ros.pipeline.evaluate`, which is what
``sfm-ros eval`` uses, so its numbers are the node's numbers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from sfm_ros.core.classical_vo import orb_essential_motions
from sfm_ros.core.data import Frame, FrameSequence, has_depth, has_poses
from sfm_ros.core.errors import DatasetError
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.metrics import (
    KITTI_LENGTHS,
    aligned_positions,
    chain_relative_poses,
    constant_velocity_baseline,
    evaluate_depth,
    evaluate_snippets,
    evaluate_snippets_rotation,
    format_table,
    kitti_rpe,
    mean_depth_baseline,
    rmse_ate,
    rotation_error_deg,
)

LEGACY_SNIPPET = 5
CLASSICAL = "baseline: ORB + essential matrix"
POSE_FIGURES = ("ate5_mean", "re_mean", "ate_rmse_sim3", "t_err_percent", "r_err_deg_per_100m")
"""The pose figures benchmarks print, in this order: ATE5 / RE / Sim(3) ATE / t_err / r_err
(keys of `evaluate_pose_sequences`' entries)."""


@dataclass
class DepthEvalOptions:
    """Depth protocol options (SfMLearner / Monodepth2 defaults for KITTI)."""

    min_depth: float = 1e-3
    max_depth: float = 80.0
    garg_crop: bool = False
    metric: bool = False
    max_frames: int | None = None


class FramePredictor(Protocol):
    """What evaluation runs over a sequence, frame after frame, in time order: the networks
    alone (`EstimatorPredictor`) or the node's whole pipeline
    (`sfm_ros.pipeline.evaluate.PipelinePredictor`)."""

    def reset(self) -> None:
        """Forget the previous frames (a new sequence starts)."""

    def predict(self, frame: Frame) -> Prediction | None:
        """Depth and motion of the next frame; None when the frame gives no output."""


@dataclass
class Prediction:
    """What a predictor says about one frame."""

    depth_m: np.ndarray
    """(H, W) depth, NaN or inf where there is no estimate."""
    T_prev_cur: np.ndarray | None
    """(4, 4) optical-frame motion since the previous frame; None for a sequence's first."""


class EstimatorPredictor:
    """The networks alone: `DepthPoseEstimator.step` on every frame, depth not range-limited
    (the protocols clip depth themselves, so only NaN / inf count as no prediction)."""

    def __init__(self, estimator: DepthPoseEstimator) -> None:
        self.estimator = estimator

    def reset(self) -> None:
        self.estimator.reset()

    def predict(self, frame: Frame) -> Prediction:
        est = self.estimator
        bounds = est.min_depth, est.max_depth
        est.min_depth, est.max_depth = 0.0, math.inf
        try:
            out = est.step(frame.image, frame.K, frame.stamp_ns)
        finally:
            est.min_depth, est.max_depth = bounds
        return Prediction(out.depth_m, out.T_prev_cur)


class RecordedPredictor:
    """A predictor that runs once per frame: what it says about a frame (its stamp and pixels)
    is kept, so that a second evaluation over the same sequences in the same order (depth, then
    pose) replays it instead of running the pipeline again. Every prediction stays in memory:
    for short samples such as the demo's."""

    def __init__(self, predictor: FramePredictor) -> None:
        self.predictor = predictor
        self.recorded: dict[tuple[int, bytes], Prediction | None] = {}

    def reset(self) -> None:
        self.predictor.reset()

    def predict(self, frame: Frame) -> Prediction | None:
        key = (frame.stamp_ns, hashlib.blake2b(frame.image.tobytes(), digest_size=16).digest())
        if key not in self.recorded:
            self.recorded[key] = self.predictor.predict(frame)
        return self.recorded[key]


def as_predictor(model: FramePredictor | DepthPoseEstimator) -> FramePredictor:
    """A `DepthPoseEstimator` wrapped as `EstimatorPredictor`; predictors as they are."""
    return EstimatorPredictor(model) if isinstance(model, DepthPoseEstimator) else model


def evaluate_depth_sequences(
    model: FramePredictor | DepthPoseEstimator,
    sequences: list[FrameSequence],
    options: DepthEvalOptions,
    progress: bool = True,
) -> dict:
    """Depth metrics (median-scaled, and metric when asked) plus the mean-depth baseline.

    Frames are predicted in time order, sequence by sequence (multi-view depth needs the
    frames before). Pixels the model gives no valid depth (NaN, inf) and frames it skips are
    left out of the metrics and counted: ``warnings`` says how many.

    Raises:
        DatasetError: no sequence has ground-truth depth.
        InputError: the model predicts no valid depth at any ground-truth pixel.
    """
    predictor = as_predictor(model)
    usable = [s for s in sequences if has_depth(s)]
    if not usable:
        raise DatasetError("no sequence has ground-truth depth; depth evaluation needs it")
    gts, preds = [], []
    frames = [(s, i) for s in usable for i in range(len(s))][: options.max_frames]
    skipped = 0
    for seq, i in tqdm(frames, desc="depth", disable=not progress):
        if i == 0:
            predictor.reset()
        frame = seq.load(i)
        prediction = predictor.predict(frame)
        gts.append(frame.depth_m)
        if prediction is None:
            skipped += 1
            preds.append(np.full(frame.depth_m.shape, np.nan, np.float32))
        else:
            preds.append(prediction.depth_m)
    kw = {
        "min_depth": options.min_depth,
        "max_depth": options.max_depth,
        "garg_crop": options.garg_crop,
    }
    result = evaluate_depth(gts, preds, metric=options.metric, **kw)
    baseline = mean_depth_baseline(gts, **kw)
    invalid = {"invalid": result.invalid_fraction}
    rows = {"model (median-scaled)": {**result.median_scaled, **invalid}}
    if result.metric is not None:
        rows["model (metric)"] = {**result.metric, **invalid}
    rows["baseline: mean depth"] = {**baseline.median_scaled, "invalid": 0.0}
    warnings = []
    if result.invalid_fraction > 0:
        warnings.append(
            f"the model gave no valid depth (NaN or inf) at {100 * result.invalid_fraction:.1f}% "
            f"of the ground-truth pixels ({result.images_without_prediction} of {len(gts)} "
            f"images had none, {skipped} frames were skipped); those pixels are left out of the "
            "metrics"
        )
    return {
        "model": result.to_dict(),
        "baseline_mean_depth": baseline.to_dict(),
        "options": vars(options),
        "table": format_table(rows),
        "warnings": warnings,
    }


def predict_trajectory(predictor: FramePredictor, seq: FrameSequence) -> tuple[np.ndarray, int]:
    """Chain the frame-to-frame motions over a whole sequence.

    Returns:
        (N, 4, 4) ``T_first_cam`` and the number of frames without a motion (skipped, or the
        chain was reset), for which the motion is taken as the identity.
    """
    predictor.reset()
    T_prev_cur, missing = [], 0
    for i in range(len(seq)):
        prediction = predictor.predict(seq.load(i))
        if i == 0:
            continue
        if prediction is None or prediction.T_prev_cur is None:
            missing += 1
            T_prev_cur.append(np.eye(4))
        else:
            T_prev_cur.append(prediction.T_prev_cur)
    predictor.reset()
    return chain_relative_poses(np.stack(T_prev_cur)), missing


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


def _poses_and_classical_vo(seq: FrameSequence) -> tuple[np.ndarray, np.ndarray, int]:
    """Ground-truth ``T_world_cam`` (N, 4, 4) and the ORB + essential-matrix motions (N-1, 4, 4)
    with their failed pairs, from one pass over the frames (each is loaded once)."""
    first = seq.load(0)
    poses = [first.T_world_cam]

    def images() -> Iterator[np.ndarray]:
        yield first.image
        for i in range(1, len(seq)):
            frame = seq.load(i)
            poses.append(frame.T_world_cam)
            yield frame.image

    motions, failed = orb_essential_motions(images(), first.K)
    return np.stack(poses), motions, failed


def evaluate_pose_sequences(
    model: FramePredictor | DepthPoseEstimator,
    sequences: list[FrameSequence],
    progress: bool = True,
) -> dict:
    """Legacy 5-frame snippet ATE and rotation error RE (SfMLearner's, per snippet, radians)
    from the chained frame-to-frame motions, and whole-trajectory metrics per sequence, with
    two baselines beside each: constant velocity and classical ORB + essential-matrix VO
    (`classical_vo.py`, unit steps; its failed frame pairs under ``classical_failed_pairs``).
    ``trajectory_xyz`` has the ground-truth positions and each method's, Sim(3)-aligned to them
    as the ATE aligns them (a monocular trajectory has no scale of its own)."""
    predictor = as_predictor(model)
    usable = [s for s in sequences if has_poses(s) and len(s) >= LEGACY_SNIPPET]
    if not usable:
        raise DatasetError(
            f"no sequence has ground-truth poses and at least {LEGACY_SNIPPET} frames"
        )
    report: dict = {"sequences": {}}
    rows: dict[str, dict[str, float]] = {}
    for seq in tqdm(usable, desc="pose", disable=not progress):
        gt_world, classical, failed = _poses_and_classical_vo(seq)
        gt = np.linalg.inv(gt_world[0]) @ gt_world
        pred, missing = predict_trajectory(predictor, seq)
        legacy_pred = np.linalg.inv(pred[:-1]) @ pred[1:]
        baseline = constant_velocity_baseline(gt)
        lengths = segment_lengths(gt)
        entry, xyz = {}, {"ground truth": gt[:, :3, 3].tolist()}
        for name, trajectory, legacy in (
            ("model", pred, legacy_pred),
            ("baseline: constant velocity", baseline, np.linalg.inv(baseline[:-1]) @ baseline[1:]),
            (CLASSICAL, chain_relative_poses(classical), classical),
        ):
            ate_mean, ate_std = evaluate_snippets(gt, legacy, LEGACY_SNIPPET)
            re_mean, re_std = evaluate_snippets_rotation(gt, legacy, LEGACY_SNIPPET)
            entry[name] = {
                "ate5_mean": ate_mean,
                "ate5_std": ate_std,
                "re_mean": re_mean,
                "re_std": re_std,
                **trajectory_metrics(gt, trajectory, lengths),
            }
            rows[f"{seq.name}: {name}"] = entry[name]
            xyz[name] = aligned_positions(gt, trajectory)[1].tolist()
        entry["frames_without_motion"] = missing
        entry["classical_failed_pairs"] = failed
        entry["segment_lengths_m"] = list(lengths)
        entry["trajectory_xyz"] = xyz
        report["sequences"][seq.name] = entry
    report["table"] = format_table(rows)
    return report

"""Depth and pose metrics as the field reports them (numpy, float64).

Depth follows SfMLearner / Monodepth2 (``evaluate_depth.py``): per-image median scaling, clipping
to ``[min_depth, max_depth]`` and per-image averaging. Pose offers SfMLearner's legacy snippet ATE,
Umeyama-aligned trajectory ATE and the KITTI odometry devkit's relative errors.

Poses are (N, 4, 4) ``T_world_cam`` matrices in the optical frame; translations are in metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sfm_ros.core.errors import InputError

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
KITTI_LENGTHS = (100, 200, 300, 400, 500, 600, 700, 800)
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # top, bottom, left, right


# ----------------------------------------------------------------------------------------- depth


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Standard depth errors between valid ground-truth and predicted depths.

    Args:
        gt: (M,) ground-truth depths in metres, all > 0.
        pred: (M,) predicted depths in metres, all > 0.

    Returns:
        ``{name: value}`` for every name in ``DEPTH_METRIC_NAMES``.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.ndim != 1 or gt.shape != pred.shape or gt.size == 0:
        raise InputError(
            f"depth errors need two non-empty 1-D arrays of equal length, got shapes "
            f"{gt.shape} and {pred.shape}"
        )
    if not (np.all(gt > 0) and np.all(pred > 0)):
        raise InputError("depth errors need positive, finite gt and pred depths (mask them first)")

    thresh = np.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": float(np.mean(np.abs(gt - pred) / gt)),
        "sq_rel": float(np.mean((gt - pred) ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean((gt - pred) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25**2)),
        "a3": float(np.mean(thresh < 1.25**3)),
    }


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (h, w) array to (height, width), float64.

    Pixel centres are at integer coordinates (half-pixel mapping, no anti-aliasing), matching
    ``cv2.resize(INTER_LINEAR)`` and ``F.interpolate(mode="bilinear", align_corners=False)``.
    """
    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
        x0 = np.floor(x).astype(np.int64)
        x1 = np.minimum(x0 + 1, n_in - 1)
        return x0, x1, x - x0

    y0, y1, wy = axis(height, h)
    x0, x1, wx = axis(width, w)
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


def valid_depth_mask(
    gt_depth: np.ndarray, min_depth: float = 1e-3, max_depth: float = 80.0, garg_crop: bool = False
) -> np.ndarray:
    """(H, W) bool mask of evaluated pixels: ``min_depth < gt < max_depth``, optionally inside
    the Garg/Eigen crop (rows 0.408..0.992 H, columns 0.036..0.964 W)."""
    gt_depth = np.asarray(gt_depth)
    mask = (gt_depth > min_depth) & (gt_depth < max_depth)
    if garg_crop:
        h, w = gt_depth.shape
        top, bottom, left, right = (np.array(GARG_CROP) * [h, h, w, w]).astype(np.int32)
        crop = np.zeros_like(mask)
        crop[top:bottom, left:right] = True
        mask &= crop
    return mask


@dataclass
class DepthEvalResult:
    """Depth metrics averaged per image.

    Attributes:
        median_scaled: metrics after per-image median scaling, or None if not asked.
        metric: metrics of the raw (metric-scale) predictions, or None if not asked.
        scale_ratio_mean: mean over images of ``median(gt) / median(pred)``.
        scale_ratio_std: their standard deviation (small = consistent scale).
        num_images: images that had at least one evaluated pixel (the others are skipped).
        invalid_fraction: fraction of the valid ground-truth pixels that had no valid prediction
            (NaN, inf or <= 0); they are left out of the metrics.
        images_without_prediction: images with valid ground truth but no valid prediction there.
    """

    median_scaled: dict[str, float] | None
    metric: dict[str, float] | None
    scale_ratio_mean: float
    scale_ratio_std: float
    num_images: int
    invalid_fraction: float
    images_without_prediction: int

    def to_dict(self) -> dict:
        return {
            "median_scaled": self.median_scaled,
            "metric": self.metric,
            "scale_ratio_mean": self.scale_ratio_mean,
            "scale_ratio_std": self.scale_ratio_std,
            "num_images": self.num_images,
            "invalid_fraction": self.invalid_fraction,
            "images_without_prediction": self.images_without_prediction,
        }


def evaluate_depth(
    gt_depths: Sequence[np.ndarray],
    pred_depths: Sequence[np.ndarray],
    *,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    garg_crop: bool = False,
    median_scaling: bool = True,
    metric: bool = False,
) -> DepthEvalResult:
    """Evaluate predicted depth maps against ground truth, the Monodepth2 way.

    Each prediction is resized (bilinear) to its ground truth's resolution, evaluated on
    ``valid_depth_mask`` pixels, optionally multiplied by ``median(gt) / median(pred)``, clipped to
    ``[min_depth, max_depth]``; metrics are averaged over images. Pixels without a valid
    prediction are left out and counted (``invalid_fraction``), never filled in.

    Args:
        gt_depths: list of (H, W) ground-truth depths in metres, 0 (or out of range) = unknown.
        pred_depths: list of (h, w) predicted depths in metres; NaN, inf or <= 0 = no prediction.
        median_scaling: report median-scaled metrics (``median_scaled``).
        metric: also report metrics without scaling (``metric``).

    Raises:
        InputError: no valid ground-truth pixel at all, or no valid prediction at any of them.
    """
    if len(gt_depths) != len(pred_depths) or len(gt_depths) == 0:
        raise InputError(
            f"need as many predictions as ground-truth depth maps (>0), got "
            f"{len(pred_depths)} and {len(gt_depths)}"
        )
    if not (median_scaling or metric):
        raise InputError("evaluate_depth: ask for median_scaling, metric or both")

    scaled_errors, metric_errors, ratios = [], [], []
    gt_pixels = invalid_pixels = images_without_prediction = 0
    for i, (gt, pred) in enumerate(zip(gt_depths, pred_depths, strict=True)):
        gt = np.asarray(gt, dtype=np.float64)
        pred = np.asarray(pred, dtype=np.float64)
        if gt.ndim != 2 or pred.ndim != 2:
            raise InputError(
                f"depth map {i}: expected 2-D (H, W) arrays, got {gt.shape} and {pred.shape}"
            )
        mask = valid_depth_mask(gt, min_depth, max_depth, garg_crop)
        if not mask.any():
            continue
        with np.errstate(invalid="ignore"):
            valid_pred = np.isfinite(pred) & (pred > 0)
        pred_full = resize_bilinear(np.where(valid_pred, pred, 0.0), *gt.shape)
        # A resized value counts when every pixel it interpolates (weight > 0) was valid.
        support = resize_bilinear(valid_pred.astype(np.float64), *gt.shape)
        predicted = mask & (support > 1.0 - 1e-9)
        gt_pixels += int(mask.sum())
        invalid_pixels += int(mask.sum() - predicted.sum())
        if not predicted.any():
            images_without_prediction += 1
            continue
        gt_valid = gt[predicted]
        pred_valid = pred_full[predicted]
        ratio = np.median(gt_valid) / np.median(pred_valid)
        ratios.append(ratio)
        if median_scaling:
            scaled = np.clip(pred_valid * ratio, min_depth, max_depth)
            scaled_errors.append(compute_depth_errors(gt_valid, scaled))
        if metric:
            clipped = np.clip(pred_valid, min_depth, max_depth)
            metric_errors.append(compute_depth_errors(gt_valid, clipped))
    if not gt_pixels:
        raise InputError("no ground-truth pixel lies within (min_depth, max_depth) in any image")
    if not ratios:
        raise InputError(
            f"the model predicts no valid depth: all {gt_pixels} evaluated pixels got NaN, inf or "
            "non-positive depth (a broken or diverged checkpoint?)"
        )

    def average(errors: list[dict[str, float]]) -> dict[str, float] | None:
        if not errors:
            return None
        return {k: float(np.mean([e[k] for e in errors])) for k in DEPTH_METRIC_NAMES}

    return DepthEvalResult(
        median_scaled=average(scaled_errors),
        metric=average(metric_errors),
        scale_ratio_mean=float(np.mean(ratios)),
        scale_ratio_std=float(np.std(ratios)),
        num_images=len(ratios),
        invalid_fraction=invalid_pixels / gt_pixels,
        images_without_prediction=images_without_prediction,
    )


def mean_depth_baseline(
    gt_depths: Sequence[np.ndarray],
    train_mean_depth: float | None = None,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    garg_crop: bool = False,
    median_scaling: bool = True,
    metric: bool = False,
) -> DepthEvalResult:
    """Metrics of the trivial baseline predicting one constant depth everywhere.

    The constant is ``train_mean_depth`` or, if None, the mean ground-truth depth over all valid
    pixels. With median scaling it becomes ``median(gt)`` of each image.
    """
    if train_mean_depth is None:
        valid = [
            np.asarray(gt, dtype=np.float64)[valid_depth_mask(gt, min_depth, max_depth, garg_crop)]
            for gt in gt_depths
        ]
        values = np.concatenate(valid) if valid else np.zeros(0)
        if values.size == 0:
            raise InputError("mean depth baseline: no valid ground-truth pixel")
        train_mean_depth = float(values.mean())
    preds = [np.full((1, 1), train_mean_depth) for _ in gt_depths]
    return evaluate_depth(
        gt_depths,
        preds,
        min_depth=min_depth,
        max_depth=max_depth,
        garg_crop=garg_crop,
        median_scaling=median_scaling,
        metric=metric,
    )


# ------------------------------------------------------------------------------------------ pose


def _check_poses(T: np.ndarray, name: str, min_len: int = 1) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4) or T.shape[0] < min_len:
        raise InputError(f"{name} must be (N, 4, 4) with N >= {min_len}, got {T.shape}")
    if not np.all(np.isfinite(T)):
        raise InputError(f"{name} has non-finite values")
    return T


def _check_points(x: np.ndarray, name: str, min_len: int = 1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] < min_len:
        raise InputError(f"{name} must be (N, 3) with N >= {min_len}, got {x.shape}")
    return x


def chain_relative_poses(T_prev_cur: np.ndarray) -> np.ndarray:
    """Chain relative motions (N-1, 4, 4) into poses (N, 4, 4) with ``T_world_cam[0] = I``."""
    T_prev_cur = _check_poses(T_prev_cur, "T_prev_cur", min_len=0)
    T_world_cam = np.empty((len(T_prev_cur) + 1, 4, 4))
    T_world_cam[0] = np.eye(4)
    for i, T in enumerate(T_prev_cur):
        T_world_cam[i + 1] = T_world_cam[i] @ T
    return T_world_cam


def rotation_error_deg(R_a: np.ndarray, R_b: np.ndarray) -> float | np.ndarray:
    """Angle in degrees of the rotation between ``R_a`` and ``R_b``, shape (..., 3, 3) (the
    rotation block of (..., 4, 4) poses is used). Float for a single pair, else an array."""
    R_a = np.asarray(R_a, dtype=np.float64)[..., :3, :3]
    R_b = np.asarray(R_b, dtype=np.float64)[..., :3, :3]
    trace = np.einsum("...ji,...ji->...", R_a, R_b)  # trace(R_a^T R_b)
    angle = np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))
    return float(angle) if np.ndim(angle) == 0 else angle


def direction_error_deg(t_a: np.ndarray, t_b: np.ndarray) -> float | np.ndarray:
    """Angle in degrees between translations ``t_a`` and ``t_b``, shape (..., 3); NaN where
    either has no length (a stop has no direction). Float for a single pair, else an array."""
    t_a = np.asarray(t_a, dtype=np.float64)
    t_b = np.asarray(t_b, dtype=np.float64)
    norms = np.linalg.norm(t_a, axis=-1) * np.linalg.norm(t_b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(norms > 0, (t_a * t_b).sum(-1) / norms, np.nan)
    angle = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    return float(angle) if np.ndim(angle) == 0 else angle


def snippet_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """SfMLearner's legacy snippet ATE (``kitti_eval/pose_evaluation_utils.compute_ate``).

    The first positions are made to coincide, the prediction is scaled by the least-squares
    factor ``sum(gt * pred) / sum(pred**2)``, and the result is ``sqrt(sum(err**2)) / N``.
    Note: this divides the root of the *sum* of squared errors by N, it is not an RMSE; we keep
    it so numbers compare with the published ones.

    Args:
        gt_xyz: (N, 3) ground-truth positions in the snippet's first camera frame.
        pred_xyz: (N, 3) predicted positions, same frame.
    """
    gt_xyz = _check_points(gt_xyz, "gt_xyz")
    pred_xyz = _check_points(pred_xyz, "pred_xyz")
    if gt_xyz.shape != pred_xyz.shape:
        raise InputError(f"gt_xyz {gt_xyz.shape} and pred_xyz {pred_xyz.shape} differ in shape")
    pred_xyz = pred_xyz + (gt_xyz[0] - pred_xyz[0])
    norm = np.sum(pred_xyz**2)
    scale = np.sum(gt_xyz * pred_xyz) / norm if norm > 0 else 0.0
    error = pred_xyz * scale - gt_xyz
    return float(np.sqrt(np.sum(error**2)) / len(gt_xyz))


def snippet_rotation_error(gt_T: np.ndarray, pred_T: np.ndarray) -> float:
    """SfMLearner's snippet rotation error RE (``compute_pose_error``), radians.

    The mean over the snippet's frames of ``atan2(s, c)`` for ``R = R_gt @ inv(R_pred)``, with
    ``s = ||(R01 - R10, R12 - R21, R02 - R20)||`` and ``c = trace(R) - 1``, exactly as the
    original computes it (poses in the snippet's first camera frame).

    Args:
        gt_T, pred_T: (N, 4, 4) (or (N, 3, 4)) poses of the snippet's frames.
    """
    R = np.asarray(gt_T)[:, :3, :3] @ np.linalg.inv(np.asarray(pred_T)[:, :3, :3])
    s = np.linalg.norm(
        np.stack([R[:, 0, 1] - R[:, 1, 0], R[:, 1, 2] - R[:, 2, 1], R[:, 0, 2] - R[:, 2, 0]]),
        axis=0,
    )
    c = np.trace(R, axis1=1, axis2=2) - 1
    return float(np.mean(np.arctan2(s, c)))


def _snippet_pairs(
    gt_T_world_cam: np.ndarray, pred: np.ndarray, snippet_length: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(gt, pred) (L, 4, 4) poses of every window, both relative to the window's first frame."""
    L = snippet_length
    gt = _check_poses(gt_T_world_cam, "gt_T_world_cam", min_len=max(L, 2))
    if L < 2:
        raise InputError(f"snippet_length must be >= 2, got {L}")
    n_windows = len(gt) - L + 1
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape == (len(gt) - 1, 4, 4):
        T_prev_cur = _check_poses(pred, "pred_T_prev_cur")
        snippets = [chain_relative_poses(T_prev_cur[i : i + L - 1]) for i in range(n_windows)]
    elif pred.shape == (n_windows, L, 4, 4):
        snippets = list(pred)
    else:
        raise InputError(
            f"predictions must be ({len(gt) - 1}, 4, 4) relative poses or ({n_windows}, {L}, 4, 4)"
            f" snippets for {len(gt)} ground-truth poses, got {pred.shape}"
        )
    return [(np.linalg.inv(gt[i]) @ gt[i : i + L], p) for i, p in enumerate(snippets)]


def evaluate_snippets(
    gt_T_world_cam: np.ndarray, pred: np.ndarray, snippet_length: int = 5
) -> tuple[float, float]:
    """Legacy SfMLearner pose protocol: mean and std of ``snippet_ate`` over every window.

    Args:
        gt_T_world_cam: (N, 4, 4) ground-truth poses.
        pred: either (N-1, 4, 4) relative motions ``T_prev_cur``, chained inside each window from
            its first frame, or (N-L+1, L, 4, 4) per-snippet poses ``T_first_cam`` (window ``i``
            starts at frame ``i``), as SfMLearner's per-snippet output files hold.
        snippet_length: L, frames per window.

    Returns:
        (mean, std) of the snippet ATE in metres (std with ddof=0).
    """
    pairs = _snippet_pairs(gt_T_world_cam, pred, snippet_length)
    errors = [snippet_ate(g[:, :3, 3], p[:, :3, 3]) for g, p in pairs]
    return float(np.mean(errors)), float(np.std(errors))


def evaluate_snippets_rotation(
    gt_T_world_cam: np.ndarray, pred: np.ndarray, snippet_length: int = 5
) -> tuple[float, float]:
    """Mean and std of SfMLearner's RE (`snippet_rotation_error`, radians) over every window;
    arguments as `evaluate_snippets`."""
    pairs = _snippet_pairs(gt_T_world_cam, pred, snippet_length)
    errors = [snippet_rotation_error(g, p) for g, p in pairs]
    return float(np.mean(errors)), float(np.std(errors))


def umeyama_alignment(
    src: np.ndarray, dst: np.ndarray, with_scale: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) with ``dst ≈ s * R @ src + t``.

    Args:
        src, dst: (N, 3) corresponding points.
        with_scale: estimate ``s`` (Sim(3)); otherwise ``s = 1`` (SE(3)).

    Returns:
        s (float), R (3, 3), t (3,). If ``src`` is a single repeated point, ``s = 0``.
    """
    src = _check_points(src, "src", min_len=2)
    dst = _check_points(dst, "dst", min_len=2)
    if src.shape != dst.shape:
        raise InputError(f"src {src.shape} and dst {dst.shape} differ in shape")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    U, D, Vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = U @ S @ Vt
    if with_scale:
        var_src = np.mean(np.sum(src_c**2, axis=1))
        s = float(np.sum(D * np.diag(S)) / var_src) if var_src > 0 else 0.0
    else:
        s = 1.0
    t = mu_dst - s * R @ mu_src
    return s, R, t


def aligned_positions(
    gt_T_world_cam: np.ndarray, pred_T_world_cam: np.ndarray, align: str = "sim3"
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) ground-truth positions and (N, 3) predicted positions aligned to them.

    ``align``: "sim3" (Umeyama with scale, monocular), "se3" (rigid), "scale" (least-squares
    scale about the origin only) or "none".
    """
    gt = _check_poses(gt_T_world_cam, "gt_T_world_cam")[:, :3, 3]
    pred = _check_poses(pred_T_world_cam, "pred_T_world_cam")[:, :3, 3]
    if gt.shape != pred.shape:
        raise InputError(f"gt has {len(gt)} poses but pred has {len(pred)}")
    if align in ("sim3", "se3"):
        s, R, t = umeyama_alignment(pred, gt, with_scale=align == "sim3")
        pred = s * pred @ R.T + t
    elif align == "scale":
        norm = np.sum(pred**2)
        pred = pred * (np.sum(gt * pred) / norm if norm > 0 else 0.0)
    elif align != "none":
        raise InputError(f"align must be 'sim3', 'se3', 'scale' or 'none', got {align!r}")
    return gt, pred


def rmse_ate(
    gt_T_world_cam: np.ndarray, pred_T_world_cam: np.ndarray, align: str = "sim3"
) -> float:
    """Root mean square of position errors (metres) after aligning the prediction to the
    ground truth (`aligned_positions`)."""
    gt, pred = aligned_positions(gt_T_world_cam, pred_T_world_cam, align)
    return float(np.sqrt(np.mean(np.sum((pred - gt) ** 2, axis=1))))


class KittiRpe(NamedTuple):
    """KITTI odometry errors; both are NaN when ``num_segments == 0`` (trajectory too short)."""

    t_err_percent: float
    r_err_deg_per_100m: float
    num_segments: int


def kitti_rpe(
    gt_T_world_cam: np.ndarray,
    pred_T_world_cam: np.ndarray,
    lengths: Sequence[float] = KITTI_LENGTHS,
    step_frames: int = 10,
    align_scale: bool = False,
) -> KittiRpe:
    """Relative errors of the KITTI odometry devkit (``evaluate_odometry.cpp``).

    For every ``step_frames``-th first frame and each length, the last frame is the first one
    whose travelled ground-truth distance exceeds the length; the error pose is
    ``inv(T_pred_rel) @ T_gt_rel``; its translation norm and rotation angle are divided by the
    length and averaged over all segments.

    Args:
        gt_T_world_cam, pred_T_world_cam: (N, 4, 4) poses.
        lengths: segment lengths in metres; pass shorter ones (e.g. 10, 20, ...) for short runs.
        step_frames: spacing of the first frames (10 = one second on KITTI).
        align_scale: first Sim(3)-align predicted positions to the ground truth (monocular
            predictions), which rescales their translations.

    Returns:
        ``KittiRpe(t_err_percent, r_err_deg_per_100m, num_segments)``.
    """
    gt = _check_poses(gt_T_world_cam, "gt_T_world_cam")
    pred = _check_poses(pred_T_world_cam, "pred_T_world_cam")
    if gt.shape != pred.shape:
        raise InputError(f"gt has {len(gt)} poses but pred has {len(pred)}")
    if step_frames < 1 or not lengths or min(lengths) <= 0:
        raise InputError("kitti_rpe needs step_frames >= 1 and positive segment lengths")
    if align_scale:
        s, R, t = umeyama_alignment(pred[:, :3, 3], gt[:, :3, 3], with_scale=True)
        aligned = pred.copy()
        aligned[:, :3, :3] = R @ pred[:, :3, :3]
        aligned[:, :3, 3] = s * pred[:, :3, 3] @ R.T + t
        pred = aligned

    steps = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(steps)])
    t_errs, r_errs = [], []
    for first in range(0, len(gt), step_frames):
        for length in lengths:
            beyond = np.nonzero(dist[first:] > dist[first] + length)[0]
            if beyond.size == 0:
                continue
            last = first + beyond[0]
            gt_rel = np.linalg.inv(gt[first]) @ gt[last]
            pred_rel = np.linalg.inv(pred[first]) @ pred[last]
            error = np.linalg.inv(pred_rel) @ gt_rel
            t_errs.append(np.linalg.norm(error[:3, 3]) / length)
            r_errs.append(np.radians(rotation_error_deg(error, np.eye(3))) / length)
    if not t_errs:
        return KittiRpe(float("nan"), float("nan"), 0)
    return KittiRpe(
        float(np.mean(t_errs) * 100.0),
        float(np.degrees(np.mean(r_errs)) * 100.0),
        len(t_errs),
    )


def constant_velocity_baseline(gt_T_world_cam: np.ndarray) -> np.ndarray:
    """Trivial pose baseline: from the first ground-truth pose, move straight along the optical
    z axis at the mean ground-truth speed (metres per frame), never rotating.

    Returns:
        (N, 4, 4) predicted ``T_world_cam``.
    """
    gt = _check_poses(gt_T_world_cam, "gt_T_world_cam")
    steps = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)
    speed = float(steps.mean()) if steps.size else 0.0
    T_first_cam = np.tile(np.eye(4), (len(gt), 1, 1))
    T_first_cam[:, 2, 3] = speed * np.arange(len(gt))
    return gt[0] @ T_first_cam


# ---------------------------------------------------------------------------------------- report


def format_table(rows: dict[str, dict[str, float]], precision: int = 4) -> str:
    """Aligned text table: one row per method, one column per metric (first-seen order);
    missing values print as "-"."""
    columns: list[str] = []
    for metrics in rows.values():
        columns += [k for k in metrics if k not in columns]
    header = ["method", *columns]
    body = [
        [name, *(f"{m[c]:.{precision}f}" if c in m else "-" for c in columns)]
        for name, m in rows.items()
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

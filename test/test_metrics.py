"""Tests of sfm_ros.core.metrics against hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError, SfmError
from sfm_ros.core.metrics import (
    DEPTH_METRIC_NAMES,
    chain_relative_poses,
    compute_depth_errors,
    constant_velocity_baseline,
    direction_error_deg,
    evaluate_depth,
    evaluate_snippets,
    format_table,
    kitti_rpe,
    mean_depth_baseline,
    resize_bilinear,
    rmse_ate,
    rotation_error_deg,
    snippet_ate,
    umeyama_alignment,
    valid_depth_mask,
)


def rot(axis, angle_rad):
    """Rodrigues rotation matrix (3, 3)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * Kx + (1 - math.cos(angle_rad)) * Kx @ Kx


def pose(R=None, t=(0.0, 0.0, 0.0)):
    T = np.eye(4)
    T[:3, :3] = np.eye(3) if R is None else R
    T[:3, 3] = t
    return T


def random_trajectory(n, seed=0):
    """(n, 4, 4) poses: a wobbly forward drive starting at the identity."""
    rng = np.random.default_rng(seed)
    rel = [
        pose(rot(rng.normal(size=3), rng.uniform(0, 0.1)), rng.normal([0, 0, 1], 0.2))
        for _ in range(n - 1)
    ]
    return chain_relative_poses(np.stack(rel))


def relative(T_world_cam):
    return np.linalg.inv(T_world_cam[:-1]) @ T_world_cam[1:]


# ----------------------------------------------------------------------------------------- depth


def test_depth_errors_hand_computed():
    errors = compute_depth_errors(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 8.0]))
    assert set(errors) == set(DEPTH_METRIC_NAMES)
    assert errors["abs_rel"] == pytest.approx((0 + 1 / 2 + 4 / 4) / 3)
    assert errors["sq_rel"] == pytest.approx((0 + 1 / 2 + 16 / 4) / 3)
    assert errors["rmse"] == pytest.approx(math.sqrt((0 + 1 + 16) / 3))
    assert errors["rmse_log"] == pytest.approx(math.sqrt(2 * math.log(2) ** 2 / 3))
    assert errors["a1"] == pytest.approx(1 / 3)  # thresholds 1, 2, 2


def test_depth_thresholds_hand_computed():
    # max(gt/pred, pred/gt) = 1.1, 1.4, 1.8, 3.0 against 1.25, 1.5625, 1.953125
    errors = compute_depth_errors(np.ones(4), np.array([1.1, 1.4, 1.8, 3.0]))
    assert (errors["a1"], errors["a2"], errors["a3"]) == (0.25, 0.5, 0.75)


def test_depth_errors_reject_bad_input():
    with pytest.raises(InputError):
        compute_depth_errors(np.ones(3), np.ones(4))
    with pytest.raises(SfmError):
        compute_depth_errors(np.array([1.0, 0.0]), np.ones(2))


def test_resize_bilinear_matches_torch():
    image = np.random.default_rng(0).uniform(1, 5, size=(5, 7))
    for size in [(12, 20), (3, 4)]:
        expected = F.interpolate(
            torch.from_numpy(image)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(resize_bilinear(image, *size), expected, atol=1e-12)


def test_median_scaling_makes_scaled_prediction_perfect():
    rng = np.random.default_rng(1)
    gts = [rng.uniform(1, 30, size=(6, 8)) for _ in range(2)]
    preds = [gts[0] / 3, gts[1] * 2]
    result = evaluate_depth(gts, preds, metric=True)
    assert result.median_scaled["abs_rel"] == pytest.approx(0, abs=1e-12)
    assert result.median_scaled["a1"] == 1.0
    assert result.scale_ratio_mean == pytest.approx((3 + 0.5) / 2)
    assert result.scale_ratio_std == pytest.approx(1.25)
    # Without scaling: |gt - gt/3| / gt = 2/3 and |gt - 2 gt| / gt = 1.
    assert result.metric["abs_rel"] == pytest.approx((2 / 3 + 1) / 2)
    assert result.to_dict()["num_images"] == 2


def test_scaled_prediction_is_clipped_to_max_depth():
    gt = np.array([[10.0, 10.0], [10.0, 70.0]])
    pred = np.array([[1.0, 1.0], [1.0, 100.0]])  # ratio 10 -> 1000 m, clipped to 80 m
    result = evaluate_depth([gt], [pred])
    assert result.median_scaled["abs_rel"] == pytest.approx((10 / 70) / 4)
    assert result.metric is None


def test_depth_images_without_valid_pixels_are_skipped():
    gt = np.full((4, 4), 5.0)
    result = evaluate_depth([gt, np.zeros((4, 4))], [gt, gt])
    assert result.num_images == 1
    with pytest.raises(InputError):
        evaluate_depth([np.zeros((4, 4))], [gt])
    with pytest.raises(InputError):
        evaluate_depth([gt], [np.full((4, 4), np.nan)])


def test_pixels_without_prediction_are_counted_not_filled():
    gt = np.full((4, 4), 10.0)
    pred = np.full((4, 4), 10.0)
    pred[0, :] = np.nan  # a row of NaN
    pred[1, 0], pred[1, 1] = np.inf, -1.0
    result = evaluate_depth([gt], [pred], metric=True)
    assert result.invalid_fraction == pytest.approx(6 / 16)
    assert result.images_without_prediction == 0 and result.num_images == 1
    # The remaining pixels are exact: the invalid ones did not leak into them, nor were
    # they replaced by some depth that would change the errors.
    assert result.metric["abs_rel"] == 0.0 and result.median_scaled["abs_rel"] == 0.0
    assert result.to_dict()["invalid_fraction"] == pytest.approx(6 / 16)

    half = evaluate_depth([gt, gt], [pred, np.full((4, 4), np.nan)])
    assert half.images_without_prediction == 1 and half.num_images == 1
    assert half.invalid_fraction == pytest.approx((6 + 16) / 32)
    with pytest.raises(InputError, match="predicts no valid depth: all 32 evaluated pixels"):
        evaluate_depth([gt, gt], [np.full((4, 4), np.nan), np.zeros((2, 2))])


def test_invalid_predictions_do_not_spread_when_resized():
    gt = np.full((8, 8), 10.0)
    pred = np.full((4, 4), 5.0)
    pred[0, 0] = np.nan  # covers the 2x2 top-left pixels and blurs into their neighbours
    result = evaluate_depth([gt], [pred], metric=True)
    assert 4 / 64 <= result.invalid_fraction <= 9 / 64
    assert result.metric["abs_rel"] == pytest.approx(0.5)


def test_garg_crop_mask():
    gt = np.full((100, 100), 5.0)
    gt[60, 60], gt[61, 61] = 0.0, 90.0
    mask = valid_depth_mask(gt, garg_crop=True)
    # rows int(40.8)=40 .. int(99.19)=99, columns int(3.59)=3 .. int(96.4)=96, minus two pixels
    assert mask.sum() == 59 * 93 - 2
    assert not mask[39, 50] and mask[40, 50] and mask[98, 50] and not mask[99, 50]
    assert not mask[50, 2] and mask[50, 3] and mask[50, 95] and not mask[50, 96]
    assert valid_depth_mask(gt).sum() == 100 * 100 - 2

    pred = gt.copy()
    pred[:40] = 50.0  # wrong only above the crop
    pred[gt == 0] = 1.0
    pred[gt > 80] = 1.0
    assert evaluate_depth([gt], [pred], garg_crop=True).median_scaled["abs_rel"] == 0
    assert evaluate_depth([gt], [pred]).median_scaled["abs_rel"] > 0


def test_mean_depth_baseline():
    gts = [np.full((4, 4), 2.0), np.full((4, 4), 4.0)]
    result = mean_depth_baseline(gts, metric=True)  # predicts 3 m everywhere
    assert result.metric["abs_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert result.median_scaled["abs_rel"] == pytest.approx(0)  # constant images
    assert result.scale_ratio_mean == pytest.approx(1.0)
    assert result.scale_ratio_std == pytest.approx(1 / 3)
    given = mean_depth_baseline(gts, train_mean_depth=4.0, median_scaling=False, metric=True)
    assert given.median_scaled is None
    assert given.metric["abs_rel"] == pytest.approx((1 + 0) / 2)


# ------------------------------------------------------------------------------------------ pose


def test_snippet_ate_hand_computed():
    gt = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3]])
    pred = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 3]])
    # scale = (1 + 2 + 9) / (1 + 1 + 9) = 12/11; errors 0, 1/11, -10/11, 3/11
    # sum of squares 110/121 = 10/11; legacy: sqrt of the SUM divided by N (not an RMSE)
    assert snippet_ate(gt, pred) == pytest.approx(math.sqrt(10 / 11) / 4)


def test_snippet_ate_zero_for_scaled_offset_copy():
    gt = np.random.default_rng(2).normal(size=(5, 3))
    gt[0] = 0.0
    assert snippet_ate(gt, 0.3 * gt + [1.0, -2.0, 5.0]) == pytest.approx(0, abs=1e-12)
    assert snippet_ate(gt, gt[::-1]) > 0.01


def test_evaluate_snippets_relative_and_per_snippet():
    gt = random_trajectory(9, seed=3)
    rel = relative(gt)
    scaled = rel.copy()
    scaled[:, :3, 3] *= 0.3  # monocular scale is free per snippet
    mean, std = evaluate_snippets(gt, scaled, snippet_length=5)
    assert mean == pytest.approx(0, abs=1e-9) and std == pytest.approx(0, abs=1e-9)

    noisy = rel.copy()
    noisy[:, :3, 3] += np.random.default_rng(4).normal(0, 0.2, size=(8, 3))
    mean, std = evaluate_snippets(gt, noisy, snippet_length=5)
    assert mean > 0.005 and std > 0
    snippets = np.stack([chain_relative_poses(noisy[i : i + 4]) for i in range(5)])
    assert evaluate_snippets(gt, snippets, snippet_length=5) == pytest.approx((mean, std))
    with pytest.raises(InputError):
        evaluate_snippets(gt, noisy[:-1], snippet_length=5)


def test_umeyama_recovers_sim3():
    src = np.random.default_rng(5).normal(size=(10, 3))
    R = rot([1.0, 2.0, -0.5], 0.7)
    t = np.array([1.0, -3.0, 2.0])
    s_est, R_est, t_est = umeyama_alignment(src, 2.5 * src @ R.T + t)
    assert s_est == pytest.approx(2.5)
    np.testing.assert_allclose(R_est, R, atol=1e-10)
    np.testing.assert_allclose(t_est, t, atol=1e-10)
    s_rigid, R_rigid, _ = umeyama_alignment(src, src @ R.T + t, with_scale=False)
    assert s_rigid == 1.0
    np.testing.assert_allclose(R_rigid, R, atol=1e-10)


def test_rmse_ate_alignment_invariance():
    gt = random_trajectory(20, seed=6)
    pred = gt.copy()
    pred[:, :3, 3] += np.random.default_rng(7).normal(0, 0.3, size=(20, 3))
    S = pose(rot([0.0, 1.0, 0.3], 1.1), [4.0, -1.0, 2.0])
    moved = S @ pred
    scaled_moved = moved.copy()
    scaled_moved[:, :3, 3] *= 0.2
    error = rmse_ate(gt, pred, align="sim3")
    assert error > 0.05
    assert rmse_ate(gt, scaled_moved, align="sim3") == pytest.approx(error)
    assert rmse_ate(gt, moved, align="se3") == pytest.approx(rmse_ate(gt, pred, align="se3"))
    assert rmse_ate(gt, moved, align="none") > error
    half = gt.copy()
    half[:, :3, 3] *= 0.5
    assert rmse_ate(gt, half, align="scale") == pytest.approx(0, abs=1e-12)
    assert rmse_ate(gt, gt, align="none") == 0
    with pytest.raises(InputError):
        rmse_ate(gt, pred, align="sim2")


def straight_line(n, speed, start=None):
    """(n, 4, 4) poses driving along their own optical z axis at `speed` metres per frame."""
    start = np.eye(4) if start is None else start
    return np.stack([start @ pose(t=(0.0, 0.0, i * speed)) for i in range(n)])


def test_kitti_rpe_hand_computed():
    gt = straight_line(30, 1.0)
    # lengths (10,), first frames 0, 10, 20: last frames 11, 21, none -> 2 segments
    perfect = kitti_rpe(gt, gt, lengths=(10,))
    assert perfect == (0.0, 0.0, 2)
    fast = kitti_rpe(gt, straight_line(30, 1.1), lengths=(10,))
    assert fast.t_err_percent == pytest.approx(1.1 / 10 * 100)  # 12.1 m vs 11 m over 10 m
    assert fast.r_err_deg_per_100m == pytest.approx(0, abs=1e-6)
    assert fast.num_segments == 2
    aligned = kitti_rpe(gt, straight_line(30, 0.25), lengths=(10,), align_scale=True)
    assert aligned.t_err_percent == pytest.approx(0, abs=1e-8)


def test_kitti_rpe_rotation_and_short_trajectories():
    gt = random_trajectory(40, seed=8)
    assert kitti_rpe(gt, gt, lengths=(5, 10)).t_err_percent == pytest.approx(0, abs=1e-8)
    rel = relative(gt)
    rel[5, :3, :3] = rot([0.0, 1.0, 0.0], 0.05) @ rel[5, :3, :3]
    turned = kitti_rpe(gt, chain_relative_poses(rel), lengths=(5, 10))
    assert turned.t_err_percent > 0 and turned.r_err_deg_per_100m > 0
    short = kitti_rpe(gt, gt)  # default lengths 100..800 m, trajectory ~40 m
    assert short.num_segments == 0
    assert math.isnan(short.t_err_percent) and math.isnan(short.r_err_deg_per_100m)


def test_constant_velocity_baseline_on_straight_line():
    start = pose(rot([0.2, 1.0, 0.0], 0.8), [3.0, 1.0, -2.0])
    gt = straight_line(12, 0.7, start)
    baseline = constant_velocity_baseline(gt)
    np.testing.assert_allclose(baseline, gt, atol=1e-12)
    assert rmse_ate(gt, baseline, align="none") == pytest.approx(0, abs=1e-12)
    curved = random_trajectory(12, seed=9)
    assert rmse_ate(curved, constant_velocity_baseline(curved), align="se3") > 0.01


def test_chain_relative_poses_inverts_relative():
    T = random_trajectory(7, seed=10)
    np.testing.assert_allclose(chain_relative_poses(relative(T)), T, atol=1e-12)
    np.testing.assert_array_equal(chain_relative_poses(np.zeros((0, 4, 4))), np.eye(4)[None])
    with pytest.raises(InputError):
        chain_relative_poses(np.zeros((3, 3, 3)))


def test_rotation_error_deg():
    R = rot([0.0, 0.0, 1.0], math.radians(30))
    assert rotation_error_deg(np.eye(3), R) == pytest.approx(30)
    assert rotation_error_deg(R, R) == pytest.approx(0, abs=1e-5)
    batch = rotation_error_deg(np.stack([np.eye(3)] * 2), np.stack([R, R.T]))
    np.testing.assert_allclose(batch, [30, 30])


def test_direction_error_deg_ignores_length_and_has_none_for_a_stop():
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    g = np.array([[3.0, 3.0, 0.0], [0.0, 0.0, -0.5], [0.0, 0.0, 1.0]])
    angles = direction_error_deg(t, g)
    np.testing.assert_allclose(angles[:2], [45.0, 180.0], atol=1e-6)
    assert np.isnan(angles[2])
    assert direction_error_deg(t[0], 7 * t[0]) == pytest.approx(0.0, abs=1e-5)


def test_format_table_contains_names():
    table = format_table(
        {"sfmlearner": {"abs_rel": 0.183, "a1": 0.73}, "mean depth": {"abs_rel": 0.41}}
    )
    lines = table.splitlines()
    for name in ["method", "sfmlearner", "mean depth", "abs_rel", "a1", "0.1830", "-"]:
        assert name in table
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1


def test_snippet_rotation_error_is_sfmlearners_re():
    from sfm_ros.core.lie import se3_exp
    from sfm_ros.core.metrics import evaluate_snippets_rotation, snippet_rotation_error

    rng = np.random.default_rng(3)
    gt = se3_exp(np.concatenate([rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 0.2], 1))
    assert snippet_rotation_error(gt, gt) == pytest.approx(0.0, abs=1e-12)
    about_y = se3_exp(np.array([[0, 0, 0, 0, 0.01, 0]] * 5))  # 0.01 rad on every frame
    assert snippet_rotation_error(gt, gt @ about_y) == pytest.approx(0.01, rel=1e-3)
    # The original's s is not 2 sin(angle) for a general axis: same formula, same numbers.
    R = gt[1, :3, :3] @ np.linalg.inv(gt[2, :3, :3])
    s = np.linalg.norm([R[0, 1] - R[1, 0], R[1, 2] - R[2, 1], R[0, 2] - R[2, 0]])
    expected = np.arctan2(s, np.trace(R) - 1)
    assert snippet_rotation_error(gt[1:2], gt[2:3]) == pytest.approx(expected)
    world = np.repeat(np.eye(4)[None], 7, axis=0)
    world[:, 0, 3] = np.arange(7.0)
    T_prev_cur = np.linalg.inv(world[:-1]) @ world[1:]
    assert evaluate_snippets_rotation(world, T_prev_cur) == pytest.approx((0.0, 0.0), abs=1e-12)
    mean, _ = evaluate_snippets_rotation(world, T_prev_cur @ about_y[:1])
    assert mean > 0.005  # every step turns 0.01 rad more than the truth

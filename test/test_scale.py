"""Metric scale: ground-plane fit on synthetic streets, running filter, odometry ratio."""

from __future__ import annotations

import numpy as np
import pytest

from sfm_ros.core.errors import InputError
from sfm_ros.core.scale import OdometryScale, ScaleFilter, ground_plane_scale
from sfm_ros.core.synthetic import render_sequence

UNKNOWN = 0.37  # network depth = UNKNOWN * metric depth


@pytest.fixture(scope="module")
def street():
    return render_sequence("street", 4, seed=1, height=32, width=96)


def plane_depth(K: np.ndarray, height: int, width: int, cam_h: float, pitch_deg: float):
    """Depth of a ground plane cam_h below a camera pitched down by pitch_deg (0 where sky)."""
    p = np.deg2rad(pitch_deg)
    n = np.array([0.0, np.cos(p), -np.sin(p)])  # ground normal (down) in the pitched camera
    v, u = np.mgrid[0:height, 0:width]
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)])
    denom = np.einsum("i,ihw->hw", n, rays)
    return np.where(denom > 1e-6, cam_h / np.maximum(denom, 1e-6), 0.0).astype(np.float32)


def test_camera_height_recovers_metric_depth_on_street(street):
    for depth_gt in street.depth_m:
        est = ground_plane_scale(depth_gt * UNKNOWN, street.K, street.camera_height_m)
        assert est.valid and est.inlier_ratio > 0.3
        assert est.normal[1] > 0.99  # optical +y is down
        metric = est.scale * depth_gt * UNKNOWN
        valid = depth_gt > 0
        rel = np.abs(metric[valid] - depth_gt[valid]) / depth_gt[valid]
        assert np.median(rel) < 0.05 and est.scale * UNKNOWN == pytest.approx(1.0, rel=0.05)


def test_outliers_and_nan_do_not_break_the_fit(street):
    rng = np.random.default_rng(0)
    depth = street.depth_m[0] * UNKNOWN
    depth[rng.random(depth.shape) < 0.2] = rng.uniform(0.1, 5.0)  # 20 % garbage
    depth[rng.random(depth.shape) < 0.1] = np.nan
    est = ground_plane_scale(depth, street.K, street.camera_height_m, seed=3)
    assert est.valid and est.scale * UNKNOWN == pytest.approx(1.0, rel=0.05)


def test_tilt_tolerance_and_walls(street):
    K, (h, w) = street.K, street.depth_m.shape[1:]
    pitched = plane_depth(K, h, w, cam_h=2.0, pitch_deg=10.0)
    assert ground_plane_scale(pitched * 3.0, K, 2.0, region=(0.5, 1.0)).scale == pytest.approx(
        1 / 3.0, rel=1e-3
    )
    assert not ground_plane_scale(pitched, K, 2.0, region=(0.5, 1.0), max_tilt_deg=5.0).valid
    wall = np.full((h, w), 4.0, dtype=np.float32)  # a wall facing the camera is not ground
    est = ground_plane_scale(wall, K, 1.5)
    assert not est.valid and np.isnan(est.scale)
    assert not ground_plane_scale(np.zeros((h, w)), K, 1.5).valid  # nothing valid at all


def test_ground_plane_bad_inputs():
    K = np.eye(3)
    with pytest.raises(InputError, match="camera_height_m"):
        ground_plane_scale(np.ones((4, 4)), K, 0.0)
    with pytest.raises(InputError, match="region"):
        ground_plane_scale(np.ones((4, 4)), K, 1.5, region=(0.8, 0.5))
    with pytest.raises(InputError, match="shape"):
        ground_plane_scale(np.ones(4), K, 1.5)


def test_scale_filter_median_rejects_outliers():
    f = ScaleFilter(window=5)
    assert f.value is None and f.update(None) is None
    for s in (2.0, 2.1, 1.9, 50.0, float("nan"), -1.0, 2.05):
        f.update(s)
    assert f.value == pytest.approx(2.05, rel=1e-9)  # median of 2, 2.1, 1.9, 50, 2.05
    ema = ScaleFilter(method="ema", alpha=0.5, min_samples=1)
    ema.update(1.0)
    assert ema.update(4.0) == pytest.approx(2.0)  # halfway in log space
    with pytest.raises(InputError):
        ScaleFilter(method="mean")
    with pytest.raises(InputError, match="min_samples"):
        ScaleFilter(window=2, min_samples=3)


@pytest.mark.parametrize("method", ["median", "ema"])
def test_scale_filter_gives_a_scale_only_after_consistent_evidence(method):
    f = ScaleFilter(method=method, min_samples=3, tolerance=0.1)
    assert f.update(2.0) is None  # one ground-plane fit is no evidence
    assert f.update(5.0) is None  # disagrees
    assert f.update(2.1) is None  # two consistent estimates
    assert f.consistent_samples == 2
    value = f.update(1.95)  # the third one within 10 %
    assert value is not None and 1.95 <= value <= 2.6
    if method == "median":
        assert value == pytest.approx(np.sqrt(2.0 * 2.1))
    assert f.update(None) == value  # once established, a missing estimate keeps it
    f.reset()
    assert f.value is None and f.update(2.0) is None


def test_odometry_scale_ratio_of_travelled_distance():
    os_ = OdometryScale(window=5, min_distance_m=0.2)
    speed = 2.0  # m/s along a curve
    for i in range(60):  # 50 Hz external odometry for 1.2 s
        t = i * 0.02
        os_.add_reference(int(t * 1e9), [np.sin(t) * speed, (1 - np.cos(t)) * speed, 0.0])
    out = [os_.add_visual(int(i * 0.1e9), speed * 0.1 * UNKNOWN) for i in range(10)]
    assert out[0] is None  # one frame is not a window
    assert out[-1] == pytest.approx(1.0 / UNKNOWN, rel=0.01)
    assert os_.add_visual(int(5e9), 0.1) is None  # external data does not cover this time


def test_odometry_scale_needs_motion():
    os_ = OdometryScale(window=3)
    for i in range(20):
        os_.add_reference(int(i * 0.05e9), [0.0, 0.0, 0.0])
    assert all(os_.add_visual(int(i * 0.1e9), 0.05) is None for i in range(5))

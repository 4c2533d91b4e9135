"""The rotation-only motion model and its selection against the essential matrix."""

import numpy as np
import pytest

from sfm_ros.core.classical_vo import RELIABLE_INLIERS, OrbMotion, sampson_residuals
from sfm_ros.core.lie import so3_exp
from sfm_ros.core.metrics import rotation_error_deg
from sfm_ros.core.pure_rotation import kabsch, rotation_only, transfer_residuals, turns_only
from sfm_ros.core.synthetic import render_turn_on_the_spot

K = np.array([[500.0, 0, 320], [0, 500.0, 120], [0, 0, 1]])


def _matches(rng, R, t, n=300, noise_px=0.3, outliers=60):
    """Pixels of n points 4-40 m ahead in a camera and in one moved by x_b = R x_a + t."""
    X = np.c_[rng.uniform(-8, 8, n), rng.uniform(-2, 2, n), rng.uniform(4, 40, n)]
    project = lambda P: (P / P[:, 2:]) @ K.T  # noqa: E731
    pa = project(X)[:, :2] + rng.normal(0, noise_px, (n, 2))
    pb = project(X @ R.T + t)[:, :2] + rng.normal(0, noise_px, (n, 2))
    pb[:outliers] = rng.uniform([0, 0], [640, 240], (outliers, 2))  # mismatched
    return pa, pb


def test_kabsch_gives_the_rotation_of_exact_rays_and_never_a_reflection():
    rng = np.random.default_rng(0)
    R = so3_exp(np.radians([5.0, -20.0, 3.0]))
    f_a = rng.normal(size=(10, 3))
    assert rotation_error_deg(kabsch(f_a, f_a @ R.T), R) < 1e-6
    mirrored = kabsch(f_a, f_a * [1, 1, -1])
    assert np.linalg.det(mirrored) == pytest.approx(1.0)


def test_a_pure_rotation_is_recovered_and_chosen_over_the_essential_matrix():
    rng = np.random.default_rng(1)
    R = so3_exp(np.radians([0.4, 3.0, -0.3]))
    pa, pb = _matches(rng, R, np.zeros(3))
    found, inliers = rotation_only(pa, pb, K)
    assert rotation_error_deg(found, R) < 0.05
    assert not inliers[:60].any() and inliers[60:].mean() > 0.9  # the mismatches are out
    assert transfer_residuals(pa[60:], pb[60:], K, found).mean() < 1.0
    # any translation direction fits a turn: the essential matrix with the true rotation and
    # a made-up direction explains the matches as well, but with more parameters
    sampson = sampson_residuals(pa, pb, K, R, np.array([0.0, 0.0, 1.0]))
    assert turns_only(sampson, pa, pb, K, found)
    assert rotation_only(pa[:2], pb[:2], K) is None


def test_a_camera_that_moves_is_not_taken_for_one_that_turns():
    rng = np.random.default_rng(2)
    R = so3_exp(np.radians([0.4, 3.0, -0.3]))
    t = np.array([0.0, 0.0, -1.0])  # a metre forward (x_b = R x_a + t)
    pa, pb = _matches(rng, R, t)
    found, _ = rotation_only(pa, pb, K)
    assert not turns_only(sampson_residuals(pa, pb, K, R, t), pa, pb, K, found)


def test_a_stream_gives_the_turns_of_a_robot_turning_on_the_spot_in_a_corridor():
    # textureless walls: the essential matrix keeps too few inliers on the turn frames (its
    # translation is free), the rotation alone keeps most matches
    seq, turn = render_turn_on_the_spot("corridor", 1000, 128, 416, before=3, turn_deg=9.0)
    true = np.linalg.inv(seq.T_world_cam[1:]) @ seq.T_world_cam[:-1]  # x_cur = T x_prev
    streams = {flag: OrbMotion(min_inliers=RELIABLE_INLIERS, detect_turns=flag) for flag in (0, 1)}
    turned, plain = [], []
    for k, image in enumerate(seq.images):
        T, T_plain = (streams[flag].step(image, seq.K) for flag in (1, 0))
        if k - 1 not in turn or k not in turn:
            assert not streams[1].last_turns_only or T is None
            continue
        assert streams[1].last_turns_only and not streams[0].last_turns_only
        assert np.allclose(T[:3, 3], 0) and np.isnan(streams[1].last_length_ratio)
        turned.append(rotation_error_deg(T[:3, :3].T, true[k - 1][:3, :3]))
        plain.append(T_plain is not None)
    assert len(turned) == len(turn) - 1 and max(turned) < 0.3
    assert sum(plain) < len(plain) / 2  # the essential matrix alone loses most of the turn

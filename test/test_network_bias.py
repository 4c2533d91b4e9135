"""The network's running offsets from geometry, direction and rotation, and its rotation's
gain (`core/network_bias.py`)."""

from __future__ import annotations

import numpy as np
import pytest

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp, so3_log
from sfm_ros.core.network_bias import MAX_GAIN, DirectionBias, RotationBias, RotationGain


def _tilted(u: np.ndarray, rng: np.random.Generator, sigma_deg: float) -> np.ndarray:
    """``u`` turned by a random small angle of ``sigma_deg`` per axis."""
    v = u + np.radians(sigma_deg) * rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def _run(offset_deg: float, geometry_sigma_deg: float, outliers: float, seed: int) -> tuple:
    """Median angle to the truth of the network's direction before and after correction over
    60 frames of a camera moving forward (z), the network off by ``offset_deg`` upwards."""
    rng = np.random.default_rng(seed)
    bias = DirectionBias()
    before, after = [], []
    for _ in range(60):
        truth = _tilted(np.array([0.0, 0.0, 1.0]), rng, 1.0)
        network = _tilted(truth + np.radians(offset_deg) * np.array([0, -1.0, 0]), rng, 0.3)
        geometry = _tilted(truth, rng, geometry_sigma_deg)
        if rng.random() < outliers:
            geometry = _tilted(truth, rng, 30.0)
        t_network = 0.8 * network
        corrected = bias.correct(t_network)
        assert np.linalg.norm(corrected) == pytest.approx(0.8)  # the length is kept
        before.append(_angle_deg(t_network, truth))
        after.append(_angle_deg(corrected, truth))
        bias.update(t_network, None, 2.0 * geometry, (0.0, 1.0))
    return np.median(before[10:]), np.median(after[10:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_constant_offset_is_measured_and_removed(seed):
    before, after = _run(offset_deg=2.0, geometry_sigma_deg=0.5, outliers=0.0, seed=seed)
    assert before > 1.8
    assert after < 0.6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_geometry_does_not_move_an_unbiased_network(seed):
    # geometry 5 times noisier than the network, a fifth of its directions wild (a classical
    # estimate on a turning field): the shrunk offset stays near zero
    before, after = _run(offset_deg=0.0, geometry_sigma_deg=1.5, outliers=0.2, seed=seed)
    assert after < before + 0.05


def test_the_offset_follows_the_fusion_weights():
    bias = DirectionBias(window=10, min_frames=3)
    up = np.array([0.0, -0.05, 1.0])
    network = np.array([0.0, 0.0, 1.0])
    for _ in range(5):  # the refined direction says "up", the classical one agrees with the net
        bias.update(network, up, network, (1.0, 0.0))
    assert bias.bias[1] > 0.04  # the network is below the only weighted reference
    bias.reset()
    for _ in range(5):
        bias.update(network, up, network, (0.0, 1.0))
    np.testing.assert_allclose(bias.bias, 0.0, atol=1e-12)


def test_nothing_is_learnt_or_applied_without_geometry_or_motion():
    bias = DirectionBias(window=10, min_frames=2)
    for _ in range(5):
        bias.update(np.array([0.0, 0.0, 1.0]), None, None, (0.0, 0.0))
        bias.update(np.zeros(3), np.array([0.0, 0.1, 1.0]), None, (1.0, 0.0))
        bias.update(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.1, 1.0]), None, (0.0, 0.0))
    np.testing.assert_array_equal(bias.bias, np.zeros(3))
    np.testing.assert_array_equal(bias.correct(np.zeros(3)), np.zeros(3))
    nan = np.full(3, np.nan)
    assert np.isnan(bias.correct(nan)).all()  # returned as it is: the caller's fallback decides


def _rotation_run(offset_deg: float, geometry_sigma_deg: float, seed: int) -> tuple:
    """RMS angle (degrees) to the truth of the network's rotation before and after correction
    over 60 frames, the network off by ``offset_deg`` about x and y; the refined rotation
    has weight 1 (a classical one of no weight is given and must not count)."""
    rng = np.random.default_rng(seed)
    bias = RotationBias()
    offset = np.radians(offset_deg) * np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
    before, after = [], []
    for _ in range(60):
        R = so3_exp(rng.normal(scale=0.02, size=3))
        R_net = R @ so3_exp(offset + np.radians(0.03) * rng.standard_normal(3))
        R_ref = R @ so3_exp(np.radians(geometry_sigma_deg) * rng.standard_normal(3))
        corrected = bias.correct(R_net)
        before.append(np.linalg.norm(so3_log(R.T @ R_net)))
        after.append(np.linalg.norm(so3_log(R.T @ corrected)))
        bias.update(R_net, R_ref, R_net @ so3_exp(np.full(3, 0.1)), (1.0, 0.0))
    rms = [float(np.degrees(np.sqrt(np.mean(np.square(x[10:]))))) for x in (before, after)]
    return rms[0], rms[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_steady_rotation_offset_is_measured_and_removed(seed):
    before, after = _rotation_run(offset_deg=0.3, geometry_sigma_deg=0.1, seed=seed)
    assert before > 0.28
    assert after < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_geometry_does_not_turn_an_unbiased_network(seed):
    before, after = _rotation_run(offset_deg=0.0, geometry_sigma_deg=0.3, seed=seed)
    assert after < before + 0.01


def test_no_rotation_offset_is_learnt_without_weighted_geometry():
    bias = RotationBias(window=10, min_frames=2)
    R = so3_exp(np.array([0.0, 0.1, 0.0]))
    for _ in range(5):
        bias.update(R, np.eye(3), None, (0.0, 0.0))
        bias.update(R, None, np.full((3, 3), np.nan), (0.0, 1.0))
    np.testing.assert_array_equal(bias.bias, np.zeros(3))
    np.testing.assert_array_equal(bias.correct(R), R)


def test_bad_settings_are_refused():
    for cls in (DirectionBias, RotationBias, RotationGain):
        with pytest.raises(InputError):
            cls(window=0)
        with pytest.raises(InputError):
            cls(window=5, min_frames=6)


def _turning_run(
    shortfall: float, geometry_sigma_deg: float, seed: int, pitch_seen: bool = True
) -> tuple[np.ndarray, np.ndarray, RotationGain]:
    """Per-axis RMS errors (degrees) of the network's rotation before and after its gain over
    100 frames of a car turning by up to 2 degrees a frame about y and pitching by 0.1 about
    x, the network turning ``shortfall`` times the truth (plus 0.03 degrees of noise; unless
    ``pitch_seen``, its pitch is 0.1 degrees of noise alone); the geometric rotation is the
    truth with ``geometry_sigma_deg`` of noise."""
    rng = np.random.default_rng(seed)
    gain = RotationGain()
    before, after = [], []
    for i in range(100):
        truth = np.radians([0.1 * rng.standard_normal(), 2.0 * np.sin(i / 8), 0.0])
        seen = shortfall * truth + np.radians(0.03) * rng.standard_normal(3)
        if not pitch_seen:
            seen[0] = np.radians(0.1) * rng.standard_normal()
        R_net = so3_exp(seen)
        R_geo = so3_exp(truth + np.radians(geometry_sigma_deg) * rng.standard_normal(3))
        before.append(so3_log(R_net) - truth)
        after.append(so3_log(gain.correct(R_net)) - truth)
        gain.update(R_net, R_geo, None, (1.0, 0.0))
    rms = [np.degrees(np.sqrt(np.mean(np.square(x[20:]), axis=0))) for x in (before, after)]
    return rms[0], rms[1], gain


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_network_that_falls_short_in_turns_is_scaled_up(seed):
    before, after, gain = _turning_run(shortfall=0.7, geometry_sigma_deg=0.1, seed=seed)
    assert gain.gain[1] == pytest.approx(1 / 0.7, rel=0.05)
    assert before[1] > 0.35
    assert after[1] < 0.25 * before[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_geometry_does_not_scale_a_right_network(seed):
    before, after, gain = _turning_run(shortfall=1.0, geometry_sigma_deg=0.3, seed=seed)
    assert np.all(after < before + 0.005)
    np.testing.assert_allclose(gain.gain[1:], 1.0, atol=0.02)


def test_an_axis_the_network_does_not_see_is_scaled_down():
    # the network says noise about x while the car pitches: the best linear estimate is less
    # of that noise
    before, after, gain = _turning_run(1.0, 0.05, seed=0, pitch_seen=False)
    assert gain.gain[0] < 0.5
    assert after[0] < 0.85 * before[0]
    assert after[1] < before[1] + 0.005


def test_an_axis_the_network_holds_still_is_not_scaled_by_chance():
    # the network's roll is a steady 0.3 degrees (an offset) and hardly varies; the camera
    # rolls by 0.1 degrees at random. Now and then the slope of the geometric roll on the
    # network's passes the significance test by chance; it is huge (the network barely moves),
    # so it is limited before it is shrunk: the gain moves a little, not to a limit
    deviations = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        gain, worst = RotationGain(), 0.0
        for _ in range(300):
            truth = np.radians([0.0, 0.0, 0.1 * rng.standard_normal()])
            R_net = so3_exp(np.radians([0.0, 0.0, 0.3 + 1e-4 * rng.standard_normal()]))
            R_geo = so3_exp(truth + np.radians(0.05) * rng.standard_normal(3))
            gain.update(R_net, R_geo, None, (1.0, 0.0))
            worst = max(worst, abs(gain.gain[2] - 1))
        deviations.append(worst)
    assert np.mean(deviations) < 0.1  # 0.2 when the slope was limited after shrinking
    assert max(deviations) < 0.5  # then 1: the limit


def test_no_gain_is_learnt_without_weighted_geometry_and_reset_forgets_it():
    gain = RotationGain(window=10, min_frames=3)
    R_net = so3_exp(np.array([0.0, 0.01, 0.0]))
    for _ in range(5):
        gain.update(R_net, so3_exp(np.array([0.0, 0.02, 0.0])), None, (0.0, 0.0))
        gain.update(R_net, None, np.full((3, 3), np.nan), (0.0, 1.0))
    np.testing.assert_array_equal(gain.gain, np.ones(3))
    np.testing.assert_array_equal(gain.correct(R_net), R_net)
    for i in range(5):  # twice the turn, every frame
        yaw = 0.01 * (i + 1)
        gain.update(so3_exp([0.0, yaw, 0.0]), so3_exp([0.0, 2 * yaw, 0.0]), None, (1.0, 0.0))
    np.testing.assert_allclose(gain.gain, [1.0, MAX_GAIN, 1.0])
    gain.reset()
    np.testing.assert_array_equal(gain.gain, np.ones(3))

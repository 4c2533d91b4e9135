"""VelocitySmoother: less jitter at constant speed, frame-rate independent, rotation untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp
from sfm_ros.core.velocity_filter import VelocitySmoother


def motion(t: np.ndarray, rotvec=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = so3_exp(np.asarray(rotvec, dtype=np.float64))
    T[:3, 3] = t
    return T


def test_jitter_of_a_constant_velocity_shrinks_and_rotation_passes_unchanged():
    rng = np.random.default_rng(0)
    true_t = np.array([0.02, -0.03, 1.2])  # a car at 12 m/s, 10 Hz
    smoother = VelocitySmoother(1.0)
    raw_err, smooth_err = [], []
    for _ in range(60):
        measured = true_t * (1 + 0.1 * rng.standard_normal()) + 0.02 * rng.standard_normal(3)
        rotvec = 0.01 * rng.standard_normal(3)
        T = motion(measured, rotvec)
        out = smoother.update(T, 0.1)
        np.testing.assert_array_equal(out[:3, :3], T[:3, :3])
        raw_err.append(np.linalg.norm(measured - true_t))
        smooth_err.append(np.linalg.norm(out[:3, 3] - true_t))
    assert np.mean(smooth_err[20:]) < 0.4 * np.mean(raw_err[20:])


@pytest.mark.parametrize("rate_hz", [10.0, 30.0])
def test_a_speed_step_is_followed_with_the_time_constant_at_any_frame_rate(rate_hz):
    tau, dt = 0.5, 1.0 / rate_hz
    smoother = VelocitySmoother(tau)
    for _ in range(int(5 / dt)):  # long enough for the running mean to hand over
        smoother.update(motion(np.array([0.0, 0.0, 1.0 * dt])), dt)
    for _ in range(round(tau / dt)):  # speed steps from 1 to 2 m/s for one time constant
        out = smoother.update(motion(np.array([0.0, 0.0, 2.0 * dt])), dt)
    assert out[2, 3] / dt == pytest.approx(1.0 + (1 - math.exp(-1)), abs=0.02)


def test_the_start_is_a_running_mean_not_the_first_motion():
    smoother = VelocitySmoother(2.0)  # steady gain 1 - exp(-0.05) = 0.05 at 10 Hz
    first = smoother.update(motion(np.array([0.0, 0.0, 0.5])), 0.1)
    second = smoother.update(motion(np.array([0.0, 0.0, 1.5])), 0.1)
    third = smoother.update(motion(np.array([0.0, 0.0, 1.0])), 0.1)
    assert first[2, 3] == pytest.approx(0.5)
    assert second[2, 3] == pytest.approx(1.0)
    assert third[2, 3] == pytest.approx(1.0)
    smoother.reset()
    assert smoother.update(motion(np.array([0.0, 0.0, 3.0])), 0.1)[2, 3] == pytest.approx(3.0)


def test_off_passes_motions_through_and_bad_input_leaves_the_state_alone():
    T = motion(np.array([0.1, 0.2, 0.3]), (0.01, 0.0, 0.0))
    np.testing.assert_array_equal(VelocitySmoother(0.0).update(T, 0.1), T)
    smoother = VelocitySmoother(1.0)
    smoother.update(motion(np.array([0.0, 0.0, 1.0])), 0.1)
    bad = motion(np.array([0.0, 0.0, np.nan]))
    with pytest.raises(InputError, match="finite"):
        smoother.update(bad, 0.1)
    with pytest.raises(InputError, match="> 0 s"):
        smoother.update(motion(np.array([0.0, 0.0, 1.0])), 0.0)
    assert smoother.update(motion(np.array([0.0, 0.0, 3.0])), 0.1)[2, 3] == pytest.approx(2.0)
    for tau in (-1.0, math.nan, math.inf):
        with pytest.raises(InputError, match="time_constant_s"):
            VelocitySmoother(tau)

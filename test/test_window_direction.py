"""The network's translation direction checked against the refined one over windows of frames."""

import math

import numpy as np
import pytest

from sfm_ros.core.errors import InputError
from sfm_ros.core.window_direction import WindowDirection


def _motion(t) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = t
    return T


def _refined_motions(rng: np.random.Generator, n: int, step: float, noise: float) -> list:
    """Frame-to-frame motions of a camera moving ``step`` along z a frame, from poses aligned
    with one keyframe, each off by ``noise`` (m) on every axis: the motions scatter in
    direction (noise > step) but their errors do not add up."""
    poses = [np.array([0.0, 0.0, step * i]) + noise * rng.standard_normal(3) for i in range(n)]
    return [_motion(b - a) for a, b in zip(poses[:-1], poses[1:], strict=True)]


def test_a_right_network_direction_agrees_with_scattered_refined_motions():
    # refined motions 4x noisier than a frame's step (their directions scatter by tens of
    # degrees): over 15 frames their displacement still has the network's direction
    rng = np.random.default_rng(0)
    window = WindowDirection(frames=15, windows=15, max_angle_deg=30)
    refined = _refined_motions(rng, 60, step=0.01, noise=0.04 / math.sqrt(3))
    directions = [np.degrees(np.arccos(T[2, 3] / np.linalg.norm(T[:3, 3]))) for T in refined]
    assert np.median(directions) > 45
    for T_r in refined:
        window.add(_motion([0.0, 0.0, 0.01]), T_r)
    assert window.agrees and window.angle_deg < 15


def test_a_steady_wrong_network_direction_disagrees_once_a_window_is_full():
    rng = np.random.default_rng(1)
    window = WindowDirection(frames=15, windows=5, max_angle_deg=30)
    refined = _refined_motions(rng, 30, step=0.01, noise=0.002)
    for i, T_r in enumerate(refined):
        window.add(_motion([0.01, 0.0, 0.0]), T_r)  # sideways, the camera moves forward
        if i < 14:
            assert window.agrees and math.isnan(window.angle_deg)  # not measured yet
    assert not window.agrees and window.angle_deg == pytest.approx(90, abs=5)
    window.reset()
    assert window.agrees and math.isnan(window.angle_deg)


def test_a_frame_without_a_refined_motion_restarts_the_window():
    window = WindowDirection(frames=3, windows=3)
    for _ in range(2):
        window.add(_motion([0.01, 0, 0]), _motion([0, 0, 0.01]))
    window.add(_motion([0.01, 0, 0]), None)  # the refinement failed: no window spans it
    for _ in range(2):
        window.add(_motion([0.01, 0, 0]), _motion([0, 0, 0.01]))
    assert math.isnan(window.angle_deg)
    window.add(_motion([0.01, 0, 0]), _motion([0, 0, 0.01]))
    assert window.angle_deg == pytest.approx(90)


@pytest.mark.parametrize(
    "T_network, T_refined",
    [
        (np.eye(3), np.eye(4)),
        (_motion([np.nan, 0, 1]), np.eye(4)),
        (np.eye(4), _motion([0, np.inf, 0])),
    ],
)
def test_bad_motions_are_refused_and_restart_the_window(T_network, T_refined):
    window = WindowDirection(frames=2, windows=2)
    window.add(_motion([0, 0, 0.01]), _motion([0, 0, 0.01]))
    with pytest.raises(InputError):
        window.add(T_network, T_refined)
    window.add(_motion([0, 0, 0.01]), _motion([0, 0, 0.01]))
    assert math.isnan(window.angle_deg)  # the window restarted
    with pytest.raises(InputError):
        WindowDirection(frames=0)

"""Optical <-> body frame conversion and quaternion helpers."""

from __future__ import annotations

import numpy as np
import pytest

from sfm_ros.core import frames
from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import se3_inverse


def rotation(axis, angle: float) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` (rad, right-handed) about ``axis``."""
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    S = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * S + (1 - np.cos(angle)) * S @ S


def se3(R: np.ndarray | None = None, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.eye(3) if R is None else R
    T[:3, 3] = t
    return T


def test_optical_axes_map_to_body_axes():
    R = frames.R_BODY_OPTICAL
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_array_equal(R @ [0, 0, 1], [1, 0, 0])  # forward
    np.testing.assert_array_equal(R @ [1, 0, 0], [0, -1, 0])  # right
    np.testing.assert_array_equal(R @ [0, 1, 0], [0, 0, -1])  # down


def test_forward_motion_becomes_plus_x():
    T_prev_cur = se3(t=(0.0, 0.0, 1.5))  # current camera 1.5 m ahead of the previous one
    T_body = frames.optical_to_body(T_prev_cur)
    np.testing.assert_allclose(T_body[:3, 3], [1.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T_body[:3, :3], np.eye(3), atol=1e-12)


def test_left_yaw_is_positive_yaw_about_z():
    angle = 0.2
    R_opt = rotation([0, -1, 0], angle)  # body up is optical -y
    # After turning left, what is straight ahead now lies to the left (optical -x) before.
    assert (R_opt @ [0, 0, 1])[0] < 0
    T_body = frames.optical_to_body(se3(R_opt))
    np.testing.assert_allclose(T_body[:3, :3], rotation([0, 0, 1], angle), atol=1e-12)
    yaw = np.arctan2(T_body[1, 0], T_body[0, 0])
    assert yaw == pytest.approx(angle)


def test_camera_motion_to_base_with_offset_camera():
    # Camera 2 m ahead of and 1 m above base_link, looking forward.
    T_base_cam = se3(frames.R_BODY_OPTICAL, (2.0, 0.0, 1.0))
    T_world_base_prev = se3(rotation([0, 0, 1], 0.4), (3.0, -1.0, 0.0))
    T_base_prev_base_cur = se3(rotation([0, 0, 1], 0.3), (1.0, 0.2, 0.0))
    T_world_base_cur = T_world_base_prev @ T_base_prev_base_cur
    T_world_cam_prev = T_world_base_prev @ T_base_cam
    T_world_cam_cur = T_world_base_cur @ T_base_cam
    T_cam_prev_cur = np.linalg.inv(T_world_cam_prev) @ T_world_cam_cur
    # The camera swings around the base origin, so its own motion differs from the base's.
    assert not np.allclose(frames.optical_to_body(T_cam_prev_cur), T_base_prev_base_cur)
    T_est = frames.camera_motion_to_base(T_cam_prev_cur, T_base_cam)
    np.testing.assert_allclose(T_est, T_base_prev_base_cur, atol=1e-12)


def test_conversions_broadcast_over_batches():
    T = np.stack([se3(rotation([1, 2, 3], 0.1 * i), (i, -i, 0.5)) for i in range(4)])
    batched = frames.optical_to_body(T)
    assert batched.shape == (4, 4, 4)
    np.testing.assert_allclose(batched[2], frames.optical_to_body(T[2]))
    np.testing.assert_allclose(se3_inverse(T) @ T, np.broadcast_to(np.eye(4), T.shape), atol=1e-12)


def test_shape_errors():
    with pytest.raises(InputError, match="4, 4"):
        frames.optical_to_body(np.eye(3))
    with pytest.raises(InputError, match="quaternion"):
        frames.matrix_from_quaternion([0, 0, 0, 0])
    with pytest.raises(InputError, match="rotation"):
        frames.quaternion_from_matrix(np.full((3, 3), np.nan))


def test_quaternion_known_values():
    s = np.sqrt(0.5)
    np.testing.assert_allclose(
        frames.quaternion_from_matrix(rotation([0, 0, 1], np.pi / 2)), [0, 0, s, s]
    )
    np.testing.assert_allclose(
        frames.quaternion_from_matrix(rotation([1, 0, 0], np.pi)), [1, 0, 0, 0], atol=1e-12
    )
    np.testing.assert_allclose(
        frames.matrix_from_quaternion([0, 0, 2 * s, 2 * s]),
        rotation([0, 0, 1], np.pi / 2),
        atol=1e-12,
    )


@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.5, 2.0, np.pi - 1e-7, np.pi])
def test_quaternion_round_trip(angle):
    rng = np.random.default_rng(int(angle * 1e3))
    for axis in [*np.eye(3), *rng.normal(size=(5, 3))]:
        R = rotation(axis, angle)
        q = frames.quaternion_from_matrix(se3(R))
        assert np.linalg.norm(q) == pytest.approx(1.0) and q[3] >= 0
        np.testing.assert_allclose(frames.matrix_from_quaternion(q), R, atol=1e-9)

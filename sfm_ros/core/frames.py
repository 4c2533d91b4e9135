"""Optical (x right, y down, z forward) <-> REP 103 body (x forward, y left, z up) frames.

Also rotation matrix <-> quaternion in ROS order ``(x, y, z, w)``.
"""

from __future__ import annotations

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.odometry import conjugate_motion

R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
"""Rotation mapping optical-frame coordinates into the body frame: ``p_body = R @ p_optical``."""

T_BODY_OPTICAL = np.eye(4)
T_BODY_OPTICAL[:3, :3] = R_BODY_OPTICAL
R_BODY_OPTICAL.setflags(write=False)
T_BODY_OPTICAL.setflags(write=False)
"""(4, 4) ``T_body_optical``: the standard optical rotation with zero translation."""

R_OPTICAL_BODY = R_BODY_OPTICAL.T  # a view of a read-only array: read-only too
"""The inverse of ``R_BODY_OPTICAL``: ``p_optical = R @ p_body`` (e.g. a sensor in base_link's
axes seen from the camera)."""


def _check_se3(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise InputError(f"{name} must have shape (..., 4, 4), got {T.shape}")
    return T


def camera_motion_to_base(
    T_prev_cur_cam: np.ndarray, T_base_cam: np.ndarray = T_BODY_OPTICAL
) -> np.ndarray:
    """Camera motion (..., 4, 4) -> motion of the rigidly attached base frame.

    Args:
        T_prev_cur_cam: camera motion ``T_camprev_camcur`` in the camera (optical) frame.
        T_base_cam: static extrinsic ``base_link <- camera_optical_frame``; default the standard
            optical rotation with the camera at the base origin.

    Returns:
        ``T_baseprev_basecur = T_base_cam @ T_prev_cur_cam @ inv(T_base_cam)``.
    """
    T_prev_cur_cam = _check_se3(T_prev_cur_cam, "T_prev_cur_cam")
    T_base_cam = _check_se3(T_base_cam, "T_base_cam")
    return conjugate_motion(T_prev_cur_cam, T_base_cam)


def optical_to_body(T_a_b_optical: np.ndarray) -> np.ndarray:
    """Relative motion (..., 4, 4) expressed in the optical frame -> the same in the body frame."""
    return camera_motion_to_base(T_a_b_optical, T_BODY_OPTICAL)


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Rotation (3, 3), or the rotation block of a (4, 4) transform, -> unit quaternion (4,).

    Order ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``, sign chosen with ``w >= 0``.
    Shepperd's method: divide by the largest of ``4w^2, 4x^2, 4y^2, 4z^2``, stable at any angle.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape not in ((3, 3), (4, 4)) or not np.all(np.isfinite(R)):
        raise InputError(f"rotation must be a finite (3, 3) or (4, 4) matrix, got {R.shape}")
    R = R[:3, :3]
    trace = np.trace(R)
    i = int(np.argmax([trace, R[0, 0], R[1, 1], R[2, 2]]))
    if i == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    elif i == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif i == 2:
        s = 2.0 * np.sqrt(1.0 - R[0, 0] + R[1, 1] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 - R[0, 0] - R[1, 1] + R[2, 2])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[3] < 0 else q


def matrix_from_quaternion(q: np.ndarray) -> np.ndarray:
    """Quaternion (4,) ``(x, y, z, w)``, normalised here, -> rotation matrix (3, 3)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(q) if q.size == 4 else 0.0
    if not np.isfinite(norm) or norm < 1e-12:
        raise InputError(f"quaternion must be 4 finite values, not all zero, got {q}")
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )

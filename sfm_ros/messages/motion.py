"""``nav_msgs/Odometry``, ``geometry_msgs/TransformStamped`` and ``tf2_msgs/TFMessage`` builders,
and ``geometry_msgs/Transform`` -> matrix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.frames import matrix_from_quaternion, quaternion_from_matrix
from sfm_ros.messages.msg_types import MsgTypes


def _vector(cls: Any, v: np.ndarray, name: str) -> Any:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (3,):
        raise InputError(f"{name} must have 3 values, got {v.size}")
    return cls(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _quaternion(types: MsgTypes, T: np.ndarray) -> Any:
    x, y, z, w = quaternion_from_matrix(T[:3, :3])
    return types.Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def _se3(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"{name} must be a finite (4, 4) transform, got shape {T.shape}")
    return T


def _covariance(cov: np.ndarray, name: str) -> np.ndarray:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (6, 6):
        raise InputError(f"{name} must have shape (6, 6), got {cov.shape}")
    return cov.reshape(36).copy()


def odometry_msg(
    types: MsgTypes,
    header: Any,
    child_frame_id: str,
    T_odom_base: np.ndarray,
    twist_linear: np.ndarray,
    twist_angular: np.ndarray,
    pose_cov: np.ndarray,
    twist_cov: np.ndarray,
) -> Any:
    """``nav_msgs/Odometry``: pose of ``child_frame_id`` in ``header.frame_id``, twist in the child.

    Args:
        T_odom_base: (4, 4) pose of the child (base) frame in the odometry frame.
        twist_linear: (3,) m/s; twist_angular: (3,) rad/s, both in the child frame.
        pose_cov, twist_cov: (6, 6) covariances over (x, y, z, rot x, rot y, rot z).
    """
    T = _se3(T_odom_base, "T_odom_base")
    position = _vector(types.Point, T[:3, 3], "position")
    pose = types.Pose(position=position, orientation=_quaternion(types, T))
    twist = types.Twist(
        linear=_vector(types.Vector3, twist_linear, "twist_linear"),
        angular=_vector(types.Vector3, twist_angular, "twist_angular"),
    )
    pose_cov = _covariance(pose_cov, "pose_cov")
    twist_cov = _covariance(twist_cov, "twist_cov")
    return types.Odometry(
        header=header,
        child_frame_id=str(child_frame_id),
        pose=types.PoseWithCovariance(pose=pose, covariance=pose_cov),
        twist=types.TwistWithCovariance(twist=twist, covariance=twist_cov),
    )


def transform_stamped(types: MsgTypes, header: Any, child_frame_id: str, T: np.ndarray) -> Any:
    """``TransformStamped`` of ``T`` (4, 4) = ``T_parent_child``, parent = ``header.frame_id``."""
    T = _se3(T, "T")
    transform = types.Transform(
        translation=_vector(types.Vector3, T[:3, 3], "translation"),
        rotation=_quaternion(types, T),
    )
    return types.TransformStamped(
        header=header, child_frame_id=str(child_frame_id), transform=transform
    )


def tf_message(types: MsgTypes, transforms: Iterable[Any]) -> Any:
    """``tf2_msgs/TFMessage`` holding the given ``TransformStamped`` messages."""
    return types.TFMessage(transforms=list(transforms))


def matrix_from_transform(transform: Any) -> np.ndarray:
    """``geometry_msgs/Transform`` or ``TransformStamped`` -> (4, 4) ``T_parent_child``."""
    transform = getattr(transform, "transform", transform)
    t, q = transform.translation, transform.rotation
    T = np.eye(4)
    T[:3, :3] = matrix_from_quaternion(np.array([q.x, q.y, q.z, q.w]))
    T[:3, 3] = [t.x, t.y, t.z]
    return T

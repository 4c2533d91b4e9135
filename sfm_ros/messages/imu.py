"""``sensor_msgs/Imu`` <-> the gyroscope's sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.messages.msg_types import MsgTypes, stamp_to_ns

ABSENT = np.array([-1.0] + [0.0] * 8)
"""A covariance whose first element is -1: the field has no data (Imu.msg)."""


def angular_velocity(msg: Any) -> tuple[int, str, np.ndarray] | None:
    """(stamp in ns, frame_id, (3,) angular velocity in rad/s) of a ``sensor_msgs/Imu``; None
    where the message says it has none (``angular_velocity_covariance[0] == -1``, as Imu.msg
    defines). A non-finite rate raises InputError."""
    if float(msg.angular_velocity_covariance[0]) == -1.0:
        return None
    w = msg.angular_velocity
    omega = np.array([w.x, w.y, w.z], dtype=np.float64)
    if not np.isfinite(omega).all():
        raise InputError(f"angular velocity is not finite: {omega.tolist()}")
    return stamp_to_ns(msg.header.stamp), str(msg.header.frame_id), omega


def imu_msg(types: MsgTypes, header: Any, omega_rad_s: np.ndarray, variance: float = 0.0) -> Any:
    """``sensor_msgs/Imu`` with a gyroscope's angular velocity ((3,) rad/s, in the header's
    frame) and its per-axis ``variance`` ((rad/s)^2, 0 = unknown); orientation and linear
    acceleration marked absent."""
    w = [float(v) for v in omega_rad_s]
    return types.Imu(  # float64[9] fields: float64 arrays for rclpy and rosbags alike
        header=header,
        orientation=types.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=ABSENT.copy(),
        angular_velocity=types.Vector3(x=w[0], y=w[1], z=w[2]),
        angular_velocity_covariance=(np.eye(3) * float(variance)).ravel(),
        linear_acceleration=types.Vector3(x=0.0, y=0.0, z=0.0),
        linear_acceleration_covariance=ABSENT.copy(),
    )

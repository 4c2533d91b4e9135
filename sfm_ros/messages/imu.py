"""``sensor_msgs/Imu`` -> the gyroscope's sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.messages.msg_types import stamp_to_ns


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

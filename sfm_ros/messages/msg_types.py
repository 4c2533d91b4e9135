"""Message classes for the builders, from rosbags typestores or from rclpy, plus stamp helpers.

The builders never import ROS: they take a :class:`MsgTypes` holding the message classes and the
two sequence adapters the backends disagree on. rosbags dataclasses want ``np.ndarray`` for every
array field; rclpy messages want ``array.array`` for unbounded sequences (``uint8[] data``,
``float64[] d``) and accept ``np.ndarray`` for fixed-size arrays (``float64[9] k``).
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class MsgTypes:
    """Message classes (rosbags dataclasses or rclpy classes) and sequence adapters."""

    Time: Any
    Header: Any
    Image: Any
    CompressedImage: Any
    CameraInfo: Any
    Imu: Any
    RegionOfInterest: Any
    PointCloud2: Any
    PointField: Any
    Point: Any
    Quaternion: Any
    Vector3: Any
    Pose: Any
    Twist: Any
    PoseWithCovariance: Any
    TwistWithCovariance: Any
    Odometry: Any
    Transform: Any
    TransformStamped: Any
    TFMessage: Any
    uint8_seq: Callable[[np.ndarray], Any]
    """Flat uint8 array -> value for a ``uint8[]`` field."""
    float64_seq: Callable[[np.ndarray], Any]
    """Flat float64 array -> value for a ``float64[]`` field."""


_TYPE_NAMES = {
    "Time": "builtin_interfaces/msg/Time",
    "Header": "std_msgs/msg/Header",
    "Image": "sensor_msgs/msg/Image",
    "CompressedImage": "sensor_msgs/msg/CompressedImage",
    "CameraInfo": "sensor_msgs/msg/CameraInfo",
    "Imu": "sensor_msgs/msg/Imu",
    "RegionOfInterest": "sensor_msgs/msg/RegionOfInterest",
    "PointCloud2": "sensor_msgs/msg/PointCloud2",
    "PointField": "sensor_msgs/msg/PointField",
    "Point": "geometry_msgs/msg/Point",
    "Quaternion": "geometry_msgs/msg/Quaternion",
    "Vector3": "geometry_msgs/msg/Vector3",
    "Pose": "geometry_msgs/msg/Pose",
    "Twist": "geometry_msgs/msg/Twist",
    "PoseWithCovariance": "geometry_msgs/msg/PoseWithCovariance",
    "TwistWithCovariance": "geometry_msgs/msg/TwistWithCovariance",
    "Odometry": "nav_msgs/msg/Odometry",
    "Transform": "geometry_msgs/msg/Transform",
    "TransformStamped": "geometry_msgs/msg/TransformStamped",
    "TFMessage": "tf2_msgs/msg/TFMessage",
}


def rosbags_types(typestore: Any) -> MsgTypes:
    """Message classes of a rosbags typestore, e.g. ``get_typestore(Stores.ROS2_HUMBLE)``."""
    classes = {attr: typestore.types[name] for attr, name in _TYPE_NAMES.items()}
    return MsgTypes(
        **classes,
        uint8_seq=lambda a: np.ascontiguousarray(a, dtype=np.uint8).reshape(-1),
        float64_seq=lambda a: np.ascontiguousarray(a, dtype=np.float64).reshape(-1),
    )


def rclpy_types() -> MsgTypes:
    """Message classes of the sourced ROS 2 installation (imports the message packages)."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import (
        Point,
        Pose,
        PoseWithCovariance,
        Quaternion,
        Transform,
        TransformStamped,
        Twist,
        TwistWithCovariance,
        Vector3,
    )
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import (
        CameraInfo,
        CompressedImage,
        Image,
        Imu,
        PointCloud2,
        PointField,
        RegionOfInterest,
    )
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    return MsgTypes(
        Time=Time,
        Header=Header,
        Image=Image,
        CompressedImage=CompressedImage,
        CameraInfo=CameraInfo,
        Imu=Imu,
        RegionOfInterest=RegionOfInterest,
        PointCloud2=PointCloud2,
        PointField=PointField,
        Point=Point,
        Quaternion=Quaternion,
        Vector3=Vector3,
        Pose=Pose,
        Twist=Twist,
        PoseWithCovariance=PoseWithCovariance,
        TwistWithCovariance=TwistWithCovariance,
        Odometry=Odometry,
        Transform=Transform,
        TransformStamped=TransformStamped,
        TFMessage=TFMessage,
        uint8_seq=lambda a: array.array("B", np.ascontiguousarray(a, dtype=np.uint8).tobytes()),
        float64_seq=lambda a: array.array("d", np.asarray(a, dtype=np.float64).ravel().tolist()),
    )


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (fields ``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(types: MsgTypes, ns: int) -> Any:
    """Integer nanoseconds -> ``builtin_interfaces/Time`` (``nanosec`` in [0, 1e9))."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return types.Time(sec=sec, nanosec=nanosec)


def header(types: MsgTypes, stamp_ns: int, frame_id: str) -> Any:
    """``std_msgs/Header`` with the given stamp (nanoseconds) and frame."""
    return types.Header(stamp=ns_to_stamp(types, stamp_ns), frame_id=str(frame_id))

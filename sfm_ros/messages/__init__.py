"""ROS message <-> numpy conversion on message fields only (no rclpy import).

The same functions serve rclpy nodes (``rclpy_types()``) and offline tools on bags
(``rosbags_types(typestore)``). Decoders read any object with the message's fields; builders
take a :class:`MsgTypes` and fill every field by keyword.
"""

from sfm_ros.core.frames import matrix_from_quaternion, quaternion_from_matrix
from sfm_ros.messages.camera import (
    CameraInfoCache,
    camera_from_camera_info,
    camera_info_msg,
    camera_info_to_K,
)
from sfm_ros.messages.image import (
    COLOUR_ENCODINGS,
    DEPTH_ENCODINGS,
    ENCODINGS,
    compressed_to_rgb8,
    depth_to_image,
    depth_to_mm_image,
    image_to_numpy,
    image_to_rgb8,
    numpy_to_image,
)
from sfm_ros.messages.imu import angular_velocity, imu_msg
from sfm_ros.messages.motion import (
    matrix_from_transform,
    odometry_msg,
    tf_message,
    transform_stamped,
)
from sfm_ros.messages.msg_types import (
    MsgTypes,
    header,
    ns_to_stamp,
    rclpy_types,
    rosbags_types,
    stamp_to_ns,
)
from sfm_ros.messages.pointcloud import pointcloud2_msg

__all__ = [
    "COLOUR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "ENCODINGS",
    "CameraInfoCache",
    "MsgTypes",
    "angular_velocity",
    "camera_from_camera_info",
    "camera_info_msg",
    "camera_info_to_K",
    "compressed_to_rgb8",
    "depth_to_image",
    "depth_to_mm_image",
    "header",
    "image_to_numpy",
    "image_to_rgb8",
    "imu_msg",
    "matrix_from_quaternion",
    "matrix_from_transform",
    "ns_to_stamp",
    "numpy_to_image",
    "odometry_msg",
    "pointcloud2_msg",
    "quaternion_from_matrix",
    "rclpy_types",
    "rosbags_types",
    "stamp_to_ns",
    "tf_message",
    "transform_stamped",
]

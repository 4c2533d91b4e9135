"""``sensor_msgs/CameraInfo`` <-> intrinsics matrix ``K`` (3, 3) float64 in pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.geometry import intrinsics_from_camera_info
from sfm_ros.messages.msg_types import MsgTypes


def _matrix_field(msg: Any, name: str) -> np.ndarray:
    """CameraInfo matrix ``name`` ("k", "p") under its ROS 2 (lower case) or ROS 1 (``K``) name."""
    value = getattr(msg, name, None)
    return np.asarray(getattr(msg, name.upper()) if value is None else value, dtype=np.float64)


def camera_info_to_K(msg: Any, rectified: bool = False) -> tuple[np.ndarray, int, int]:
    """Intrinsics and size of the image published with a ``CameraInfo`` (ROS 2 or ROS 1 names).

    Binning and ROI are applied as the CameraInfo documentation says (binning 0 or 1 = none,
    ROI all zero = full image). ``K`` comes from ``k`` (raw images), or from the left 3x3 of ``p``
    when ``rectified`` (``image_rect`` topics) or when ``k`` is all zero.

    Returns:
        ``(K (3, 3) float64, width, height)`` of the published image.

    Raises:
        InputError: uncalibrated (zero, NaN) or inconsistent camera info.
    """
    width, height = int(msg.width), int(msg.height)
    frame = msg.header.frame_id
    if width <= 0 or height <= 0:
        raise InputError(f"CameraInfo (frame '{frame}') has zero image size {width}x{height}")
    k = _matrix_field(msg, "k")
    use_p = rectified or not np.any(k)
    roi = msg.roi
    roi_tuple = (roi.x_offset, roi.y_offset, roi.height, roi.width, roi.do_rectify)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    try:
        K = intrinsics_from_camera_info(
            k, width, height, bx, by, roi_tuple, p=_matrix_field(msg, "p") if use_p else None
        )
    except InputError as exc:
        raise InputError(
            f"CameraInfo (frame '{frame}') is unusable: {exc}; is the camera calibrated?"
        ) from exc
    if roi.width and roi.height:
        width, height = int(roi.width), int(roi.height)
    return K, width // bx, height // by


def camera_info_msg(
    types: MsgTypes,
    K: np.ndarray,
    width: int,
    height: int,
    header: Any,
    distortion_model: str = "plumb_bob",
    D: np.ndarray | None = None,
) -> Any:
    """``CameraInfo`` for an undistorted pinhole image: ``R = I``, ``P = [K | 0]``, no binning/ROI.

    Args:
        K: (3, 3) intrinsics in pixels of the ``width`` x ``height`` image.
        D: distortion coefficients; default five zeros (``plumb_bob``).
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise InputError(f"K must have shape (3, 3), got {K.shape}")
    D = np.zeros(5) if D is None else np.asarray(D, dtype=np.float64).reshape(-1)
    P = np.hstack([K, np.zeros((3, 1))])
    roi = types.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.CameraInfo(
        header=header,
        height=int(height),
        width=int(width),
        distortion_model=distortion_model,
        d=types.float64_seq(D),
        k=K.reshape(9).copy(),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )

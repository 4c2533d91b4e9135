"""``sensor_msgs/CameraInfo`` <-> :class:`~sfm_ros.core.camera.Camera`, as image_geometry reads it.

A rectified image (``image_rect``) is described by the left 3x3 of P and has no distortion; a
raw image by K with the distortion D of ``distortion_model``. Binning and ROI are applied as
the CameraInfo documentation says (binning 0 or 1 = none, ROI all zero = full image). Field
names of ROS 2 (``k``, ``d``, ``p``) and ROS 1 (``K``, ``D``, ``P``) messages both work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sfm_ros.core.camera import Camera
from sfm_ros.core.errors import InputError
from sfm_ros.messages.msg_types import MsgTypes


def _field(msg: Any, name: str, size: int | None = None) -> np.ndarray:
    """CameraInfo array ``name`` ("k", "d", "p") under its ROS 2 or ROS 1 (upper case) name."""
    value = getattr(msg, name, None)
    array = np.asarray(getattr(msg, name.upper()) if value is None else value, np.float64)
    array = array.reshape(-1)
    if size is not None and array.size != size:
        raise InputError(f"{name.upper()} must have {size} values, got {array.size}")
    return array


def camera_from_camera_info(msg: Any, rectified: bool | None = None) -> Camera:
    """The camera of the image published with a ``CameraInfo``.

    Args:
        rectified: True for a rectified image (``image_rect``): the projection is P's left
            3x3 (K when P is all zero) and D does not apply. False for a raw image: K, with D.
            None: rectified exactly when D is all zero.

    Raises:
        InputError: uncalibrated (zero, NaN) or inconsistent camera info, naming the frame.
    """
    frame = msg.header.frame_id
    try:
        width, height = int(msg.width), int(msg.height)
        if width <= 0 or height <= 0:
            raise InputError(f"zero image size {width}x{height}")
        k = _field(msg, "k", 9).reshape(3, 3)
        P = _field(msg, "p", 12).reshape(3, 4)[:, :3]
        d = _field(msg, "d")
        if rectified is None:
            rectified = not np.any(d)  # NaN counts as distortion (and is refused below)
        if rectified:
            camera = Camera(P if np.any(P) else k, width, height)
        else:
            camera = Camera(k, width, height, d, msg.distortion_model, rectified=False)
        camera = _roi_and_binning(camera, msg)
    except InputError as exc:
        raise InputError(
            f"CameraInfo (frame '{frame}') is unusable: {exc}; is the camera calibrated?"
        ) from exc
    return camera


def _roi_and_binning(camera: Camera, msg: Any) -> Camera:
    """The ROI window first, then binning: binned pixel j covers pixels j*b .. j*b+b-1."""
    roi = msg.roi
    window = (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height))
    if any(window):
        camera = camera.cropped(*window)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if bx > 1 or by > 1:
        w, h = camera.width // bx, camera.height // by
        camera = camera.cropped(0, 0, w * bx, h * by).resized(w, h)
    return camera


def camera_info_to_K(msg: Any, rectified: bool | None = None) -> tuple[np.ndarray, int, int]:
    """``(K (3, 3) float64, width, height)`` of :func:`camera_from_camera_info`, for callers
    that only need the pinhole matrix (D, if any, is left out)."""
    camera = camera_from_camera_info(msg, rectified)
    return np.array(camera.K), camera.width, camera.height


def camera_info_msg(types: MsgTypes, camera: Camera | np.ndarray, *args: Any) -> Any:
    """``CameraInfo`` describing exactly the pixels of ``camera``'s images.

    Called as ``camera_info_msg(types, camera, header)``, or with a bare pinhole matrix as
    ``camera_info_msg(types, K, width, height, header)`` (written as given, unchecked).
    ``R = I`` and ``P = [K | 0]`` (an undistorted copy of a distorted image keeps K, see
    ``core/undistort.py``); D and ``distortion_model`` are the camera's, five zeros and
    ``plumb_bob`` when it has no distortion. No binning, no ROI.
    """
    if isinstance(camera, Camera):
        (header,) = args
        K, width, height = camera.K, camera.width, camera.height
        model = camera.distortion_model if camera.distorted else "plumb_bob"
        D = np.asarray(camera.D) if camera.distorted else np.zeros(5)
    else:
        width, height, header = args
        K, model, D = np.asarray(camera, dtype=np.float64), "plumb_bob", np.zeros(5)
        if K.shape != (3, 3):
            raise InputError(f"K must have shape (3, 3), got {K.shape}")
    P = np.hstack([K, np.zeros((3, 1))])
    roi = types.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.CameraInfo(
        header=header,
        height=int(height),
        width=int(width),
        distortion_model=model,
        d=types.float64_seq(D),
        k=K.reshape(9).copy(),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


class CameraInfoCache:
    """The latest camera per frame_id from CameraInfo messages, and the camera of each image.

    Not thread-safe: callers serialise ``add`` and ``camera_for`` (one thread, or a lock).

    Args:
        rectified: see :func:`camera_from_camera_info` (None = from D).
        fallback_intrinsics: ``[fx, fy, cx, cy]`` (pixels) for images without CameraInfo;
            empty = none.
        warn: ``warn(key, message)`` for recoverable mismatches (throttled by the caller).
    """

    def __init__(
        self,
        rectified: bool | None = None,
        fallback_intrinsics: Sequence[float] = (),
        warn: Callable[[str, str], None] | None = None,
    ) -> None:
        self.rectified = rectified
        self.fallback_intrinsics = tuple(float(v) for v in fallback_intrinsics)
        self._warn = warn or (lambda key, message: None)
        self._cameras: dict[str, Camera] = {}

    def add(self, msg: Any) -> Camera:
        """Store the camera of a CameraInfo; an unusable one raises InputError, is not stored."""
        camera = camera_from_camera_info(msg, self.rectified)
        self._cameras[msg.header.frame_id] = camera
        return camera

    def camera_for(self, frame_id: str, width: int, height: int) -> Camera | None:
        """The camera of a ``width`` x ``height`` image from ``frame_id``; None if none known.

        The only stored camera serves an image of another frame_id, and a camera of another
        size is resized to the image's (each with a warning). Without CameraInfo the fallback
        intrinsics apply. Raises InputError when the result is implausible for the image.
        """
        camera = self._cameras.get(frame_id)
        if camera is None and len(self._cameras) == 1:
            other, camera = next(iter(self._cameras.items()))
            self._warn(
                "frame_mismatch",
                f"CameraInfo frame_id '{other}' differs from image frame_id '{frame_id}'; using it",
            )
        if camera is not None:
            if camera.size != (width, height):
                self._warn(
                    f"info_size:{frame_id}",
                    f"CameraInfo is for {camera.width}x{camera.height} but the image is "
                    f"{width}x{height}; scaling K",
                )
                camera = camera.resized(width, height)
            return camera
        if self.fallback_intrinsics:
            fx, fy, cx, cy = self.fallback_intrinsics
            return Camera(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), width, height)
        return None

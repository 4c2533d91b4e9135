"""Undistort images of a distorted camera into pinhole images (OpenCV remap tables).

The undistorted image keeps the camera's size and ``K`` (``Camera.undistorted()``): pixel
``(u, v)`` of the output is where the ray of ``K^-1 (u, v, 1)`` would land without the lens
distortion. Output pixels whose source lies outside the raw image are black and marked invalid
in :attr:`Undistorter.valid`. The remap tables are built once per calibration:
:func:`undistorter_for` caches them by the :class:`~sfm_ros.core.camera.Camera` value.
"""

from __future__ import annotations

from functools import lru_cache
from types import ModuleType

import numpy as np

from sfm_ros.core.camera import Camera
from sfm_ros.core.errors import ConfigError, InputError


def _cv2() -> ModuleType:
    """The cv2 module, or ConfigError saying how to install it."""
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError(
            f"undistorting needs OpenCV ({exc}): pip install opencv-python-headless or apt "
            "install python3-opencv; or feed rectified images (image_rect)"
        ) from None
    return cv2


class Undistorter:
    """Remap tables from a distorted ``source`` camera to its pinhole ``camera``.

    Attributes:
        source: the distorted camera of the input images.
        camera: the pinhole camera of the output images (same K and size, no distortion).
        valid: (H, W) bool, True where the output pixel was sampled inside the input image.
    """

    def __init__(self, source: Camera) -> None:
        if not source.distorted:
            raise InputError("the camera has no distortion: nothing to undistort")
        cv2 = _cv2()
        K, D = np.array(source.K), np.array(source.D)
        size = (source.width, source.height)
        if source.distortion_model == "equidistant":
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(
                K, D, np.eye(3), K, size, cv2.CV_32FC1
            )
        else:
            map_x, map_y = cv2.initUndistortRectifyMap(K, D, None, K, size, cv2.CV_32FC1)
        W, H = size
        self.valid = (map_x >= 0) & (map_x <= W - 1) & (map_y >= 0) & (map_y <= H - 1)
        self.valid.setflags(write=False)
        self._maps = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)  # fixed point: faster remap
        self.source, self.camera = source, source.undistorted()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, C) image of the source camera -> the undistorted image, same dtype."""
        if tuple(image.shape[:2]) != (self.source.height, self.source.width):
            raise InputError(
                f"image of {image.shape[1]}x{image.shape[0]} px does not match the "
                f"{self.source.width}x{self.source.height} camera it should be undistorted with"
            )
        cv2 = _cv2()
        return cv2.remap(image, *self._maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@lru_cache(maxsize=4)
def undistorter_for(camera: Camera) -> Undistorter:
    """The :class:`Undistorter` of ``camera``, built once per calibration (cached by value)."""
    return Undistorter(camera)

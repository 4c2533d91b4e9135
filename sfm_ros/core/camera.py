"""One camera value: the intrinsics together with the image size and lens distortion they describe.

A :class:`Camera` travels with its image through resizes and crops. Every derived camera takes
its scale factors from the integer image sizes (``new_width / width``), never from a nominal
factor, so K stays exact for the pixels actually produced (pixel centres at integer
coordinates, as ROS and OpenCV place them; see ``core/geometry.py``).

``rectified`` says whether the pixels follow the pinhole model ``K`` (an undistorted or
``image_rect`` image) or still carry the lens distortion ``D`` of ``distortion_model`` (a raw
image, OpenCV/ROS conventions: ``plumb_bob`` and ``rational_polynomial`` are OpenCV's standard
model with 4-14 coefficients, ``equidistant`` is OpenCV's fisheye model with 4). Pinhole
geometry (back-projection, warping, point clouds) is only valid on cameras that are not
:attr:`~Camera.distorted`; ``core/undistort.py`` turns a distorted image into a pinhole one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.geometry import (
    check_intrinsics,
    crop_intrinsics,
    flip_intrinsics,
    scale_intrinsics,
)

DISTORTION_COEFFICIENTS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (4, 5, 8, 12, 14),
    "rational_polynomial": (8, 12, 14),
    "equidistant": (4,),
}
"""Distortion models that can be undistorted -> the coefficient counts OpenCV accepts."""


@dataclass(frozen=True, eq=False)
class Camera:
    """Intrinsics ``K`` (3, 3) float64 in pixels of a ``width`` x ``height`` image, with its
    distortion. An immutable value: equal cameras compare and hash equal (cache keys).

    Attributes:
        K: (3, 3) float64, read-only.
        width, height: image size in pixels.
        D: distortion coefficients of ``distortion_model``; () or all zero = none.
        distortion_model: ROS name ("plumb_bob", "rational_polynomial", "equidistant").
        rectified: the pixels follow the pinhole model ``K``; a rectified camera has no D.

    Raises:
        InputError: non-finite values, focal lengths <= 0, a principal point far outside the
            image, a size <= 0, distortion on a rectified camera, or an unknown distortion
            model or coefficient count.
    """

    K: np.ndarray
    width: int
    height: int
    D: tuple[float, ...] = ()
    distortion_model: str = "plumb_bob"
    rectified: bool = True

    def __post_init__(self) -> None:
        width, height = int(self.width), int(self.height)
        if width <= 0 or height <= 0:
            raise InputError(f"camera image size must be positive, got {width}x{height}")
        K = np.array(self.K, dtype=np.float64)  # a copy: the caller's array stays theirs
        if K.shape != (3, 3):
            raise InputError(f"K must have shape (3, 3), got {K.shape}")
        check_intrinsics(K, width, height)
        D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(D)):
            raise InputError(f"distortion coefficients contain NaN or inf: {D.tolist()}")
        if not np.any(D):
            D = D[:0]  # all zero: no distortion
        elif self.rectified:
            raise InputError(
                f"a rectified camera has no distortion, got D={D.tolist()} "
                f"({self.distortion_model})"
            )
        elif len(D) not in DISTORTION_COEFFICIENTS.get(self.distortion_model, ()):
            known = ", ".join(f"{m} {n}" for m, n in DISTORTION_COEFFICIENTS.items())
            raise InputError(
                f"unsupported distortion: model '{self.distortion_model}' with {len(D)} "
                f"coefficients (supported models and counts: {known})"
            )
        K.setflags(write=False)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "D", tuple(float(d) for d in D))
        object.__setattr__(self, "rectified", bool(self.rectified))

    # ------------------------------------------------------------------ value semantics
    def _key(self) -> tuple:
        model = self.distortion_model if self.D else ""
        return (self.K.tobytes(), self.width, self.height, self.D, model, self.rectified)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Camera) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    # ------------------------------------------------------------------ properties
    @property
    def distorted(self) -> bool:
        """The pixels carry lens distortion: undistort them before any pinhole geometry."""
        return bool(self.D)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    # ------------------------------------------------------------------ derived cameras
    def resized(self, width: int, height: int) -> Camera:
        """The camera of this image resized to ``width`` x ``height`` pixels.

        The scales are ``width / self.width`` and ``height / self.height`` of the integer
        sizes. Distortion acts on normalised coordinates, so D is unchanged.
        """
        if int(width) <= 0 or int(height) <= 0:
            raise InputError(f"cannot resize to {width}x{height}")
        K = scale_intrinsics(self.K, int(width) / self.width, int(height) / self.height)
        return dataclasses.replace(self, K=K, width=int(width), height=int(height))

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """The camera of the ``width`` x ``height`` window whose top-left pixel is (x0, y0)."""
        x0, y0, width, height = int(x0), int(y0), int(width), int(height)
        if x0 < 0 or y0 < 0 or width <= 0 or height <= 0:
            raise InputError(f"invalid crop x={x0}, y={y0}, {width}x{height}")
        if x0 + width > self.width or y0 + height > self.height:
            raise InputError(
                f"crop x={x0}, y={y0}, {width}x{height} does not fit a "
                f"{self.width}x{self.height} image"
            )
        K = crop_intrinsics(self.K, x0, y0)
        return dataclasses.replace(self, K=K, width=width, height=height)

    def flipped(self) -> Camera:
        """The camera of this image mirrored left-right (see ``geometry.flip_intrinsics``)."""
        if self.distorted:
            raise InputError("undistort the image before flipping it (the camera is distorted)")
        return dataclasses.replace(self, K=flip_intrinsics(self.K, self.width))

    def undistorted(self) -> Camera:
        """The pinhole camera an undistorted copy of this image has: same K and size, no D."""
        return Camera(self.K, self.width, self.height)

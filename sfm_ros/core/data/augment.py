"""Snippet augmentation: resize, random scale-crop, horizontal flip and colour jitter.

Every function applies the same transform to all frames of a snippet and keeps the intrinsics
exact (pixel centres at integer coordinates) through :class:`~sfm_ros.core.camera.Camera`: a
resize by ``s`` (from the integer sizes) maps ``u -> (u + 0.5) s - 0.5``, a crop at ``x0`` maps
``u -> u - x0`` and a flip maps ``u -> W - 1 - u``. Images are
(N, H, W, 3) uint8 (a list of (H, W, 3) frames is stacked); depth is (H, W) float32 metres and
is resampled with nearest neighbour so that no depth is invented at edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from sfm_ros.core.camera import Camera

Images = np.ndarray | Sequence[np.ndarray]
MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])


def resize_image(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (out_h, out_w, 3) uint8, bilinear (antialiased when shrinking)."""
    if image.shape[:2] == (out_h, out_w):
        return image
    return np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.BILINEAR))


def resize_depth(depth_m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """(H, W) float32 -> (out_h, out_w) float32, nearest neighbour."""
    if depth_m.shape == (out_h, out_w):
        return depth_m
    im = Image.fromarray(np.asarray(depth_m, dtype=np.float32), mode="F")
    return np.asarray(im.resize((out_w, out_h), Image.NEAREST))


def resize(
    images: Images, K: np.ndarray, out_h: int, out_w: int, depth_m: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Resize whole frames to (out_h, out_w).

    Returns:
        images (N, out_h, out_w, 3) uint8, K (3, 3) scaled, depth (out_h, out_w) or None.
    """
    images = np.asarray(images)
    h, w = images.shape[1:3]
    K = np.array(Camera(K, w, h).resized(out_w, out_h).K)
    images = np.stack([resize_image(im, out_h, out_w) for im in images])
    depth_m = None if depth_m is None else resize_depth(depth_m, out_h, out_w)
    return images, K, depth_m


def random_scale_crop(
    images: Images,
    K: np.ndarray,
    out_h: int,
    out_w: int,
    rng: np.random.Generator,
    max_scale: float = 1.15,
    depth_m: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Zoom in by a random factor in [1, max_scale] and crop a random (out_h, out_w) window.

    The frames are first resized so that (out_h, out_w) is filled at factor 1 (as SfMLearner
    does after its fixed resize), so any input size works and there is one resampling only.

    Returns:
        images (N, out_h, out_w, 3) uint8, K (3, 3), depth (out_h, out_w) or None.
    """
    images = np.asarray(images)
    h, w = images.shape[1:3]
    s = rng.uniform(1.0, max_scale)
    new_h, new_w = max(out_h, round(out_h * s)), max(out_w, round(out_w * s))
    images, K, depth_m = resize(images, K, new_h, new_w, depth_m)
    y0 = int(rng.integers(0, new_h - out_h + 1))
    x0 = int(rng.integers(0, new_w - out_w + 1))
    K = np.array(Camera(K, new_w, new_h).cropped(x0, y0, out_w, out_h).K)
    images = images[:, y0 : y0 + out_h, x0 : x0 + out_w]
    if depth_m is not None:
        depth_m = depth_m[y0 : y0 + out_h, x0 : x0 + out_w]
    return np.ascontiguousarray(images), K, depth_m


def horizontal_flip(
    images: Images, K: np.ndarray, depth_m: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mirror frames left-right. Poses that go with them must be mirrored with `flip_pose`.

    Returns:
        images (N, H, W, 3) uint8, K (3, 3) with ``cx' = W - 1 - cx``, depth (H, W) or None.
    """
    images = np.asarray(images)
    K = np.array(Camera(K, images.shape[2], images.shape[1]).flipped().K)
    images = np.ascontiguousarray(images[:, :, ::-1])
    depth_m = None if depth_m is None else np.ascontiguousarray(depth_m[:, ::-1])
    return images, K, depth_m


def flip_pose(T: np.ndarray) -> np.ndarray:
    """Pose (..., 4, 4) seen through horizontally flipped images: ``M T M``, M = diag(-1,1,1,1).

    Flipping the image is the same as mirroring the world about the camera's yz plane, so this
    applies alike to ``T_world_cam`` and to relative poses such as ``T_src_tgt``.
    """
    return MIRROR @ T @ MIRROR


def color_jitter(
    images: Images,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> np.ndarray:
    """Random brightness, contrast and saturation (no hue change), the same for every frame.

    Each factor is drawn uniformly from [1 - x, 1 + x]; contrast blends with each frame's mean
    grey level and saturation with its per-pixel grey, as torchvision does.

    Returns:
        (N, H, W, 3) uint8.
    """
    x = np.asarray(images).astype(np.float32)
    b, c, s = (rng.uniform(1.0 - v, 1.0 + v) for v in (brightness, contrast, saturation))
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x *= b
    mean_grey = (x @ weights).mean(axis=(1, 2))[:, None, None, None]
    x = mean_grey + (x - mean_grey) * c
    grey = (x @ weights)[..., None]
    x = grey + (x - grey) * s
    return np.clip(np.round(x), 0, 255).astype(np.uint8)

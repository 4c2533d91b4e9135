"""An object passing in front of the camera, painted into recorded images: a truck crossing
at a junction, people walking past a robot. The static-world renderer has no moving objects;
this paints one onto any image sequence, real or synthetic, to measure what the odometry does
when part of the view moves on its own.
"""

from __future__ import annotations

import numpy as np

from sfm_ros.core.errors import InputError


def object_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(height, width) float32 grey levels in [0, 255]: blocks of 4-16 pixels in random greys
    with thin dark seams (panels, signage), textured enough for features and for the photometric
    refinement."""
    rng = np.random.default_rng(seed)
    out = np.empty((height, width), np.float32)
    y = 0
    while y < height:
        rows = int(rng.integers(4, 17))
        x = 0
        while x < width:
            cols = int(rng.integers(4, 17))
            out[y : y + rows, x : x + cols] = rng.uniform(40, 220)
            out[y : y + rows, x : x + 1] *= 0.5
            x += cols
        out[y : y + 1] *= 0.5
        y += rows
    return out


def _columns(width: int, step: int, fraction: float, speed: float) -> tuple[int, int, int, int]:
    """The object's left edge (negative while it enters) and width in pixels, and the image
    columns ``lo:hi`` it covers at ``step`` (empty before it enters and after it left)."""
    if not (0 < fraction <= 1 and speed > 0 and step >= 0):
        raise InputError(
            f"need 0 < fraction <= 1, speed > 0, step >= 0, got {fraction, speed, step}"
        )
    object_width = max(1, round(fraction * width))
    left = round(step * speed * width) - object_width
    return left, object_width, max(left, 0), min(left + object_width, width)


def passing_object(
    image: np.ndarray, step: int, fraction: float = 0.4, speed: float = 0.03, seed: int = 0
) -> np.ndarray:
    """``image`` with a textured object crossing from the left edge to the right.

    Args:
        image: (H, W) or (H, W, C) uint8.
        step: frames since the object began to enter (0: its front edge at the left border).
        fraction: the object's width as a fraction of the image's; it covers the image's lower
            nine tenths.
        speed: how far it moves a frame, as a fraction of the image's width.
        seed: its texture.

    Returns:
        A new uint8 image of the same shape; ``image`` itself is not changed.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InputError(f"expected an (H, W[, C]) uint8 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    left, object_width, lo, hi = _columns(width, step, fraction, speed)
    out = image.copy()
    if hi > lo:
        top = height // 10
        patch = object_texture(height - top, object_width, seed)[:, lo - left : hi - left]
        out[top:, lo:hi] = np.round(patch if image.ndim == 2 else patch[..., None]).astype(np.uint8)
    return out


def passing_object_mask(
    height: int, width: int, step: int, fraction: float = 0.4, speed: float = 0.03
) -> np.ndarray:
    """(height, width) bool: the pixels `passing_object` paints at ``step``."""
    _, _, lo, hi = _columns(width, step, fraction, speed)
    mask = np.zeros((height, width), bool)
    mask[height // 10 :, lo:hi] = True
    return mask

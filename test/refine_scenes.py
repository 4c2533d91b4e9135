"""Analytic test scenes for the refinement, multi-view and keyframe tests.

A room seen from inside, in the world frame of an optical camera at the origin (x right, y down,
z forward): floor y = 1.5, walls x = -3 and x = 4, back wall z = 10, and a board (rectangle at
z = 5). Every surface carries a smooth solid texture (a sum of 3-D sinusoids with wavelengths of
1-2.5 m), except the right wall, which is one flat grey (textureless). Images are rendered by
casting one ray per pixel centre, so two views of the scene are photometrically consistent up to
interpolation, and the depth is exact.
"""

from __future__ import annotations

import numpy as np
import torch

from sfm_ros.core.lie import se3_exp

FLAT_GREY = 0.45
_RNG = np.random.default_rng(7)
_DIRS = _RNG.normal(size=(8, 3))
_WAVES = (
    _DIRS
    / np.linalg.norm(_DIRS, axis=1, keepdims=True)
    * (2 * np.pi / _RNG.uniform(1.0, 2.5, size=(8, 1)))
)
_PHASES = _RNG.uniform(0, 2 * np.pi, size=8)


def intrinsics(height: int, width: int) -> np.ndarray:
    """90 degree horizontal field of view, centred principal point."""
    f = width / 2
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def texture(X: np.ndarray) -> np.ndarray:
    """Grey level in [0, 1] of world points (..., 3) (mean 0.5, standard deviation 0.14)."""
    return np.clip(0.5 + 0.2 * np.sin(X @ _WAVES.T + _PHASES).sum(-1) / np.sqrt(8), 0.0, 1.0)


def render(
    T_world_cam: np.ndarray, K: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey image (H, W) in [0, 1], depth (H, W) metres and a flat-surface mask (H, W)."""
    u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1: t is depth
    R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
    d = rays @ R.T
    t = np.full((height, width), np.inf)
    flat = np.zeros((height, width), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, c, is_flat in (
            (1, 1.5, False),
            (0, -3.0, False),
            (0, 4.0, True),
            (2, 10.0, False),
        ):
            ti = (c - o[axis]) / d[..., axis]
            hit = (ti > 1e-6) & (ti < t)
            t[hit], flat[hit] = ti[hit], is_flat
        tb = (5.0 - o[2]) / d[..., 2]
        p = o + tb[..., None] * d
        board = (tb > 1e-6) & (tb < t) & (p[..., 0] > -1.2) & (p[..., 0] < 0.6) & (p[..., 1] > -1.0)
        t[board], flat[board] = tb[board], False
    X = o + t[..., None] * d
    image = np.where(flat, FLAT_GREY, texture(X))
    return image, t, flat


def pose(rot_deg: tuple[float, float, float], trans: tuple[float, float, float]) -> np.ndarray:
    """(4, 4) ``se3_exp`` of the twist (trans in metres, rotation vector in degrees)."""
    xi = torch.tensor([[*trans, *np.radians(rot_deg)]], dtype=torch.float64)
    return se3_exp(xi)[0].numpy()


def views(poses: list[np.ndarray], height: int = 48, width: int = 160) -> dict[str, torch.Tensor]:
    """Render ``T_world_cam`` poses: images and depth (N, 1, H, W) float32, the flat-surface
    mask (N, 1, H, W) bool, the poses (N, 4, 4) float64 and K (3, 3) float32."""
    K = intrinsics(height, width)
    out = [render(T, K, height, width) for T in poses]

    def stack(i: int) -> torch.Tensor:
        return torch.tensor(np.stack([o[i] for o in out])[:, None])

    return {
        "images": stack(0).float(),
        "depth": stack(1).float(),
        "flat": stack(2),
        "T_world_cam": torch.tensor(np.stack(poses)),
        "K": torch.tensor(K, dtype=torch.float32),
    }


def relative(T_world_a: torch.Tensor, T_world_b: torch.Tensor) -> torch.Tensor:
    """``T_a_b`` (4, 4) float64."""
    return torch.linalg.inv(T_world_a.double()) @ T_world_b.double()

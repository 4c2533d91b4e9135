"""Hash-based value noise: textures as pure functions of surface coordinates (no RNG state)."""

from __future__ import annotations

import numpy as np

_PRIME_X = np.uint64(0x9E3779B97F4A7C15)
_PRIME_Y = np.uint64(0xC2B2AE3D27D4EB4F)
_PRIME_K = np.uint64(0x165667B19E3779F9)
_MIX = np.uint64(0xFF51AFD7ED558CCD)


def _u64(x: np.ndarray | int, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=np.int64), shape).astype(np.uint64)


def hash01(ix: np.ndarray, iy: np.ndarray | int, key: np.ndarray | int) -> np.ndarray:
    """Uniform numbers in [0, 1), one per integer lattice cell (ix, iy) and stream ``key``.

    Arguments are integer arrays (or scalars) broadcast together; returns float64 of that shape.
    """
    shape = np.broadcast_shapes(np.shape(ix), np.shape(iy), np.shape(key))
    h = _u64(ix, shape) * _PRIME_X ^ _u64(iy, shape) * _PRIME_Y ^ _u64(key, shape) * _PRIME_K
    h ^= h >> np.uint64(33)
    h *= _MIX
    h ^= h >> np.uint64(29)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def value_noise(x: np.ndarray, y: np.ndarray, key: np.ndarray | int) -> np.ndarray:
    """Smooth noise in [0, 1) on a unit lattice: smoothstep blend of hashed corner values."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    v00, v10 = hash01(ix, iy, key), hash01(ix + 1, iy, key)
    v01, v11 = hash01(ix, iy + 1, key), hash01(ix + 1, iy + 1, key)
    near = v00 + (v10 - v00) * fx
    far = v01 + (v11 - v01) * fx
    return near + (far - near) * fy


def fbm(x: np.ndarray, y: np.ndarray, key: np.ndarray | int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of ``octaves`` value-noise layers (frequency x2, amplitude /2), in [0, 1)."""
    total = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        f = float(2**o)
        total += amp * value_noise(x * f, y * f, np.asarray(key) + 101 * o)
        norm += amp
        amp *= 0.5
    return total / norm

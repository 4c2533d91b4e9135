"""Albedo of every material as a pure function of surface coordinates.

Everything is Lambertian and fixed in the world (no view-dependent term), so two views of one
surface point see the same colour up to the fixed directional shading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np

from sfm_ros.core.synthetic.noise import fbm, hash01, value_noise


class Material(IntEnum):
    ROAD = 0  # street ground: asphalt, markings, kerb, sidewalk tiles
    GRASS = 1  # field ground with a dirt track along the path
    FLOOR = 2  # corridor floor tiles
    CEILING = 3  # corridor ceiling panels and lights
    FACADE = 4  # building walls with windows
    CAR = 5
    BARK = 6
    FOLIAGE = 7
    WALL = 8  # corridor walls with doors and posters
    STONE = 9  # pillars and rocks


@dataclass(frozen=True)
class Surface:
    """P hit points of one material; arrays (P,) unless noted, lengths in metres.

    ``a, b`` are coordinates fixed to the surface: on the ground and ceiling the arc length along
    the path and the lateral offset (left positive); on vertical faces the distance along the face
    from its edge and the height above the ground; on box tops the box's local x and y.
    """

    p: np.ndarray  # (P, 3) world point
    a: np.ndarray
    b: np.ndarray
    vertical: np.ndarray  # bool: a vertical face
    width: np.ndarray  # extent of the face along a (circumference for cylinders)
    top: np.ndarray  # world z of the object's top
    colour: np.ndarray  # (P, 3) the object's base colour
    key: np.ndarray  # int64 texture stream of the object (or of the scene for planes)

    def take(self, sel: np.ndarray) -> Surface:
        return Surface(*(getattr(self, f.name)[sel] for f in fields(self)))


def _rgb(v: np.ndarray, tint: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """Grey level v (P,) times a colour (3,) or (P, 3)."""
    return v[:, None] * np.asarray(tint, dtype=np.float64)


def _mix(c0: np.ndarray, c1: np.ndarray, w: np.ndarray) -> np.ndarray:
    return c0 + (c1 - c0) * w[:, None]


def _cells(x: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer cell index and fraction in [0, 1) of x on a grid of ``size`` metres."""
    q = x / size
    i = np.floor(q)
    return i.astype(np.int64), q - i


def road(sf: Surface) -> np.ndarray:
    """Asphalt with a dashed centre line and lane edges, kerbs, tiled sidewalks beyond 7 m."""
    s, lat, k = sf.a, sf.b, sf.key
    al = np.abs(lat)
    grain = fbm(s * 2.0, lat * 2.0, k, 3)
    patch = value_noise(s * 0.2, lat * 0.4, k + 1)
    asphalt = 0.05 + 0.45 * grain + 0.15 * patch
    paint = (al < 0.1) & (np.mod(s, 6.0) < 3.0) | (np.abs(al - 3.6) < 0.1)
    asphalt = np.where(paint, 0.7 + 0.2 * grain, asphalt)
    ti, fs = _cells(s, 0.8)
    tj, fl = _cells(lat, 0.8)
    tile = 0.35 + 0.3 * hash01(ti, tj, k + 2) + 0.2 * (grain - 0.5)
    tile = np.where((fs < 0.08) | (fl < 0.08), 0.2, tile)
    out = _rgb(asphalt, (0.95, 0.97, 1.0))
    side = al >= 7.0
    out[side] = _rgb(tile[side], (1.1, 0.95, 0.8))
    kerb = side & (al < 7.25)
    out[kerb] = _rgb(0.75 + 0.1 * grain[kerb], (1.0, 1.0, 1.0))
    return out


def grass(sf: Surface) -> np.ndarray:
    """Green grass with dry patches and clumps; a dirt track within ~1.2 m of the path."""
    x, y, k = sf.p[:, 0], sf.p[:, 1], sf.key
    dry = fbm(x * 0.08, y * 0.08, k, 2)
    clump = fbm(x * 1.0, y * 1.0, k + 1, 3)
    green = _mix(
        np.array([0.15, 0.4, 0.08]), np.array([0.55, 0.5, 0.2]), np.clip(2 * dry - 0.6, 0, 1)
    )
    out = green * (0.2 + 1.5 * clump)[:, None]
    dirt = _rgb(0.4 + 0.9 * (fbm(x * 2.5, y * 2.5, k + 2, 2) - 0.5), (0.5, 0.38, 0.25)) * 1.6
    return _mix(out, dirt, np.clip((1.4 - np.abs(sf.b)) / 0.4, 0.0, 1.0))


def floor(sf: Surface) -> np.ndarray:
    """Checkerboard tiles of 0.6 m aligned with the corridor, with per-tile shade and grain."""
    ti, _ = _cells(sf.a, 0.6)
    tj, _ = _cells(sf.b, 0.6)
    dark = (ti + tj) % 2 == 1
    v = (
        np.where(dark, 0.3, 0.75)
        + 0.12 * hash01(ti, tj, sf.key)
        + 0.15 * fbm(sf.a * 3, sf.b * 3, sf.key + 1, 2)
    )
    return _rgb(v, (0.95, 0.9, 0.8))


def ceiling(sf: Surface) -> np.ndarray:
    """1.2 m panels with dark joints; every fourth row has a bright light along the middle."""
    ti, fs = _cells(sf.a, 1.2)
    _, fl = _cells(sf.b, 1.2)
    v = 0.6 + 0.2 * fbm(sf.a * 2, sf.b * 2, sf.key + 3, 2)
    v = np.where((fs < 0.05) | (fl < 0.05), 0.25, v)
    v = np.where((ti % 4 == 0) & (np.abs(sf.b) < 0.4) & (fs > 0.15) & (fs < 0.85), 1.5, v)
    return _rgb(v, (1.0, 1.0, 0.95))


def facade(sf: Surface) -> np.ndarray:
    """Rendered walls with floors of windows (3 m bays, 3.2 m storeys); dark flat roofs."""
    a, b, k = sf.a, sf.b, sf.key
    wall = sf.colour * (0.6 + 0.8 * fbm(a * 1.5, b * 1.5, k, 3))[:, None]
    bays = np.maximum(np.floor(sf.width / 3.0), 1.0)
    margin = (sf.width - 3.0 * bays) / 2
    bay, fa = _cells(a - margin, 3.0)
    storey, fb = _cells(b, 3.2)
    inside = (bay >= 0) & (bay < bays) & (b < sf.top - 1.0)
    frame = inside & (fa > 0.2) & (fa < 0.8) & (fb > 0.25) & (fb < 0.85) & (storey >= 1)
    glass = inside & (fa > 0.25) & (fa < 0.75) & (fb > 0.3) & (fb < 0.8) & (storey >= 1)
    shop = inside & (storey == 0) & (fa > 0.1) & (fa < 0.9) & (fb > 0.1) & (fb < 0.8)
    shade = 0.1 + 0.5 * hash01(bay, storey, k + 1)
    glass_rgb = _rgb(shade + 0.1 * value_noise(a * 2, b * 2, k + 2), (0.8, 0.9, 1.1))
    out = np.where(frame[:, None], 0.85, wall)
    out = np.where((glass | shop)[:, None], glass_rgb, out)
    roof = _rgb(0.2 + 0.3 * fbm(a, b, k + 3, 2), (1.0, 1.0, 1.0))
    return np.where(sf.vertical[:, None], out, roof)


def car(sf: Surface) -> np.ndarray:
    """Body colour with a dark wheel band; the cabin box (above 1 m) has windows and pillars."""
    a, b = sf.a, sf.b
    out = sf.colour * (0.8 + 0.4 * value_noise(a * 1.5, b * 1.5, sf.key))[:, None]
    glass = (b > 1.0) & (b < sf.top - 0.08) & (a > 0.15) & (a < sf.width - 0.15)
    dark = sf.vertical & ((b < 0.3) | glass)
    out[dark] = _rgb(0.05 + 0.2 * value_noise(a[dark] * 3, b[dark] * 3, sf.key[dark]), (1, 1, 1.1))
    return out


def bark(sf: Surface) -> np.ndarray:
    """Brown bark with vertical furrows (a is arc length around the trunk)."""
    v = 0.4 + 1.0 * value_noise(sf.a * 5.0, sf.b * 0.8, sf.key)
    return _rgb(v, (0.42, 0.3, 0.2))


def foliage(sf: Surface) -> np.ndarray:
    """Leafy crown: the tree's green modulated by noise of the 3D point (three projections)."""
    x, y, z = (sf.p[:, j] * 1.5 for j in range(3))
    n = (fbm(x, y, sf.key, 2) + fbm(y, z, sf.key + 1, 2) + fbm(z, x, sf.key + 2, 2)) / 3
    return sf.colour * (3.0 * n - 0.6)[:, None]


def wall(sf: Surface) -> np.ndarray:
    """Painted wall with a skirting board; per panel a door, a poster or a coloured band."""
    a, b, k = sf.a, sf.b, sf.key
    out = sf.colour * (0.7 + 0.6 * fbm(a * 2.0, b * 2.0, k, 3))[:, None]
    out[b < 0.12] = 0.15
    kind = k % 3
    da = a - sf.width / 2
    band = (kind == 0) & (b > 0.9) & (b < 1.05)
    out[band] = sf.colour[band][:, ::-1] * 0.8
    door = (kind == 1) & (np.abs(da) < 0.55) & (b < 2.15)
    leaf = door & (np.abs(da) < 0.45) & (b < 2.05)
    out[door] = 0.2
    out[leaf] = _rgb(
        0.5 + 0.8 * value_noise(a[leaf] * 8.0, b[leaf] * 0.6, k[leaf]), (0.5, 0.34, 0.2)
    )
    poster = (kind == 2) & (np.abs(da) < 0.6) & (b > 1.0) & (b < 2.0)
    ci, _ = _cells(da[poster], 0.3)
    cj, _ = _cells(b[poster], 0.25)
    kp = k[poster]
    out[poster] = np.stack([hash01(ci, cj, kp + c) for c in range(3)], axis=-1) * 0.9 + 0.05
    return out


def stone(sf: Surface) -> np.ndarray:
    """Stone blocks of 0.7 x 0.5 m with mortar joints and per-block shade."""
    bi, fb = _cells(sf.b, 0.5)
    ai, fa = _cells(sf.a + 0.35 * (bi % 2), 0.7)
    v = 0.4 + 0.35 * hash01(ai, bi, sf.key) + 0.25 * fbm(sf.a * 3, sf.b * 3, sf.key + 1, 2)
    v = np.where(sf.vertical & ((fb < 0.06) | (fa < 0.05)), 0.2, v)
    return sf.colour * v[:, None]


ALBEDO: dict[Material, Callable[[Surface], np.ndarray]] = {
    Material.ROAD: road,
    Material.GRASS: grass,
    Material.FLOOR: floor,
    Material.CEILING: ceiling,
    Material.FACADE: facade,
    Material.CAR: car,
    Material.BARK: bark,
    Material.FOLIAGE: foliage,
    Material.WALL: wall,
    Material.STONE: stone,
}
"""Material -> function of a Surface returning albedo (P, 3) float64 (may exceed 1 for lights)."""

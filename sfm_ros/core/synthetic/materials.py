"""Albedo of every material as a pure function of surface coordinates.

Everything is Lambertian and fixed in the world (no view-dependent term), so two views of one
surface point see the same colour up to the fixed directional shading. Fine detail of the newer
materials fades to its mean as the pixel footprint grows (`_lod`), as a camera's pixel
integrates it, so that it does not alias; the footprint changes with distance, so two views of
such detail agree exactly only while it is well resolved or fully faded.
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
    BRICK = 10  # brick building walls with windows and shop signs
    WOOD = 11  # planks: fences, barns, pallets
    CONCRETE = 12  # warehouse floor: slabs, stains, tyre marks, painted lines
    RACK = 13  # painted, perforated steel of shelving racks
    CARTON = 14  # stacked cardboard cartons with tape and labels
    SHED = 15  # warehouse walls: cladding, block base, roller and personnel doors, signs
    LANE = 16  # country road: asphalt, edge and centre lines, gravel shoulder, verge
    MEADOW = 17  # open grass, crops and ploughed land (hills, verges)
    LEAVES = 18  # leafy crown with clusters and gaps


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
    footprint: np.ndarray  # metres of surface one pixel covers (textures fade finer detail)

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


def _lod(size: float | np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Weight in [0, 1] of detail of ``size`` metres: 1 while a pixel covers less than a quarter
    of it, 0 from half of it (the Nyquist limit); blend detail into its mean with it."""
    return np.clip(2.0 - 4.0 * footprint / size, 0.0, 1.0)


def _text(x: np.ndarray, y: np.ndarray, key: np.ndarray | int) -> np.ndarray:
    """Ink mask (bool) of lines of text-like glyphs, x and y in glyph widths (y down a line)."""
    gx, fx = _cells(x, 1.0)
    gy, fy = _cells(y, 1.8)
    sx = np.minimum(np.floor(fx / 0.75 * 3), 2).astype(np.int64)
    sy = np.minimum(np.floor(fy * 1.8 / 1.3 * 5), 4).astype(np.int64)
    inside = (fx < 0.75) & (fy * 1.8 < 1.3)
    space = hash01(gx, gy, np.asarray(key) + 1) < 0.18
    return inside & ~space & (hash01(gx * 4 + sx, gy * 8 + sy, key) < 0.45)


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


def _glazing(sf: Surface, wall: np.ndarray) -> np.ndarray:
    """Floors of windows (3 m bays, 3.2 m storeys) and shop fronts on ``wall``; dark flat roofs."""
    a, b, k = sf.a, sf.b, sf.key
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


def facade(sf: Surface) -> np.ndarray:
    """Rendered walls with floors of windows (3 m bays, 3.2 m storeys); dark flat roofs."""
    wall = sf.colour * (0.6 + 0.8 * fbm(sf.a * 1.5, sf.b * 1.5, sf.key, 3))[:, None]
    return _glazing(sf, wall)


def brick(sf: Surface) -> np.ndarray:
    """Brick walls (0.25 x 0.08 m bricks, per-brick shade, mortar) with windows as `facade`, and
    a shop sign with lettering above every shop front."""
    a, b, k = sf.a, sf.b, sf.key
    row, fb = _cells(b, 0.08)
    col, fa = _cells(a + 0.125 * (row % 2), 0.25)
    shade = 0.75 + 0.4 * hash01(col, row, k) + 0.25 * (fbm(a * 0.7, b * 0.7, k + 4, 2) - 0.5)
    mortar = (fb < 0.18) | (fa < 0.06)
    detail = np.where(mortar, 1.1, shade)
    v = 0.95 + (detail - 0.95) * _lod(0.08, sf.footprint)
    out = _glazing(sf, sf.colour * v[:, None])
    band = sf.vertical & (b > 2.75) & (b < 3.2) & (sf.top > 4.0)
    ink = _text((a - 0.3) / 0.22, (3.12 - b) / 0.22, k + 5) & (band & (a > 0.3))
    sign = _rgb(0.3 + 0.6 * hash01(k, 0, 6), (1.0, 0.95, 0.85))
    out[band] = np.where(ink[band, None], 0.08, sign[band])
    return out


def wood(sf: Surface) -> np.ndarray:
    """Boards 0.15 m wide along the face with per-board shade, grain and dark gaps."""
    a, b, k = sf.a, sf.b, sf.key
    board, fb = _cells(b, 0.15)
    grain = value_noise(a * 0.7, b * 25.0, k) * 0.6 + 0.4 * value_noise(a * 3.0, b * 60.0, k + 1)
    v = (0.7 + 0.35 * hash01(board, 0, k + 2)) * (0.8 + 0.4 * grain * _lod(0.05, sf.footprint))
    v = np.where(fb < 0.08, 0.5 + 0.5 * (1 - _lod(0.15, sf.footprint)), 1.0) * v
    return sf.colour * v[:, None]


def concrete(sf: Surface) -> np.ndarray:
    """Warehouse floor: sealed concrete slabs (5 m joints), stains, tyre marks along the aisle,
    yellow aisle lines at 1.3 m and striped keep-clear zones."""
    s, lat, k, fp = sf.a, sf.b, sf.key, sf.footprint
    x, y = sf.p[:, 0], sf.p[:, 1]
    v = 0.5 + 0.2 * fbm(x * 0.3, y * 0.3, k, 3) + 0.12 * (fbm(x * 3, y * 3, k + 1, 2) - 0.5)
    tyre = np.exp(-(((np.abs(lat) - 0.55) / 0.12) ** 2)) * value_noise(s * 0.2, lat, k + 2)
    v = v - 0.18 * tyre
    _, fx = _cells(x, 5.0)
    _, fy = _cells(y, 5.0)
    joint = (np.minimum(fx, 1 - fx) < 0.004) | (np.minimum(fy, 1 - fy) < 0.004)
    v = np.where(joint, v - 0.25 * _lod(0.04, fp), v)
    out = _rgb(v, (0.95, 0.95, 0.92))
    line = np.abs(np.abs(lat) - 1.3) < 0.05
    zone_i, fz = _cells(s, 8.0)
    zone = (hash01(zone_i, 0, k + 3) < 0.25) & (fz < 0.3) & (np.abs(lat) < 1.2)
    stripe = np.mod((s + lat) / 0.3, 1.0) < 0.5
    yellow = _rgb(0.8 + 0.1 * value_noise(s * 2, lat * 2, k + 4), (1.0, 0.8, 0.1))
    out[line] = yellow[line]
    dark = 0.2 * yellow
    mean = (yellow + dark) / 2
    stripes = np.where(stripe[:, None], yellow, dark)
    out[zone] = (mean + (stripes - mean) * _lod(0.3, fp)[:, None])[zone]
    return out


def rack(sf: Surface) -> np.ndarray:
    """Painted steel with a column of slots every 7.5 cm on the faces, slight wear."""
    v = 0.85 + 0.3 * value_noise(sf.a * 4, sf.b * 4, sf.key)
    _, fb = _cells(sf.b, 0.075)
    slot = sf.vertical & (fb < 0.35) & (np.abs(np.mod(sf.a, 0.1) - 0.05) < 0.02)
    v = np.where(slot, v * (1 - 0.8 * _lod(0.03, sf.footprint)), v)
    return sf.colour * v[:, None]


def carton(sf: Surface) -> np.ndarray:
    """Cartons stacked on a pallet load: per-carton shade, a tape strip, some white labels with
    printing."""
    a, b, k = sf.a, sf.b, sf.key
    size = 0.3 + 0.3 * hash01(k, 1, 7)
    ci, fa = _cells(a, size)
    cj, fb = _cells(b, size * 0.8)
    v = 0.75 + 0.35 * hash01(ci, cj, k) + 0.15 * (value_noise(a * 8, b * 8, k + 1) - 0.5)
    out = _rgb(v, (0.62, 0.47, 0.3))
    fp = sf.footprint
    seam = (fa < 0.03) | (fb < 0.03)
    out[seam] *= 1.0 - 0.5 * _lod(0.03 * size[seam], fp[seam])[:, None]
    tape = np.abs(fa - 0.5) < 0.07
    out[tape] = out[tape] * 1.25
    label = (hash01(ci, cj, k + 2) < 0.4) & (np.abs(fa - 0.3) < 0.15) & (np.abs(fb - 0.6) < 0.12)
    ink = _text((fa - 0.15) * size / 0.02, (fb - 0.48) * 0.8 * size / 0.02, ci * 31 + cj + k)
    lab = np.where(ink, 0.9 - 0.7 * _lod(0.02, fp), 0.9)
    out[label] = _rgb(lab[label], (1.0, 1.0, 0.98))
    return np.where(sf.vertical[:, None], out, _rgb(v, (0.6, 0.46, 0.3)))


def shed(sf: Surface) -> np.ndarray:
    """Industrial wall: block base to 1.2 m, ribbed cladding above; per wall (key) a roller door,
    a personnel door, a safety sign with lettering and a green exit sign."""
    a, b, k, fp = sf.a, sf.b, sf.key, sf.footprint
    rib = 0.85 + 0.15 * np.cos(2 * np.pi * a / 0.2) * _lod(0.2, fp)
    out = sf.colour * (rib * (0.85 + 0.3 * fbm(a * 0.5, b * 0.5, k, 2)))[:, None]
    row, fb = _cells(b, 0.2)
    col, fa = _cells(a + 0.2 * (row % 2), 0.4)
    blocks = 0.55 + 0.15 * hash01(col, row, k + 1)
    blocks = np.where((fb < 0.06) | (fa < 0.03), 0.55 - 0.2 * _lod(0.03, fp), blocks)
    base = b < 1.2
    out[base] = _rgb(blocks[base], (0.9, 0.9, 0.88))
    centre = sf.width * (0.25 + 0.5 * hash01(k, 2, 3))
    roller = (np.abs(a - centre) < 1.8) & (b < 4.0)
    slat = 0.7 + 0.15 * (np.mod(b, 0.12) < 0.06) * _lod(0.12, fp)
    out[roller] = _rgb(slat[roller], (0.85, 0.87, 0.9))
    out[roller & (np.abs(np.abs(a - centre) - 1.8) < 0.1)] = (0.85, 0.65, 0.1)
    door_x = np.mod(centre + 4.0, np.maximum(sf.width - 1.0, 1.0))
    door = (np.abs(a - door_x) < 0.5) & (b < 2.1)
    out[door] = _rgb(0.3 + 0.1 * value_noise(a[door] * 3, b[door] * 3, k[door]), (0.3, 0.4, 0.6))
    sign_x = np.mod(centre - 3.5, np.maximum(sf.width - 1.0, 1.0))
    sign = (np.abs(a - sign_x) < 0.6) & (np.abs(b - 2.2) < 0.4)
    ink = _text((a - sign_x + 0.5) / 0.09, (2.5 - b) / 0.09, k + 4)
    out[sign] = np.where(ink[sign, None], 0.1 + 0.8 * (1 - _lod(0.09, fp[sign]))[:, None], 0.92)
    exit_sign = (np.abs(a - door_x) < 0.25) & (np.abs(b - 2.35) < 0.1)
    out[exit_sign] = (0.1, 0.8, 0.3)
    return np.where(sf.vertical[:, None], out, _rgb(0.4 + 0.1 * fbm(a, b, k, 2), (1, 1, 1)))


def meadow(sf: Surface) -> np.ndarray:
    """Open land in 45 m parcels (by world position): grass with dry patches and flowers (3 in 5),
    ploughed furrows or a crop in rows, each parcel with its own row direction."""
    x, y, k, fp = sf.p[:, 0], sf.p[:, 1], sf.key, sf.footprint
    dry = fbm(x * 0.05, y * 0.05, k, 3)
    clump = 0.5 + (fbm(x * 1.2, y * 1.2, k + 1, 3) - 0.5) * (0.4 + 0.6 * _lod(0.5, fp))
    green = _mix(
        np.array([0.17, 0.38, 0.1]), np.array([0.55, 0.5, 0.25]), np.clip(2 * dry - 0.5, 0, 1)
    )
    out = green * (0.35 + 1.2 * clump)[:, None]
    fi, _ = _cells(x, 0.15)
    fj, _ = _cells(y, 0.15)
    flower = (hash01(fi, fj, k + 2) < 0.03) & (dry < 0.5)
    out[flower] = _mix(out[flower], np.array([0.95, 0.9, 0.4]), _lod(0.15, fp[flower]))
    pi, _ = _cells(x, 45.0)
    pj, _ = _cells(y, 45.0)
    parcel = hash01(pi, pj, k + 5)
    along = x * np.cos(parcel * 40.0) + y * np.sin(parcel * 40.0)
    furrow = 0.75 + 0.25 * np.cos(2 * np.pi * along / 0.7) * _lod(0.7, fp)
    soil = _rgb(furrow * (0.7 + 0.6 * fbm(x * 0.5, y * 0.5, k + 3, 2)), (0.42, 0.3, 0.2))
    rows = 0.6 + 0.4 * np.cos(2 * np.pi * along / 1.2) * _lod(1.2, fp)
    crop = _mix(np.array([0.45, 0.5, 0.15]), np.array([0.8, 0.7, 0.3]), dry) * rows[:, None]
    out = np.where((parcel >= 0.6)[:, None], soil, out)
    return np.where((parcel >= 0.8)[:, None], crop, out)


def lane(sf: Surface) -> np.ndarray:
    """Country road 6 m wide: worn asphalt with patches, solid edge lines, a dashed centre line,
    gravel shoulders to 4 m and a grass verge beyond."""
    s, lat, k, fp = sf.a, sf.b, sf.key, sf.footprint
    al = np.abs(lat)
    grain = 0.5 + (fbm(s * 3.0, lat * 3.0, k, 3) - 0.5) * (0.3 + 0.7 * _lod(0.3, fp))
    patch = value_noise(s * 0.1, lat * 0.5, k + 1)
    asphalt = 0.12 + 0.35 * grain + 0.12 * (patch > 0.7)
    worn = np.exp(-(((al - 1.5) / 0.4) ** 2)) * 0.08
    out = _rgb(asphalt + worn, (0.97, 0.98, 1.0))
    edge = np.abs(al - 2.8) < 0.06
    centre = (al < 0.06) & (np.mod(s, 12.0) < 3.0)
    metre, _ = _cells(s, 1.0)
    paint = (edge | centre) & (hash01(metre, 0, k + 2) > 0.1)
    out[paint] = _rgb(0.75 + 0.15 * grain[paint], (1.0, 1.0, 0.95))
    gravel_v = 0.55 + 0.4 * (fbm(s * 6, lat * 6, k + 3, 2) - 0.5) * (0.3 + 0.7 * _lod(0.15, fp))
    gravel = (al >= 3.0) & (al < 4.0 + 0.5 * value_noise(s * 0.3, 0, k + 4))
    out[gravel] = _rgb(gravel_v[gravel], (0.75, 0.68, 0.55))
    verge = (al >= 3.0) & ~gravel
    out[verge] = meadow(sf.take(verge))
    return out


def leaves(sf: Surface) -> np.ndarray:
    """Leafy crown: clusters of leaves (3D noise of the point at two scales) with dark gaps."""
    x, y, z = (sf.p[:, j] for j in range(3))
    k, fp = sf.key, sf.footprint
    cluster = (fbm(x * 1.2, y * 1.2, k, 2) + fbm(y * 1.2, z * 1.2, k + 1, 2)) / 2
    fine = (value_noise(x * 6, z * 6, k + 2) + value_noise(y * 6, x * 6, k + 3)) / 2
    v = 0.25 + 1.4 * np.clip(cluster - 0.25, 0, 1) + 0.5 * (fine - 0.5) * _lod(0.17, fp)
    hue = 0.85 + 0.3 * value_noise(x * 0.5, y * 0.5, k + 4)
    return sf.colour * (v * hue)[:, None]


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
    Material.BRICK: brick,
    Material.WOOD: wood,
    Material.CONCRETE: concrete,
    Material.RACK: rack,
    Material.CARTON: carton,
    Material.SHED: shed,
    Material.LANE: lane,
    Material.MEADOW: meadow,
    Material.LEAVES: leaves,
}
"""Material -> function of a Surface returning albedo (P, 3) float64 (may exceed 1 for lights)."""

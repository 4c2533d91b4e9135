"""The five worlds: road layouts, object placement, lighting and camera motion per domain.

Each domain lays its scene out along a `Path` generated segment by segment from the seed, and
populates every segment from its own random stream, so a longer sequence extends a shorter one
without changing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.synthetic.materials import Material
from sfm_ros.core.synthetic.path import Path
from sfm_ros.core.synthetic.scene import PrimitiveBuilder, Scene

DOMAINS: tuple[str, ...] = ("street", "corridor", "field", "warehouse", "rural")

BASE_FPS = 10.0  # frame rate that ``step_m`` refers to
CORRIDOR_HALF_WIDTH_M = 1.4
CORRIDOR_CEILING_M = 2.6
WAREHOUSE_CEILING_M = 8.0
AISLE_HALF_WIDTH_M = 1.6  # path to the front of the racks
RACK_DEPTH_M = 1.1

SegmentFn = Callable[[np.random.Generator, int, float], tuple[float, float]]
PopulateFn = Callable[[np.random.Generator, Path, int, PrimitiveBuilder], None]


@dataclass(frozen=True)
class DomainSpec:
    """How one domain is built and traversed.

    Attributes:
        camera_height_m: camera height above the ground plane (level camera by default).
        camera_height_range_m: (low, high) heights drawn by geometric randomisation.
        step_m: mean travel per frame at ``BASE_FPS``.
        lateral_m: camera offset from the path, left positive.
        yaw_wobble_rad: amplitude of a slow look-around added to the path heading.
        segment: (rng, index, heading) -> (length m, curvature 1/m) of the next path segment.
        populate: adds the primitives of one path segment.
    """

    camera_height_m: float
    camera_height_range_m: tuple[float, float]
    step_m: float
    lateral_m: float
    yaw_wobble_rad: float
    ground: Material
    ceiling_z: float | None
    ambient: float
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    max_range_m: float
    lookahead_m: float
    segment: SegmentFn
    populate: PopulateFn


def _turn(
    rng: np.random.Generator, heading: float, angle: float, radius: float, max_heading: float
) -> tuple[float, float]:
    """An arc turning by ``angle`` rad, direction chosen so |heading| stays <= max_heading."""
    sign = rng.choice([-1.0, 1.0])
    if abs(heading + sign * angle) > max_heading:
        sign = -sign
    return angle * radius, sign / radius


def _normal(heading: np.ndarray | float) -> np.ndarray:
    """Unit vector to the left of a heading, (..., 2)."""
    return np.stack([-np.sin(heading), np.cos(heading)], axis=-1)


def _key(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31))


# ---------------------------------------------------------------------------- street
_FACADE_COLOURS = np.array(
    [
        [0.62, 0.3, 0.22],
        [0.85, 0.78, 0.6],
        [0.6, 0.6, 0.62],
        [0.9, 0.85, 0.7],
        [0.45, 0.5, 0.6],
        [0.75, 0.55, 0.35],
    ]
)
_CAR_COLOURS = np.array(
    [
        [0.7, 0.1, 0.1],
        [0.1, 0.2, 0.6],
        [0.85, 0.85, 0.85],
        [0.15, 0.15, 0.15],
        [0.5, 0.5, 0.55],
        [0.1, 0.45, 0.2],
        [0.85, 0.7, 0.1],
    ]
)


def _street_segment(rng: np.random.Generator, i: int, heading: float) -> tuple[float, float]:
    if i % 2 == 0:
        return float(rng.uniform(40.0, 120.0)), 0.0
    return _turn(rng, heading, rng.uniform(0.15, 0.5), rng.uniform(120.0, 300.0), 0.8)


def _tree(
    b: PrimitiveBuilder, rng: np.random.Generator, xy: np.ndarray, s0: float, scale: float = 1.0
) -> None:
    """A trunk with a spherical crown."""
    r = rng.uniform(0.15, 0.3) * scale
    top = rng.uniform(2.6, 4.0) * scale
    crown = rng.uniform(1.2, 2.2) * scale
    green = np.array([0.2, 0.45, 0.12]) * rng.uniform(0.7, 1.3, 3)
    b.cylinder(xy, r, 0.0, top + 0.5 * crown, (Material.BARK, (0.4, 0.3, 0.2), _key(rng), s0))
    b.sphere((xy[0], xy[1], top + 0.5 * crown), crown, (Material.FOLIAGE, green, _key(rng), s0))


def _car(
    b: PrimitiveBuilder, rng: np.random.Generator, xy: np.ndarray, yaw: float, s0: float
) -> None:
    """A body box up to 0.95 m with a shorter cabin box on top."""
    length, width = rng.uniform(4.0, 4.8), rng.uniform(1.7, 1.9)
    colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
    look = (Material.CAR, colour, _key(rng), s0)
    b.box(xy, 0.0, (length, width, 0.95), yaw, look)
    cabin = xy - 0.1 * length * np.array([np.cos(yaw), np.sin(yaw)])
    b.box(cabin, 0.95, (0.55 * length, 0.9 * width, rng.uniform(0.45, 0.6)), yaw, look)


def _street_populate(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    """Buildings from 10.5 m on both sides, parked cars at 5.3 m, trees on the sidewalks."""
    s0, end = path.s0[i], path.s0[i] + path.length[i]
    for side in (1.0, -1.0):
        s = s0 + rng.uniform(0.0, 4.0)
        while s < end:
            length, depth, height = rng.uniform(8, 22), rng.uniform(10, 16), rng.uniform(6, 24)
            xy, psi = path.pose(s + length / 2)
            colour = _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))] * rng.uniform(0.85, 1.1)
            centre = xy + side * (10.5 + depth / 2) * _normal(psi)
            look = (Material.FACADE, colour, _key(rng), s0)
            b.box(centre, 0.0, (length, depth, height), psi, look)
            s += length + (rng.uniform(2.0, 6.0) if rng.random() < 0.3 else 0.0)
        s = s0 + rng.uniform(0.0, 6.0)
        while s < end:
            if rng.random() < 0.55:
                xy, psi = path.pose(s)
                centre = xy + side * rng.uniform(5.1, 5.5) * _normal(psi)
                _car(b, rng, centre, psi + rng.normal(0.0, 0.03), s0)
            s += rng.uniform(6.0, 9.0)
        s = s0 + rng.uniform(0.0, 15.0)
        while s < end:
            if rng.random() < 0.5:
                xy, psi = path.pose(s)
                _tree(b, rng, xy + side * 8.8 * _normal(psi), s0, scale=1.2)
            s += rng.uniform(12.0, 20.0)


# ---------------------------------------------------------------------------- corridor
_WALL_COLOURS = np.array([[0.85, 0.8, 0.65], [0.6, 0.75, 0.8], [0.8, 0.7, 0.75], [0.7, 0.8, 0.6]])


def _corridor_segment(rng: np.random.Generator, i: int, heading: float) -> tuple[float, float]:
    if i % 2 == 0:
        return float(rng.uniform(6.0, 25.0)), 0.0
    return _turn(rng, heading, rng.uniform(0.25, 0.8), rng.uniform(10.0, 20.0), 1.0)


def _corridor_populate(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    """Wall panels of <= 2 m on both sides (slightly overlapping so bends have no gaps)."""
    n = int(np.ceil(path.length[i] / 2.0))
    piece = path.length[i] / n
    for k in range(n):
        xy, psi = path.pose(path.s0[i] + (k + 0.5) * piece)
        for side in (1.0, -1.0):
            centre = xy + side * (CORRIDOR_HALF_WIDTH_M + 0.1) * _normal(psi)
            look = (Material.WALL, _WALL_COLOURS[rng.integers(4)], _key(rng), path.s0[i])
            b.box(centre, 0.0, (piece + 0.6, 0.2, CORRIDOR_CEILING_M), psi, look)


# ---------------------------------------------------------------------------- field
def _field_segment(rng: np.random.Generator, i: int, heading: float) -> tuple[float, float]:
    if i == 0:
        return float(rng.uniform(8.0, 15.0)), 0.0
    if i % 2 == 0:
        return float(rng.uniform(10.0, 50.0)), 0.0
    return _turn(rng, heading, rng.uniform(0.7, 1.6), rng.uniform(12.0, 30.0), 1.3)


def _field_populate(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    """Trees, stone pillars and rocks scattered up to 35 m from the track, >= 4 m clear of it."""
    s0, length = path.s0[i], path.length[i]
    track, _ = path.pose(np.arange(max(0.0, s0 - 80.0), s0 + length + 80.0, 1.0))
    for _ in range(rng.poisson(length * 70.0 / 100.0)):
        xy, psi = path.pose(s0 + rng.uniform(0.0, length))
        xy = xy + rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 35.0) * _normal(psi)
        if np.min(np.linalg.norm(track - xy, axis=1)) < 4.0:
            continue
        u = rng.random()
        if u < 0.7:
            _tree(b, rng, xy, s0)
        elif u < 0.85:
            grey = rng.uniform(0.7, 1.0) * np.array([1.0, 0.95, 0.85])
            look = (Material.STONE, grey, _key(rng), s0)
            b.cylinder(xy, rng.uniform(0.3, 0.6), 0.0, rng.uniform(2.5, 5.0), look)
        else:
            size = rng.uniform(0.6, 1.6, 3)
            look = (
                Material.STONE,
                rng.uniform(0.6, 0.9) * np.array([0.9, 0.85, 0.8]),
                _key(rng),
                s0,
            )
            b.box(xy, 0.0, size, rng.uniform(0, np.pi), look)


# ---------------------------------------------------------------------------- warehouse
_RACK_COLOURS = np.array([[0.12, 0.25, 0.6], [0.85, 0.4, 0.08], [0.15, 0.45, 0.25]])
_LOAD_MATERIALS = (Material.CARTON, Material.CARTON, Material.CARTON, Material.WOOD)
_SHED_COLOURS = np.array([[0.8, 0.82, 0.85], [0.7, 0.75, 0.8], [0.85, 0.83, 0.75]])


def _warehouse_segment(rng: np.random.Generator, i: int, heading: float) -> tuple[float, float]:
    """Straight aisles joined by right-angle turns through cross aisles (a staircase layout)."""
    if i % 2 == 0:
        return float(rng.uniform(12.0, 40.0)), 0.0
    return _turn(rng, heading, np.pi / 2, rng.uniform(4.0, 6.0), np.pi / 2 + 1e-6)


def _local_to_world(xy0: np.ndarray, heading: float, fwd: float, left: float) -> np.ndarray:
    return xy0 + fwd * np.array([np.cos(heading), np.sin(heading)]) + left * _normal(heading)


def _racks(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    """Pallet racks along both sides of a straight aisle: uprights, beams, loads and a solid
    back (the loads of the rack behind), levels every 1.5-1.8 m up to 5-7 m."""
    s0, length, heading = path.s0[i], path.length[i], path.heading0[i]
    xy0 = path.xy0[i]
    for side in (1.0, -1.0):
        colour = _RACK_COLOURS[rng.integers(len(_RACK_COLOURS))]
        beam_colour = (0.9, 0.45, 0.1) if rng.random() < 0.7 else colour
        levels = int(rng.integers(3, 5))
        pitch = rng.uniform(1.5, 1.8)
        height = levels * pitch + 0.3
        front = AISLE_HALF_WIDTH_M
        back = front + RACK_DEPTH_M
        behind = (Material.CARTON, (0.75, 0.7, 0.65), _key(rng), s0)
        mid = _local_to_world(xy0, heading, length / 2, side * (back + 0.2))
        b.box(mid, 0.0, (length, 0.4, WAREHOUSE_CEILING_M), heading, behind)
        steel = (Material.RACK, colour, _key(rng), s0)
        beams = (Material.RACK, beam_colour, _key(rng), s0)
        bays = max(int(length // 2.7), 1)
        bay = length / bays
        for lv in range(1, levels + 1):
            mid = _local_to_world(xy0, heading, length / 2, side * (front + 0.04))
            b.box(mid, lv * pitch - 0.12, (length, 0.08, 0.12), heading, beams)
        for k in range(bays + 1):
            xy = _local_to_world(xy0, heading, k * bay, side * (front + 0.05))
            b.box(xy, 0.0, (0.09, 0.1, height), heading, steel)
        for k in range(bays):
            for lv in range(levels + 1):
                if rng.random() > 0.75 or (lv == levels and rng.random() < 0.5):
                    continue
                width = bay - rng.uniform(0.15, 0.5)
                depth = rng.uniform(0.8, 1.05)
                tall = rng.uniform(0.6, pitch - 0.25)
                xy = _local_to_world(
                    xy0, heading, (k + 0.5) * bay, side * (back - 0.05 - depth / 2)
                )
                material = _LOAD_MATERIALS[rng.integers(len(_LOAD_MATERIALS))]
                tint = (0.6, 0.45, 0.3) if material == Material.WOOD else (1.0, 1.0, 1.0)
                z0 = lv * pitch + (0.0 if lv == 0 else 0.01)
                b.box(xy, z0, (width, depth, tall), heading, (material, tint, _key(rng), s0))
            if rng.random() < 0.06:
                xy = _local_to_world(xy0, heading, (k + 0.5) * bay, side * (front - 0.5))
                look = (Material.WOOD, (0.6, 0.45, 0.3), _key(rng), s0)
                b.box(xy, 0.0, (1.2, 0.8, rng.uniform(0.15, 1.4)), heading, look)


def _cross_aisle(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    """A right-angle turn of radius R: a round core on the inside of the turn (1.6 m clear of
    the path, closing the gap between the racks) and two walls with doors and signs outside."""
    s0, heading, radius = path.s0[i], path.heading0[i], 1.0 / abs(path.curvature[i])
    turn = np.sign(path.curvature[i])  # +1 turning left
    xy0 = path.xy0[i]
    colour = _SHED_COLOURS[rng.integers(len(_SHED_COLOURS))]
    core = (Material.SHED, colour, _key(rng), s0)
    centre = _local_to_world(xy0, heading, 0.0, turn * radius)
    b.cylinder(centre, radius - AISLE_HALF_WIDTH_M, 0.0, WAREHOUSE_CEILING_M, core)
    outer = AISLE_HALF_WIDTH_M + RACK_DEPTH_M + 0.4
    wall = (Material.SHED, colour, _key(rng), s0)
    span = radius + outer + 0.3
    xy = _local_to_world(xy0, heading, span / 2, -turn * (outer + 0.15))
    b.box(xy, 0.0, (span, 0.3, WAREHOUSE_CEILING_M), heading, wall)
    wall = (Material.SHED, colour, _key(rng), s0)
    xy = _local_to_world(xy0, heading, radius + outer + 0.15, turn * (radius - outer) / 2)
    b.box(xy, 0.0, (0.3, radius + outer, WAREHOUSE_CEILING_M), heading, wall)


def _warehouse_populate(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    if path.curvature[i] == 0.0:
        _racks(rng, path, i, b)
    else:
        _cross_aisle(rng, path, i, b)


# ---------------------------------------------------------------------------- rural
def _rural_segment(rng: np.random.Generator, i: int, heading: float) -> tuple[float, float]:
    if i % 2 == 0:
        return float(rng.uniform(50.0, 180.0)), 0.0
    return _turn(rng, heading, rng.uniform(0.2, 0.7), rng.uniform(80.0, 300.0), 1.0)


def _leafy_tree(b: PrimitiveBuilder, rng: np.random.Generator, xy: np.ndarray, s0: float) -> None:
    """A broadleaf (a crown of 1-3 spheres) or a conifer (spheres shrinking upwards)."""
    green = np.array([0.2, 0.42, 0.12]) * rng.uniform(0.6, 1.3, 3)
    bark = (Material.WOOD, (0.35, 0.27, 0.2), _key(rng), s0)
    if rng.random() < 0.3:
        tall = rng.uniform(6.0, 14.0)
        b.cylinder(xy, rng.uniform(0.15, 0.3), 0.0, tall, bark)
        for k in range(3):
            r = (0.32 - 0.08 * k) * tall * rng.uniform(0.8, 1.1)
            z = (0.3 + 0.25 * k) * tall
            b.sphere((xy[0], xy[1], z), r, (Material.LEAVES, green * 0.7, _key(rng), s0))
        return
    top = rng.uniform(2.5, 5.0)
    crown = rng.uniform(1.5, 3.5)
    b.cylinder(xy, rng.uniform(0.15, 0.35), 0.0, top + 0.5 * crown, bark)
    for _ in range(int(rng.integers(1, 4))):
        off = rng.normal(0.0, 0.35 * crown, 3)
        centre = (xy[0] + off[0], xy[1] + off[1], top + crown + 0.5 * off[2])
        r = crown * rng.uniform(0.7, 1.0)
        b.sphere(centre, r, (Material.LEAVES, green, _key(rng), s0))


def _fence(b: PrimitiveBuilder, rng: np.random.Generator, path: Path, i: int, side: float) -> None:
    """Wooden posts every 4.5 m with two rails at 4.3 m from the path: one long rail each on a
    straight, chords of 9 m on a curve."""
    s0, length = path.s0[i], path.length[i]
    look = (Material.WOOD, np.array([0.55, 0.45, 0.35]) * rng.uniform(0.7, 1.2), _key(rng), s0)
    for s in np.arange(s0, s0 + length, 4.5):
        xy, psi = path.pose(s)
        b.box(xy + side * 4.3 * _normal(psi), 0.0, (0.12, 0.12, 1.3), psi, look)
    step = length if path.curvature[i] == 0.0 else 9.0
    for s in np.arange(s0, s0 + length - 1e-9, step):
        ends, _ = path.pose(np.array([s, min(s + step, s0 + length)]))
        _, psi = path.pose(s + step / 2)
        chord = float(np.linalg.norm(ends[1] - ends[0]))
        for z0 in (0.45, 0.95):
            centre = ends.mean(axis=0) + side * 4.36 * _normal(psi)
            b.box(centre, z0, (chord, 0.05, 0.15), psi, look)


def _rural_populate(rng: np.random.Generator, path: Path, i: int, b: PrimitiveBuilder) -> None:
    """Trees and bushes along the road, fences or dry-stone walls, telegraph poles, farm
    buildings and hills (spheres sunk into the ground: slopes up to ~35 degrees at the rim);
    buildings and hills keep 5 m clear of the road wherever it bends."""
    s0, length = path.s0[i], path.length[i]
    end = s0 + length
    track, _ = path.pose(np.arange(s0 - 300.0, end + 300.0, 4.0))

    def clear(xy: np.ndarray, radius: float) -> bool:
        return bool(np.min(np.linalg.norm(track - xy, axis=1)) > radius + 5.0)

    for side in (1.0, -1.0):
        boundary = rng.random()
        if boundary < 0.4:
            _fence(b, rng, path, i, side)
        elif boundary < 0.6:
            xy, psi = path.pose(s0 + length / 2)
            look = (Material.STONE, (0.8, 0.78, 0.72), _key(rng), s0)
            if path.curvature[i] == 0.0:
                b.box(xy + side * 4.5 * _normal(psi), 0.0, (length, 0.5, 0.9), psi, look)
        density = rng.uniform(0.1, 0.6)
        s = s0 + rng.uniform(0.0, 8.0)
        while s < end:
            xy, psi = path.pose(s)
            lateral = rng.uniform(6.0, 16.0)
            if rng.random() < density:
                _leafy_tree(b, rng, xy + side * lateral * _normal(psi), s0)
            if rng.random() < density:
                r = rng.uniform(0.4, 1.3)
                green = np.array([0.22, 0.4, 0.13]) * rng.uniform(0.7, 1.2, 3)
                c = xy + side * rng.uniform(5.0, 12.0) * _normal(psi)
                b.sphere((c[0], c[1], 0.3 * r), r, (Material.LEAVES, green, _key(rng), s0))
            s += rng.uniform(5.0, 12.0)
        if rng.random() < 0.35:
            xy, psi = path.pose(s0 + rng.uniform(0.0, length))
            size = (rng.uniform(8, 20), rng.uniform(6, 12), rng.uniform(4, 8))
            material = Material.WOOD if rng.random() < 0.5 else Material.BRICK
            colour = (0.55, 0.25, 0.18) if material == Material.WOOD else (0.75, 0.4, 0.3)
            look = (material, np.asarray(colour) * rng.uniform(0.8, 1.2), _key(rng), s0)
            centre = xy + side * rng.uniform(20.0, 45.0) * _normal(psi)
            yaw = psi + rng.uniform(-0.3, 0.3)
            if clear(centre, float(np.hypot(size[0], size[1])) / 2):
                b.box(centre, 0.0, size, yaw, look)
        for _ in range(rng.poisson(length / 120.0)):
            xy, psi = path.pose(s0 + rng.uniform(0.0, length))
            radius, rise = rng.uniform(40.0, 150.0), rng.uniform(4.0, 25.0)
            rim = np.sqrt(radius**2 - (radius - rise) ** 2)
            c = xy + side * (rim + rng.uniform(5.0, 40.0)) * _normal(psi)
            look = (Material.MEADOW, (1.0, 1.0, 1.0), _key(rng), s0)
            if clear(c, rim):
                b.sphere((c[0], c[1], rise - radius), radius, look)
    if rng.random() < 0.6:
        side = rng.choice([-1.0, 1.0])
        look = (Material.WOOD, (0.45, 0.38, 0.3), _key(rng), s0)
        for s in np.arange(s0 + rng.uniform(0.0, 40.0), end, 40.0):
            xy, psi = path.pose(s)
            b.cylinder(xy + side * 5.5 * _normal(psi), 0.12, 0.0, rng.uniform(7.0, 8.5), look)


_VARIANTS: dict[Material, Callable[[np.ndarray], np.ndarray]] = {
    Material.FACADE: lambda key: np.where(key % 3 == 0, Material.BRICK, Material.FACADE),
    Material.FOLIAGE: lambda key: np.full(key.shape, Material.LEAVES),
}


def with_material_variants(scene: Scene) -> Scene:
    """``scene`` with the richer material variants: brick for a third of the facades (by texture
    key) and leafy crowns for all foliage."""
    material = scene.prims.material.copy()
    for old, variant in _VARIANTS.items():
        sel = scene.prims.material == old
        material[sel] = variant(scene.prims.key[sel])
    return replace(scene, prims=replace(scene.prims, material=material))


SPECS: dict[str, DomainSpec] = {
    "street": DomainSpec(
        camera_height_m=1.5, camera_height_range_m=(0.25, 2.2), step_m=1.0,
        lateral_m=-1.8, yaw_wobble_rad=0.0,
        ground=Material.ROAD, ceiling_z=None, ambient=0.5,
        sky_horizon=(0.85, 0.88, 0.92), sky_zenith=(0.35, 0.55, 0.85),
        max_range_m=250.0, lookahead_m=200.0,
        segment=_street_segment, populate=_street_populate,
    ),
    "corridor": DomainSpec(
        camera_height_m=1.2, camera_height_range_m=(0.25, 1.9), step_m=0.3,
        lateral_m=0.0, yaw_wobble_rad=0.2,
        ground=Material.FLOOR, ceiling_z=CORRIDOR_CEILING_M, ambient=0.6,
        sky_horizon=(0.5, 0.5, 0.6), sky_zenith=(0.5, 0.5, 0.6),
        max_range_m=60.0, lookahead_m=60.0,
        segment=_corridor_segment, populate=_corridor_populate,
    ),
    "field": DomainSpec(
        camera_height_m=1.5, camera_height_range_m=(0.25, 2.2), step_m=0.8,
        lateral_m=0.0, yaw_wobble_rad=0.0,
        ground=Material.GRASS, ceiling_z=None, ambient=0.45,
        sky_horizon=(0.86, 0.9, 0.95), sky_zenith=(0.3, 0.5, 0.9),
        max_range_m=200.0, lookahead_m=150.0,
        segment=_field_segment, populate=_field_populate,
    ),
    "warehouse": DomainSpec(
        camera_height_m=1.6, camera_height_range_m=(0.25, 2.5), step_m=0.25,
        lateral_m=0.0, yaw_wobble_rad=0.12,
        ground=Material.CONCRETE, ceiling_z=WAREHOUSE_CEILING_M, ambient=0.6,
        sky_horizon=(0.4, 0.4, 0.42), sky_zenith=(0.4, 0.4, 0.42),
        max_range_m=80.0, lookahead_m=80.0,
        segment=_warehouse_segment, populate=_warehouse_populate,
    ),
    "rural": DomainSpec(
        camera_height_m=1.5, camera_height_range_m=(0.25, 2.2), step_m=1.2,
        lateral_m=-1.5, yaw_wobble_rad=0.0,
        ground=Material.LANE, ceiling_z=None, ambient=0.45,
        sky_horizon=(0.82, 0.87, 0.93), sky_zenith=(0.32, 0.52, 0.85),
        max_range_m=300.0, lookahead_m=220.0,
        segment=_rural_segment, populate=_rural_populate,
    ),
}  # fmt: skip


def domain_spec(domain: str) -> DomainSpec:
    """The spec of a domain; ConfigError naming the known ones otherwise."""
    if domain not in SPECS:
        raise ConfigError(f"unknown synthetic domain {domain!r}; choose one of {DOMAINS}")
    return SPECS[domain]


def build_scene(domain: str, seed: int, s_max: float) -> Scene:
    """The scene of ``domain`` and ``seed``, generated far enough for a camera up to ``s_max``."""
    spec = domain_spec(domain)
    tag = DOMAINS.index(domain)
    rng = np.random.default_rng([seed, tag, 0])
    lengths: list[float] = []
    curvatures: list[float] = []
    heading, total = 0.0, 0.0
    while total < s_max + spec.lookahead_m + 400.0:
        length, curvature = spec.segment(rng, len(lengths), heading)
        lengths.append(length)
        curvatures.append(curvature)
        heading += length * curvature
        total += length
    path = Path.from_segments(lengths, curvatures)
    builder = PrimitiveBuilder()
    for i in np.flatnonzero(path.s0 <= s_max + spec.lookahead_m):
        spec.populate(np.random.default_rng([seed, tag, 1, int(i)]), path, int(i), builder)
    light = rng.normal([0.4, 0.3, 1.0], 0.15)
    return Scene(
        prims=builder.build(),
        path=path,
        ground=spec.ground,
        ceiling_z=spec.ceiling_z,
        light_dir=light / np.linalg.norm(light),
        ambient=spec.ambient,
        sky_horizon=np.asarray(spec.sky_horizon),
        sky_zenith=np.asarray(spec.sky_zenith),
        texture_key=_key(rng),
        max_range_m=spec.max_range_m,
        lookahead_m=spec.lookahead_m,
    )


def trajectory(
    domain: str, seed: int, frames: np.ndarray, fps: float = BASE_FPS, speed_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Arc length s (N,) along the path and extra yaw (N,) rad of the camera at frame indices
    (fractional ones are times between frames).

    Speed varies smoothly by +-25 % around ``speed_scale * step_m * BASE_FPS`` m/s; the speed
    profile and the look-around are functions of time, so ``fps`` only changes the sampling.
    s(0) = 0 and s increases.
    """
    spec = domain_spec(domain)
    rng = np.random.default_rng([seed, DOMAINS.index(domain), 2])
    period, phase = rng.uniform(40.0, 80.0), rng.uniform(0.0, 2 * np.pi)
    amp = 0.25 * period / (2 * np.pi)
    i = np.asarray(frames, dtype=np.float64) * (BASE_FPS / fps)  # time in base frames
    s = (
        spec.step_m
        * speed_scale
        * (i + amp * (np.sin(2 * np.pi * i / period + phase) - np.sin(phase)))
    )
    w_period, w_phase = rng.uniform(25.0, 45.0), rng.uniform(0.0, 2 * np.pi)
    yaw = spec.yaw_wobble_rad * np.sin(2 * np.pi * i / w_period + w_phase)
    return s, yaw


def _tilt(pitch_rad: np.ndarray, roll_rad: float) -> np.ndarray:
    """Rotations (N, 3, 3) of the optical frame: pitch about x (positive looks up), then roll
    about the optical axis z."""
    c, s = np.cos(pitch_rad), np.sin(pitch_rad)
    R = np.zeros((len(c), 3, 3))
    R[:, 0, 0] = 1.0
    R[:, 1, 1], R[:, 1, 2], R[:, 2, 1], R[:, 2, 2] = c, -s, s, c
    cr, sr = np.cos(roll_rad), np.sin(roll_rad)
    return R @ np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])


def camera_poses(
    spec: DomainSpec,
    path: Path,
    s: np.ndarray,
    yaw: np.ndarray,
    height_m: float | None = None,
    pitch_rad: np.ndarray | None = None,
    roll_rad: float = 0.0,
) -> np.ndarray:
    """Camera poses T_world_cam (N, 4, 4) at arc lengths s, looking along the path.

    Level at ``spec.camera_height_m`` unless given ``height_m`` and a pitch (N,) and roll; the
    camera centre is always exactly ``height_m`` above the ground plane.
    """
    xy, heading = path.pose(s)
    xy = xy + spec.lateral_m * _normal(heading)
    psi = heading + yaw
    c, sn = np.cos(psi), np.sin(psi)
    T = np.zeros((len(s), 4, 4))
    T[:, :3, 0] = np.stack([sn, -c, np.zeros_like(c)], -1)  # camera x: right
    T[:, 2, 1] = -1.0  # camera y: down
    T[:, :3, 2] = np.stack([c, sn, np.zeros_like(c)], -1)  # camera z: forward
    T[:, :2, 3] = xy
    T[:, 2, 3] = spec.camera_height_m if height_m is None else height_m
    T[:, 3, 3] = 1.0
    if pitch_rad is not None:
        T[:, :3, :3] = T[:, :3, :3] @ _tilt(np.asarray(pitch_rad, dtype=np.float64), roll_rad)
    return T

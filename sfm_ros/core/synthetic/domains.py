"""The three worlds: road layouts, object placement, lighting and camera motion per domain.

Each domain lays its scene out along a `Path` generated segment by segment from the seed, and
populates every segment from its own random stream, so a longer sequence extends a shorter one
without changing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.synthetic.materials import Material
from sfm_ros.core.synthetic.path import Path
from sfm_ros.core.synthetic.scene import PrimitiveBuilder, Scene

DOMAINS: tuple[str, ...] = ("street", "corridor", "field")

CORRIDOR_HALF_WIDTH_M = 1.4
CORRIDOR_CEILING_M = 2.6

SegmentFn = Callable[[np.random.Generator, int, float], tuple[float, float]]
PopulateFn = Callable[[np.random.Generator, Path, int, PrimitiveBuilder], None]


@dataclass(frozen=True)
class DomainSpec:
    """How one domain is built and traversed.

    Attributes:
        camera_height_m: camera height above the ground plane (the camera stays level).
        step_m: mean travel per frame (frames at 10 Hz).
        lateral_m: camera offset from the path, left positive.
        yaw_wobble_rad: amplitude of a slow look-around added to the path heading.
        segment: (rng, index, heading) -> (length m, curvature 1/m) of the next path segment.
        populate: adds the primitives of one path segment.
    """

    camera_height_m: float
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


SPECS: dict[str, DomainSpec] = {
    "street": DomainSpec(
        camera_height_m=1.5, step_m=1.0, lateral_m=-1.8, yaw_wobble_rad=0.0,
        ground=Material.ROAD, ceiling_z=None, ambient=0.5,
        sky_horizon=(0.85, 0.88, 0.92), sky_zenith=(0.35, 0.55, 0.85),
        max_range_m=250.0, lookahead_m=200.0,
        segment=_street_segment, populate=_street_populate,
    ),
    "corridor": DomainSpec(
        camera_height_m=1.2, step_m=0.3, lateral_m=0.0, yaw_wobble_rad=0.2,
        ground=Material.FLOOR, ceiling_z=CORRIDOR_CEILING_M, ambient=0.6,
        sky_horizon=(0.5, 0.5, 0.6), sky_zenith=(0.5, 0.5, 0.6),
        max_range_m=60.0, lookahead_m=60.0,
        segment=_corridor_segment, populate=_corridor_populate,
    ),
    "field": DomainSpec(
        camera_height_m=1.5, step_m=0.8, lateral_m=0.0, yaw_wobble_rad=0.0,
        ground=Material.GRASS, ceiling_z=None, ambient=0.45,
        sky_horizon=(0.86, 0.9, 0.95), sky_zenith=(0.3, 0.5, 0.9),
        max_range_m=200.0, lookahead_m=150.0,
        segment=_field_segment, populate=_field_populate,
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


def trajectory(domain: str, seed: int, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length s (N,) along the path and extra yaw (N,) rad of the camera at frame indices.

    Speed varies smoothly by +-25 % around ``step_m``; s(0) = 0 and s increases.
    """
    spec = domain_spec(domain)
    rng = np.random.default_rng([seed, DOMAINS.index(domain), 2])
    period, phase = rng.uniform(40.0, 80.0), rng.uniform(0.0, 2 * np.pi)
    amp = 0.25 * period / (2 * np.pi)
    i = frames.astype(np.float64)
    s = spec.step_m * (i + amp * (np.sin(2 * np.pi * i / period + phase) - np.sin(phase)))
    w_period, w_phase = rng.uniform(25.0, 45.0), rng.uniform(0.0, 2 * np.pi)
    yaw = spec.yaw_wobble_rad * np.sin(2 * np.pi * i / w_period + w_phase)
    return s, yaw


def camera_poses(spec: DomainSpec, path: Path, s: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Level camera poses T_world_cam (N, 4, 4) at arc lengths s, looking along the path."""
    xy, heading = path.pose(s)
    xy = xy + spec.lateral_m * _normal(heading)
    psi = heading + yaw
    c, sn = np.cos(psi), np.sin(psi)
    T = np.zeros((len(s), 4, 4))
    T[:, :3, 0] = np.stack([sn, -c, np.zeros_like(c)], -1)  # camera x: right
    T[:, 2, 1] = -1.0  # camera y: down
    T[:, :3, 2] = np.stack([c, sn, np.zeros_like(c)], -1)  # camera z: forward
    T[:, :2, 3] = xy
    T[:, 2, 3] = spec.camera_height_m
    T[:, 3, 3] = 1.0
    return T

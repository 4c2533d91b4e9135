"""Static scenes: a ground plane z = 0, an optional ceiling and a list of solid primitives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sfm_ros.core.synthetic.materials import Material
from sfm_ros.core.synthetic.path import Path

BOX, CYLINDER, SPHERE = 0, 1, 2

Vec = Sequence[float] | np.ndarray
Look = tuple[Material, Vec, int, float]
"""(material, base colour (3,), texture key, s_birth) of a primitive."""


@dataclass(frozen=True)
class Primitives:
    """n solid primitives in world coordinates (metres).

    - box: ``centre``, ``half`` extents along its own axes, rotated by ``yaw`` about world z;
    - vertical cylinder (no caps: tops are always above the camera): axis through ``centre``,
      radius ``half[0]``, spanning z in centre.z +- half.z;
    - sphere: ``centre``, radius ``half[0]``.
    For cylinders and spheres ``centre +- half`` is their axis-aligned bounding box.
    ``s_birth`` is the path arc length where the primitive was generated (see `Scene.view`).
    """

    kind: np.ndarray  # (n,) int
    centre: np.ndarray  # (n, 3)
    half: np.ndarray  # (n, 3)
    yaw: np.ndarray  # (n,) rad
    material: np.ndarray  # (n,) int, a Material
    colour: np.ndarray  # (n, 3) base colour in [0, 1]
    key: np.ndarray  # (n,) int64 texture stream
    s_birth: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.kind)

    def select(self, keep: np.ndarray) -> Primitives:
        return Primitives(*(getattr(self, name)[keep] for name in self.__dataclass_fields__))


class PrimitiveBuilder:
    """Collects primitives one by one; `build` stacks them into `Primitives`."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def _add(self, kind: int, centre: Vec, half: Vec, yaw: float, look: Look) -> None:
        material, colour, key, s_birth = look
        row = (kind, tuple(centre), tuple(half), float(yaw), int(material), tuple(colour))
        self._rows.append((*row, int(key), float(s_birth)))

    def box(self, xy: Vec, z0: float, size: Vec, yaw: float, look: Look) -> None:
        """Box standing at z0 with ``size`` (length along yaw, width, height) centred on xy."""
        lx, ly, lz = size
        self._add(BOX, (xy[0], xy[1], z0 + lz / 2), (lx / 2, ly / 2, lz / 2), yaw, look)

    def cylinder(self, xy: Vec, radius: float, z0: float, z1: float, look: Look) -> None:
        centre = (xy[0], xy[1], (z0 + z1) / 2)
        self._add(CYLINDER, centre, (radius, radius, (z1 - z0) / 2), 0.0, look)

    def sphere(self, centre: Vec, radius: float, look: Look) -> None:
        self._add(SPHERE, centre, (radius, radius, radius), 0.0, look)

    def build(self) -> Primitives:
        n = len(self._rows)
        cols = list(zip(*self._rows, strict=True)) if n else [()] * 8
        return Primitives(
            kind=np.asarray(cols[0], dtype=np.int64),
            centre=np.asarray(cols[1], dtype=np.float64).reshape(n, 3),
            half=np.asarray(cols[2], dtype=np.float64).reshape(n, 3),
            yaw=np.asarray(cols[3], dtype=np.float64),
            material=np.asarray(cols[4], dtype=np.int64),
            colour=np.asarray(cols[5], dtype=np.float64).reshape(n, 3),
            key=np.asarray(cols[6], dtype=np.int64),
            s_birth=np.asarray(cols[7], dtype=np.float64),
        )


@dataclass(frozen=True)
class Scene:
    """A static, Lambertian world (z up, ground plane z = 0) and how to light it.

    Attributes:
        prims: the solid primitives.
        path: the layout path; ground and ceiling textures use its (s, lateral) coordinates.
        ground: material of the ground plane.
        ceiling_z: height of a ceiling plane (metres) or None (open sky).
        light_dir: (3,) unit vector towards the light, world frame.
        ambient: shade of surfaces facing away from the light; facing it gives 1.
        sky_horizon, sky_zenith: (3,) sky colours blended by ray elevation.
        texture_key: texture stream of the planes.
        max_range_m: primitives farther than this are not drawn.
        lookahead_m: `view` draws primitives generated up to this far ahead along the path.
        shadows: cast shadows of the primitives from the directional light (outdoors).
        cloud_cover: fraction of the sky covered by clouds (0 = the plain gradient).
    """

    prims: Primitives
    path: Path
    ground: Material
    ceiling_z: float | None
    light_dir: np.ndarray
    ambient: float
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    texture_key: int
    max_range_m: float
    lookahead_m: float
    shadows: bool = False
    cloud_cover: float = 0.0

    def view(self, s: float) -> Scene:
        """The part of the scene drawn for a camera at path arc length ``s``.

        Keeps primitives generated up to ``lookahead_m`` ahead and the path segments within
        ``lookahead_m``, so that a frame's image depends on ``s`` only, never on how far the
        scene was generated beyond it (frames match whatever `start` a sequence has).
        """
        prims = self.prims.select(self.prims.s_birth <= s + self.lookahead_m)
        near = (self.path.s0 <= s + self.lookahead_m) & (
            self.path.s0 + self.path.length >= s - self.lookahead_m
        )
        return replace(self, prims=prims, path=self.path.select(near))

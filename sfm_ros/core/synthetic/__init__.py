"""Procedural textured worlds seen by a moving camera: the project's own test and benchmark data.

Ray casting (numpy, one ray per pixel, CPU) against analytic primitives: a ground plane, an
optional ceiling, boxes rotated about the vertical, vertical cylinders and spheres.

Conventions:
- World frame: z up, ground plane z = 0; the layout path starts at the origin heading +x.
- Camera: optical frame (x right, y down, z forward), always level (no roll or pitch), so
  ``camera_height_m`` is its exact height above the ground. ``T_world_cam`` is camera-to-world.
- Pixel (u, v) (integer centres) looks along K^-1 [u, v, 1]; depth is metres along z.
- Sky: rays that meet nothing get a gradient colour and depth 0 (invalid).
- Appearance: Lambertian albedo that is a pure function of surface coordinates fixed in the
  world, lit by one fixed directional light plus ambient, so photometric consistency between
  views is exact up to pixel sampling.
- Domains: "street" (10 Hz, ~1 m a frame, 1.5 m high), "corridor" (0.3 m a frame, 1.2 m high,
  looking around), "field" (0.8 m a frame, 1.5 m high, with turns). Same seed, same bits.
"""

from sfm_ros.core.synthetic.domains import DOMAINS, build_scene
from sfm_ros.core.synthetic.render import render_frame
from sfm_ros.core.synthetic.scene import Scene
from sfm_ros.core.synthetic.sequence import (
    SyntheticSequence,
    intrinsics,
    render_sequence,
    write_sequence,
)

__all__ = [
    "DOMAINS",
    "Scene",
    "SyntheticSequence",
    "build_scene",
    "intrinsics",
    "render_frame",
    "render_sequence",
    "write_sequence",
]

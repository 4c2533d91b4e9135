"""Procedural textured worlds seen by a moving camera: the project's own test and benchmark data.

Ray casting (numpy, one ray per pixel, CPU) against analytic primitives: a ground plane, an
optional ceiling, boxes rotated about the vertical, vertical cylinders and spheres (hills are
large spheres sunk into the ground, so the ground plane stays z = 0).

Conventions:
- World frame: z up, ground plane z = 0; the layout path starts at the origin heading +x.
- Camera: optical frame (x right, y down, z forward). ``T_world_cam`` is camera-to-world and
  ``camera_height_m`` is always the exact height of the camera centre above the ground plane.
  Unrandomised sequences keep the camera level (no roll or pitch) with a centred 90 degree
  horizontal field of view at 10 Hz; geometric randomisation pitches (with a slow sway) and
  rolls it and draws the field of view, principal point, height, frame rate and speed per
  sequence (`randomize`).
- Pixel (u, v) (integer centres) looks along K^-1 [u, v, 1]; depth is metres along z, exact.
- Sky: rays that meet nothing get a gradient colour (with clouds at infinity when randomised)
  and depth 0 (invalid).
- Appearance: Lambertian albedo that is a pure function of surface coordinates fixed in the
  world, lit by one fixed directional light plus ambient (plus cast shadows outdoors when
  randomised), so photometric consistency between views is exact up to pixel sampling before
  the camera's photometric effects (`camera.develop`: exposure, white balance, response,
  vignetting, blur, noise, JPEG, grey), which are applied per frame on top.
- Domains: "street" (10 Hz, ~1 m a frame, 1.5 m high), "corridor" (0.3 m a frame, 1.2 m high,
  looking around), "field" (0.8 m a frame, 1.5 m high, with turns), "warehouse" (aisles between
  pallet racks joined by right-angle turns, 8 m ceiling, 0.25 m a frame, 1.6 m high), "rural"
  (a country road with hedgerows, fences, walls, poles, farm buildings and hills, 1.2 m a
  frame, 1.5 m high). Same seed, same bits.
"""

from sfm_ros.core.synthetic.domains import DOMAINS, build_scene
from sfm_ros.core.synthetic.randomize import (
    Randomization,
    SequenceDraw,
    draw_randomization,
)
from sfm_ros.core.synthetic.render import render_frame
from sfm_ros.core.synthetic.scene import Scene
from sfm_ros.core.synthetic.sequence import (
    SyntheticSequence,
    intrinsics,
    render_sequence,
    render_turn_on_the_spot,
    write_sequence,
)

__all__ = [
    "DOMAINS",
    "Randomization",
    "Scene",
    "SequenceDraw",
    "SyntheticSequence",
    "build_scene",
    "draw_randomization",
    "intrinsics",
    "render_frame",
    "render_sequence",
    "render_turn_on_the_spot",
    "write_sequence",
]

"""Rendered sequences: frames, depth, poses and intrinsics of a camera moving through a domain."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sfm_ros.core.errors import InputError
from sfm_ros.core.synthetic.camera import develop, exposure_flow
from sfm_ros.core.synthetic.domains import (
    BASE_FPS,
    DOMAINS,
    build_scene,
    camera_poses,
    domain_spec,
    trajectory,
    with_material_variants,
)
from sfm_ros.core.synthetic.randomize import Randomization, SequenceDraw, draw_randomization
from sfm_ros.core.synthetic.render import render_frame, render_radiance

FPS = BASE_FPS
HFOV_DEG = 90.0


@dataclass
class SyntheticSequence:
    """A rendered sequence of N frames of size H x W.

    Attributes:
        domain: one of DOMAINS.
        images: (N, H, W, 3) uint8 RGB.
        depth_m: (N, H, W) float32 metres along the optical z axis; 0 = sky (invalid).
        T_world_cam: (N, 4, 4) float64 camera-to-world poses (optical camera frame; world z up,
            ground plane z = 0).
        K: (3, 3) float64 intrinsics.
        stamps_ns: (N,) int64 frame times (frame index / fps).
        camera_height_m: height of the camera centre above the ground plane (constant, exact).
        seed: the seed it was rendered from.
        fps: frame rate.
        draw: the randomisation drawn for it, None when rendered without randomisation.
    """

    domain: str
    images: np.ndarray
    depth_m: np.ndarray
    T_world_cam: np.ndarray
    K: np.ndarray
    stamps_ns: np.ndarray
    camera_height_m: float
    seed: int = 0
    fps: float = FPS
    draw: SequenceDraw | None = None


def intrinsics(height: int, width: int, hfov_deg: float = HFOV_DEG) -> np.ndarray:
    """Pinhole K (3, 3) with square pixels, horizontal field of view ``hfov_deg``, centred."""
    f = (width / 2) / np.tan(np.deg2rad(hfov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def render_sequence(
    domain: str,
    num_frames: int,
    seed: int = 0,
    height: int = 128,
    width: int = 416,
    start: int = 0,
    randomization: Randomization | None = None,
) -> SyntheticSequence:
    """Render frames [start, start + num_frames) of the trajectory of ``domain`` and ``seed``.

    Output is bit-for-bit a function of the arguments, and frame i is identical whatever
    ``start`` and ``num_frames`` include it. Without ``randomization`` the camera is level at
    the domain's height with a centred 90 degree horizontal field of view at 10 Hz (the
    original world, unchanged); with it, the sequence's camera, lighting and camera response
    are drawn from the seed (`randomize`), depth and poses staying exact.
    Unknown domains raise ConfigError; bad sizes or counts raise InputError.
    """
    domain_spec(domain)  # an unknown domain raises ConfigError before the sizes are checked
    if num_frames < 1 or start < 0 or seed < 0 or height < 1 or width < 1:
        raise InputError(
            f"render_sequence needs num_frames >= 1, start >= 0, seed >= 0 and a "
            f"positive size; got {num_frames}, {start}, {seed}, {height}x{width}"
        )
    frames = np.arange(start, start + num_frames)
    if randomization is None:
        s, yaw = trajectory(domain, seed, frames)
        return _render_plain(domain, seed, s, yaw, frames, height, width)
    return _render_randomized(domain, frames, seed, height, width, randomization)


def _render_plain(
    domain: str,
    seed: int,
    s: np.ndarray,
    yaw: np.ndarray,
    frames: np.ndarray,
    height: int,
    width: int,
) -> SyntheticSequence:
    """The plain world's views at arc lengths ``s`` with extra yaw ``yaw`` (N,), frame
    indices ``frames`` (N,) at `FPS`: level camera, centred 90 degree field of view."""
    spec = domain_spec(domain)
    scene = build_scene(domain, seed, float(s.max()))
    T_world_cam = camera_poses(spec, scene.path, s, yaw)
    K = intrinsics(height, width)
    images = np.empty((len(s), height, width, 3), dtype=np.uint8)
    depth = np.empty((len(s), height, width), dtype=np.float32)
    for n, (arc, T) in enumerate(zip(s, T_world_cam, strict=True)):
        images[n], depth[n] = render_frame(scene.view(float(arc)), T, K, height, width)
    return SyntheticSequence(
        domain=domain,
        images=images,
        depth_m=depth,
        T_world_cam=T_world_cam,
        K=K,
        stamps_ns=frames.astype(np.int64) * int(1e9 / FPS),
        camera_height_m=spec.camera_height_m,
        seed=seed,
        fps=FPS,
    )


def render_turn_on_the_spot(
    domain: str,
    seed: int = 0,
    height: int = 128,
    width: int = 416,
    before: int = 20,
    turn_deg: float = 30.0,
    rate_deg: float = 3.0,
    after: int = 15,
) -> tuple[SyntheticSequence, range]:
    """The plain world's trajectory of ``domain`` and ``seed`` (as `render_sequence`), driven
    for ``before`` frames, then turning on the spot, as a differential-drive robot does, by
    ``turn_deg`` at ``rate_deg`` a frame and back to its heading, then driven ``after`` frames
    more; and the frames from the stop to the end of the turn (the camera does not move
    between them). Bad counts or angles raise InputError."""
    if before < 1 or after < 0 or not 0 < rate_deg <= turn_deg:
        raise InputError(
            f"render_turn_on_the_spot needs before >= 1, after >= 0 and 0 < rate_deg <= "
            f"turn_deg; got {before}, {after}, {rate_deg}, {turn_deg}"
        )
    s_drive, yaw_drive = trajectory(domain, seed, np.arange(before + after))
    out = np.radians(np.arange(rate_deg, turn_deg + 1e-9, rate_deg))
    turn = np.concatenate([out, out[::-1][1:], [0.0]])  # out and back to the heading
    s = np.concatenate(
        [s_drive[:before], np.full(len(turn), s_drive[before - 1]), s_drive[before:]]
    )
    yaw = np.concatenate([yaw_drive[:before], yaw_drive[before - 1] + turn, yaw_drive[before:]])
    seq = _render_plain(domain, seed, s, yaw, np.arange(len(s)), height, width)
    return seq, range(before - 1, before + len(turn))


def _render_randomized(
    domain: str,
    frames: np.ndarray,
    seed: int,
    height: int,
    width: int,
    randomization: Randomization,
) -> SyntheticSequence:
    """`render_sequence` with the camera, lighting and camera response drawn for ``seed``."""
    spec = domain_spec(domain)
    draw = draw_randomization(domain, seed, randomization)
    cam = draw.camera
    s, _ = trajectory(domain, seed, frames, cam.fps, cam.speed_scale)
    scene = build_scene(domain, seed, float(s.max()))
    if draw.light is not None:
        scene = draw.light.apply(with_material_variants(scene))

    def poses(at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc lengths (N,) and T_world_cam (N, 4, 4) at (fractional) frame indices."""
        s, yaw = trajectory(domain, seed, at, cam.fps, cam.speed_scale)
        T = camera_poses(
            spec, scene.path, s, yaw, cam.height_m, cam.pitch_rad(at), np.deg2rad(cam.roll_deg)
        )
        return s, T

    s, T_world_cam = poses(frames)
    K = cam.intrinsics(height, width)
    response = draw.response
    blur = response is not None and response.exposure_time > 0
    if blur:  # poses when the shutter closes, half an exposure after each frame
        T_close = poses(frames + response.exposure_time / 2)[1]
    images = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    depth = np.empty((len(frames), height, width), dtype=np.float32)
    for n, frame in enumerate(frames):
        radiance, depth[n] = render_radiance(
            scene.view(float(s[n])), T_world_cam[n], K, height, width
        )
        if response is None:
            images[n] = np.round(np.clip(radiance, 0.0, 1.0) * 255.0).astype(np.uint8)
            continue
        flow = None
        if blur:
            flow = exposure_flow(depth[n], K, np.linalg.inv(T_close[n]) @ T_world_cam[n])
        rng = np.random.default_rng([seed, DOMAINS.index(domain), 4, int(frame)])
        images[n] = develop(radiance, response, K, frame / cam.fps, rng, flow)
    return SyntheticSequence(
        domain=domain,
        images=images,
        depth_m=depth,
        T_world_cam=T_world_cam,
        K=K,
        stamps_ns=np.round(frames * (1e9 / cam.fps)).astype(np.int64),
        camera_height_m=cam.height_m,
        seed=seed,
        fps=cam.fps,
        draw=draw,
    )


def write_sequence(seq: SyntheticSequence, out_dir: Path) -> None:
    """Write ``seq`` as an image folder that `open_sequences` reads back::

        out_dir/images/000000.png ...   RGB frames
        out_dir/depth/000000.npy ...    (H, W) float32 metres, 0 = invalid
        out_dir/intrinsics.txt          3x3 K, one row a line
        out_dir/poses.txt               KITTI style: 12 numbers a line, row-major 3x4 T_world_cam
        out_dir/times.txt               seconds, one a line
        out_dir/meta.json               domain, seed, camera_height_m, fps, num_frames,
                                        randomization (the draw, or null)
    Numbers are written with 17 significant digits, so they read back exactly.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "depth").mkdir(exist_ok=True)
    for i, (image, depth) in enumerate(zip(seq.images, seq.depth_m, strict=True)):
        Image.fromarray(image).save(out_dir / "images" / f"{i:06d}.png")
        np.save(out_dir / "depth" / f"{i:06d}.npy", depth.astype(np.float32))
    np.savetxt(out_dir / "intrinsics.txt", seq.K, fmt="%.17g")
    np.savetxt(out_dir / "poses.txt", seq.T_world_cam[:, :3, :].reshape(-1, 12), fmt="%.17g")
    np.savetxt(out_dir / "times.txt", seq.stamps_ns / 1e9, fmt="%.9f")
    meta = {
        "domain": seq.domain,
        "seed": seq.seed,
        "camera_height_m": seq.camera_height_m,
        "fps": seq.fps,
        "num_frames": len(seq.images),
        "randomization": None if seq.draw is None else asdict(seq.draw),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

"""Sim-to-real domain randomisation: what is drawn per sequence, and from which ranges.

`Randomization` names three groups that `render_sequence` can switch on independently:

- geometry: horizontal field of view, principal point offset, camera height, pitch (with a slow
  sway) and roll, frame rate and speed;
- appearance: light direction and ambient level, cast shadows, clear or overcast sky with
  clouds, richer material variants in the older domains;
- photometric: the camera that turns scene radiance into pixels (see `camera.develop`):
  exposure with auto-exposure and a slow drift, white balance with a slow drift, response
  curve (gamma, contrast, black level, saturation), vignetting, lens softness, motion blur from
  the exposure time, read and shot noise, JPEG compression, grey-only sensors.

All parameters are drawn once per sequence from ``default_rng([seed, domain index, 3])`` in a
fixed order, whatever groups are on: switching a group off replaces its draw by the neutral
value and leaves the others unchanged (the geometry of a sequence is the same with and without
photometric randomisation). Per-frame randomness (sensor noise, JPEG quality) comes from
``default_rng([seed, domain index, 4, frame index])``, so frame i is the same whatever ``start``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.synthetic.domains import BASE_FPS, DOMAINS, domain_spec
from sfm_ros.core.synthetic.scene import Scene

Range = tuple[float, float]


@dataclass(frozen=True)
class Randomization:
    """Which randomisation groups are on and the ranges parameters are drawn from (uniformly
    unless noted). Angles in degrees, exposure in EV (stops), image fractions of the size."""

    geometry: bool = True
    appearance: bool = True
    photometric: bool = True
    # geometry
    hfov_deg: Range = (40.0, 110.0)
    principal_offset: float = 0.05  # |cx - centre| <= this * width, same for cy with height
    pitch_deg: Range = (-12.0, 6.0)  # positive looks up
    roll_deg: Range = (-3.0, 3.0)
    sway_deg: Range = (0.0, 1.5)  # amplitude of a slow pitch sway (period 1-4 s)
    fps: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0, 30.0)  # one of these
    speed_scale: Range = (0.5, 1.5)  # times the domain's mean speed
    # appearance
    sun_elevation_deg: Range = (12.0, 70.0)  # outdoors; indoors the light is 50-90 degrees up
    overcast_probability: float = 0.3
    # photometric
    exposure_ev: Range = (-0.8, 0.8)
    exposure_drift_ev: Range = (0.0, 0.3)  # amplitude of a slow drift (period 3-15 s)
    auto_exposure: Range = (0.3, 1.0)  # 0 fixed exposure, 1 frame mean brightness held constant
    white_balance: Range = (-0.25, 0.25)  # log2 of the red gain (blue gets the inverse)
    tint: Range = (-0.08, 0.08)  # log2 of the green gain
    white_balance_drift: Range = (0.0, 0.04)  # amplitude of the slow log2 drift
    gamma: Range = (0.75, 1.35)  # exponent of the response curve
    contrast: Range = (-0.1, 0.6)  # S-curve strength
    black_level: Range = (0.0, 0.05)
    saturation: Range = (0.6, 1.3)
    vignetting: Range = (0.0, 0.5)  # fall-off at the image corners
    lens_blur_px: Range = (0.0, 0.8)  # Gaussian sigma
    exposure_time: Range = (0.0, 0.5)  # fraction of the frame interval (motion blur), skewed low
    read_noise: Range = (0.001, 0.012)  # sigma at black, in full-scale units
    shot_noise: Range = (0.0, 0.006)  # variance per unit signal
    jpeg_probability: float = 0.6
    jpeg_quality: tuple[int, int] = (35, 95)  # per sequence; each frame varies it by +-5
    grey_probability: float = 0.15

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and f.name != "fps" and not value[0] <= value[1]:
                raise ConfigError(f"randomization.{f.name} must be (low, high); got {value}")
        probabilities = (self.overcast_probability, self.jpeg_probability, self.grey_probability)
        if not all(0.0 <= p <= 1.0 for p in probabilities):
            raise ConfigError("randomization probabilities must be in [0, 1]")
        if not (self.hfov_deg[0] > 0 and self.hfov_deg[1] < 180):
            raise ConfigError(
                f"randomization.hfov_deg must be within (0, 180); got {self.hfov_deg}"
            )
        if not self.fps or min(self.fps) <= 0:
            raise ConfigError(f"randomization.fps must be positive rates; got {self.fps}")


@dataclass(frozen=True)
class CameraDraw:
    """Geometry of one sequence. ``principal_offset`` is (cx, cy) minus the image centre as
    fractions of (width, height); the pitch at time t is
    ``pitch_deg + sway_deg * sin(2 pi t / sway_period_s + sway_phase)``."""

    hfov_deg: float
    principal_offset: tuple[float, float]
    height_m: float
    pitch_deg: float
    roll_deg: float
    sway_deg: float
    sway_period_s: float
    sway_phase: float
    fps: float
    speed_scale: float

    def intrinsics(self, height: int, width: int) -> np.ndarray:
        """Pinhole K (3, 3) for an image of ``height`` x ``width`` pixels, square pixels."""
        f = (width / 2) / np.tan(np.deg2rad(self.hfov_deg) / 2)
        cx = (width - 1) / 2 + self.principal_offset[0] * width
        cy = (height - 1) / 2 + self.principal_offset[1] * height
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    def pitch_rad(self, frames: np.ndarray) -> np.ndarray:
        """Pitch (N,) at frame indices (fractional ones are times between frames)."""
        t = np.asarray(frames, dtype=np.float64) / self.fps
        sway = self.sway_deg * np.sin(2 * np.pi * t / self.sway_period_s + self.sway_phase)
        return np.deg2rad(self.pitch_deg + sway)


@dataclass(frozen=True)
class LightDraw:
    """Lighting of one sequence: unit ``light_dir`` (world, towards the light), ambient level,
    shadows, cloud cover and sky colours."""

    light_dir: tuple[float, float, float]
    ambient: float
    shadows: bool
    cloud_cover: float
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]

    def apply(self, scene: Scene) -> Scene:
        return replace(
            scene,
            light_dir=np.asarray(self.light_dir),
            ambient=self.ambient,
            shadows=self.shadows,
            cloud_cover=self.cloud_cover,
            sky_horizon=np.asarray(self.sky_horizon),
            sky_zenith=np.asarray(self.sky_zenith),
        )


@dataclass(frozen=True)
class ResponseDraw:
    """The camera of one sequence (see `camera.develop`). ``jpeg_quality`` None: no JPEG."""

    exposure_ev: float
    drift_ev: float
    drift_period_s: float
    drift_phase: float
    auto_exposure: float
    white_balance: float
    tint: float
    white_balance_drift: float
    gamma: float
    contrast: float
    black_level: float
    saturation: float
    vignetting: float
    lens_blur_px: float
    exposure_time: float
    read_noise: float
    shot_noise: float
    jpeg_quality: int | None
    grey: bool


@dataclass(frozen=True)
class SequenceDraw:
    """Everything drawn for one sequence; ``light``/``response`` None when that group is off."""

    camera: CameraDraw
    light: LightDraw | None
    response: ResponseDraw | None


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def _colour(rgb: np.ndarray) -> tuple[float, float, float]:
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def _draw_camera(rng: np.random.Generator, cfg: Randomization, height_range_m: Range) -> CameraDraw:
    return CameraDraw(
        hfov_deg=_u(rng, cfg.hfov_deg),
        principal_offset=(
            _u(rng, (-cfg.principal_offset, cfg.principal_offset)),
            _u(rng, (-cfg.principal_offset, cfg.principal_offset)),
        ),
        height_m=_u(rng, height_range_m),
        pitch_deg=_u(rng, cfg.pitch_deg),
        roll_deg=_u(rng, cfg.roll_deg),
        sway_deg=_u(rng, cfg.sway_deg),
        sway_period_s=_u(rng, (1.0, 4.0)),
        sway_phase=_u(rng, (0.0, 2 * np.pi)),
        fps=float(cfg.fps[rng.integers(len(cfg.fps))]),
        speed_scale=_u(rng, cfg.speed_scale),
    )


def _draw_light(rng: np.random.Generator, cfg: Randomization, indoor: bool) -> LightDraw:
    elevation = np.deg2rad(_u(rng, (50.0, 90.0) if indoor else cfg.sun_elevation_deg))
    azimuth = _u(rng, (0.0, 2 * np.pi))
    overcast = rng.random() < cfg.overcast_probability
    clear_ambient, overcast_ambient = _u(rng, (0.3, 0.6)), _u(rng, (0.65, 0.85))
    clouds = _u(rng, (0.0, 0.6))
    haze = _u(rng, (0.0, 1.0))
    blue = _u(rng, (0.8, 1.1))
    grey = _u(rng, (0.6, 0.85))
    indoor_ambient = _u(rng, (0.45, 0.8))
    light = (
        float(np.cos(elevation) * np.cos(azimuth)),
        float(np.cos(elevation) * np.sin(azimuth)),
        float(np.sin(elevation)),
    )
    if indoor:
        return LightDraw(light, indoor_ambient, False, 0.0, (0.4,) * 3, (0.4,) * 3)
    if overcast:
        sky = (grey, grey * 1.01, grey * 1.04)
        return LightDraw(light, overcast_ambient, False, 1.0, sky, sky)
    horizon = _colour(np.array([0.75, 0.82, 0.92]) + 0.12 * haze)
    zenith = _colour(np.array([0.3, 0.5, 0.88]) * blue + 0.15 * haze)
    return LightDraw(light, clear_ambient, True, clouds, horizon, zenith)


def _draw_response(rng: np.random.Generator, cfg: Randomization) -> ResponseDraw:
    exposure_time = cfg.exposure_time[0] + (cfg.exposure_time[1] - cfg.exposure_time[0]) * (
        float(rng.random()) ** 2
    )
    jpeg = rng.random() < cfg.jpeg_probability
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return ResponseDraw(
        exposure_ev=_u(rng, cfg.exposure_ev),
        drift_ev=_u(rng, cfg.exposure_drift_ev),
        drift_period_s=_u(rng, (3.0, 15.0)),
        drift_phase=_u(rng, (0.0, 2 * np.pi)),
        auto_exposure=_u(rng, cfg.auto_exposure),
        white_balance=_u(rng, cfg.white_balance),
        tint=_u(rng, cfg.tint),
        white_balance_drift=_u(rng, cfg.white_balance_drift),
        gamma=_u(rng, cfg.gamma),
        contrast=_u(rng, cfg.contrast),
        black_level=_u(rng, cfg.black_level),
        saturation=_u(rng, cfg.saturation),
        vignetting=_u(rng, cfg.vignetting),
        lens_blur_px=_u(rng, cfg.lens_blur_px),
        exposure_time=exposure_time,
        read_noise=_u(rng, cfg.read_noise),
        shot_noise=_u(rng, cfg.shot_noise),
        jpeg_quality=quality if jpeg else None,
        grey=bool(rng.random() < cfg.grey_probability),
    )


def neutral_camera(domain: str) -> CameraDraw:
    """The unrandomised camera of ``domain``: level, 90 degree field of view, centred, 10 Hz."""
    return CameraDraw(
        hfov_deg=90.0,
        principal_offset=(0.0, 0.0),
        height_m=domain_spec(domain).camera_height_m,
        pitch_deg=0.0,
        roll_deg=0.0,
        sway_deg=0.0,
        sway_period_s=1.0,
        sway_phase=0.0,
        fps=BASE_FPS,
        speed_scale=1.0,
    )


def draw_randomization(domain: str, seed: int, cfg: Randomization) -> SequenceDraw:
    """The parameters of sequence ``seed`` of ``domain`` under ``cfg`` (deterministic)."""
    spec = domain_spec(domain)
    rng = np.random.default_rng([seed, DOMAINS.index(domain), 3])
    camera = _draw_camera(rng, cfg, spec.camera_height_range_m)
    light = _draw_light(rng, cfg, indoor=spec.ceiling_z is not None)
    response = _draw_response(rng, cfg)
    return SequenceDraw(
        camera=camera if cfg.geometry else neutral_camera(domain),
        light=light if cfg.appearance else None,
        response=response if cfg.photometric else None,
    )

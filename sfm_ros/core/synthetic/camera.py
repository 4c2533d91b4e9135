"""The camera that turns rendered radiance into pixels under photometric randomisation.

Order of `develop`, as in a sensor and its image processor: motion blur over the exposure
(following the camera motion, per pixel from the true depth and the pose at the closing of the
shutter), lens softness, vignetting, exposure gain and white balance, read and shot noise,
clipping, response curve (gamma, S-curve contrast, black level), saturation or grey, 8-bit
rounding and JPEG. The rendered
radiance is the unrandomised image before rounding, so with every effect neutral `develop`
rounds it exactly as `render_frame` does.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from sfm_ros.core.synthetic.randomize import ResponseDraw
from sfm_ros.core.synthetic.render import pixel_rays

LUMA = np.array([0.299, 0.587, 0.114])
AE_TARGET = 0.45  # frame mean brightness auto-exposure aims at (about the unrandomised mean)
_MAX_BLUR_PX = 30.0
_MAX_BLUR_SAMPLES = 7


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample image (H, W, C), H, W >= 2, at float pixel coordinates u, v (H, W), clamped to
    the border."""
    h, w, c = image.shape
    u0 = np.minimum(np.floor(np.clip(u, 0, w - 1)), w - 2)  # stays in u's float dtype
    v0 = np.minimum(np.floor(np.clip(v, 0, h - 1)), h - 2)
    fu = (np.clip(u, 0, w - 1) - u0)[..., None]
    fv = (np.clip(v, 0, h - 1) - v0)[..., None]
    flat = image.reshape(-1, c)
    i = (v0 * w + u0).astype(np.int64)
    v00, v01 = np.take(flat, i, axis=0), np.take(flat, i + 1, axis=0)
    v10, v11 = np.take(flat, i + w, axis=0), np.take(flat, i + w + 1, axis=0)
    top = v00 + (v01 - v00) * fu
    bottom = v10 + (v11 - v10) * fu
    return top + (bottom - top) * fv


def exposure_flow(depth_m: np.ndarray, K: np.ndarray, T_tau_t: np.ndarray) -> np.ndarray:
    """Pixel motion (H, W, 2) from the frame to a pose T_tau_t (4, 4) (maps points of the frame
    into the camera at time tau). Sky (depth 0) moves as a point at infinity; clipped to +-30 px.
    """
    h, w = depth_m.shape
    rays = pixel_rays(K, h, w)
    far = depth_m <= 0
    points = rays * np.where(far, 1.0, depth_m)[..., None]
    moved = points @ T_tau_t[:3, :3].T + np.where(far, 0.0, 1.0)[..., None] * T_tau_t[:3, 3]
    uvw = moved @ K.T
    ok = uvw[..., 2] > 1e-6
    uv = uvw[..., :2] / np.where(ok, uvw[..., 2], 1.0)[..., None]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    flow = np.where(ok[..., None], uv - np.stack([u, v], axis=-1), 0.0)
    return np.clip(flow, -_MAX_BLUR_PX, _MAX_BLUR_PX)


def motion_blur(image: np.ndarray, flow_half: np.ndarray) -> np.ndarray:
    """Average of ``image`` (H, W, C) over an exposure centred on it: pixel p sees what the frame
    shows at p - tau * flow_half for tau in [-1, 1], ``flow_half`` (H, W, 2) being the pixel
    motion from mid-exposure to the closing of the shutter (constant velocity)."""
    n = min(_MAX_BLUR_SAMPLES, int(np.ceil(2 * float(np.abs(flow_half).max(initial=0.0)))) + 1)
    h, w = image.shape[:2]
    if n < 2 or h < 2 or w < 2:
        return image
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    flow_half = flow_half.astype(np.float32)
    image = image.astype(np.float32)
    out = np.zeros_like(image)
    for tau in np.linspace(-1.0, 1.0, n, dtype=np.float32):
        out += _bilinear(image, u - tau * flow_half[..., 0], v - tau * flow_half[..., 1])
    return (out / n).astype(np.float64)


def gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur of image (H, W, C) (edge padding); no-op below 0.2 px."""
    if sigma_px < 0.2:
        return image
    r = int(np.ceil(3 * sigma_px))
    x = np.arange(-r, r + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma_px) ** 2)
    kernel /= kernel.sum()
    h, w = image.shape[:2]
    padded = np.pad(image, ((r, r), (0, 0), (0, 0)), mode="edge")
    rows = sum(kernel[i] * padded[i : i + h] for i in range(2 * r + 1))
    padded = np.pad(rows, ((0, 0), (r, r), (0, 0)), mode="edge")
    return sum(kernel[i] * padded[:, i : i + w] for i in range(2 * r + 1))


def vignette(K: np.ndarray, height: int, width: int, strength: float) -> np.ndarray:
    """Gain (H, W): 1 at the principal point, 1 - strength at the farthest corner, quadratic."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    r2 = (u - K[0, 2]) ** 2 + (v - K[1, 2]) ** 2
    return 1.0 - strength * r2 / r2.max()


def exposure(response: ResponseDraw, radiance: np.ndarray, time_s: float) -> np.ndarray:
    """Per-channel gain (3,) of a frame: exposure (bias, slow drift, partial auto-exposure on
    the frame's mean brightness) times white balance (slow drift, unit luminance)."""
    metered = max(float(np.clip(radiance @ LUMA, 0.0, 1.0).mean()), 0.02)
    phase = 2 * np.pi * time_s / response.drift_period_s + response.drift_phase
    ev = response.exposure_ev + response.drift_ev * np.sin(phase)
    gain = 2.0**ev * (AE_TARGET / metered) ** response.auto_exposure
    warm = response.white_balance + response.white_balance_drift * np.sin(0.6 * phase + 1.0)
    wb = 2.0 ** np.array([warm, response.tint, -warm])
    return gain * wb / (wb @ LUMA)


def respond(x: np.ndarray, response: ResponseDraw) -> np.ndarray:
    """Response curve on clipped linear values x (..., 3) in [0, 1]: gamma, S-curve contrast,
    black level, then saturation (or grey: luminance in every channel)."""
    y = np.clip(x, 0.0, 1.0) ** response.gamma
    y = y + response.contrast * (y * y * (3.0 - 2.0 * y) - y)
    y = response.black_level + (1.0 - response.black_level) * y
    luma = (y @ LUMA)[..., None]
    return (
        np.broadcast_to(luma, y.shape) if response.grey else luma + response.saturation * (y - luma)
    )


def develop(
    radiance: np.ndarray,
    response: ResponseDraw,
    K: np.ndarray,
    time_s: float,
    rng: np.random.Generator,
    flow_half: np.ndarray | None = None,
) -> np.ndarray:
    """Image (H, W, 3) uint8 a camera with ``response`` makes of ``radiance`` (H, W, 3) float
    at ``time_s``; ``flow_half`` is the pixel motion over the second half of the exposure
    (`exposure_flow`, for `motion_blur`), ``rng`` the frame's own noise stream."""
    x = radiance if flow_half is None else motion_blur(radiance, flow_half)
    x = gaussian_blur(x, response.lens_blur_px)
    x = x * vignette(K, *x.shape[:2], response.vignetting)[..., None]
    x = x * exposure(response, x, time_s)
    sigma = np.sqrt(response.read_noise**2 + response.shot_noise * np.clip(x, 0.0, None))
    x = x + sigma * rng.standard_normal(x.shape)
    image = np.round(np.clip(respond(x, response), 0.0, 1.0) * 255.0).astype(np.uint8)
    if response.jpeg_quality is None:
        return image
    quality = int(np.clip(response.jpeg_quality + rng.integers(-5, 6), 5, 100))
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if response.grey else image).save(
        buffer, format="JPEG", quality=quality
    )
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return decoded.copy()

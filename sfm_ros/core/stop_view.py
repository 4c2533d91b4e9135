"""Whether a camera that stopped has moved since, from its image alone.

At a stop, the image the camera stopped at is compared with the current one pixel for pixel,
without depth: where nothing moved they differ by sensor noise and a brightness change; where
the camera moved, almost every textured part of the view changes; where something crosses
the view of a still camera, only the part it covers changes. Each textured pixel's change is
read as a normal flow (the brightness change over the gradient: how far an edge there moved,
in pixels), and the view is cut into cells, so that one object counts once however textured
it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.refine import image_gradients, robust_weight

_BRIGHTNESS_SCALE = 0.04  # Cauchy scale of the brightness fit, grey levels in [0, 1]


def _brightness_fit(
    still: torch.Tensor, grey: torch.Tensor, iterations: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain and bias with ``gain * grey + bias ~ still`` (N,) under the Cauchy kernel, from no
    change with the median difference as bias (iteratively reweighted least squares: what
    moved, even over nearly half the view, does not pull it)."""
    gain = torch.ones((), dtype=torch.float64, device=grey.device)
    bias = (still - grey).median().double()
    x, y = grey.double(), still.double()
    for _ in range(iterations):
        w = robust_weight(gain * x + bias - y, "cauchy", _BRIGHTNESS_SCALE)
        sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
        det = sw * (w * x * x).sum() - sx**2
        if not det > 1e-12 * sw**2:  # no contrast to fit a gain to
            break
        gain = (sw * (w * x * y).sum() - sx * sy) / det
        bias = (sy - gain * sx) / sw
    return gain, bias


def _blurred(image: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """(1, 1, h, w) image under a separable Gaussian blur (edge padding)."""
    r = math.ceil(3 * sigma_px)
    x = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    image = F.conv2d(F.pad(image, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(image, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))


def changed_fraction(
    still_grey: torch.Tensor,
    grey: torch.Tensor,
    flow_px: float = 0.4,
    grid: int = 8,
    min_gradient: float = 0.02,
    min_pixels: int = 8,
    blur_px: float = 1.0,
) -> float:
    """Fraction of the textured view that changed between two images of one camera.

    Args:
        still_grey: (1, 1, h, w) grey in [0, 1]: the image the camera stopped at.
        grey: (1, 1, h, w) grey in [0, 1]: the current image.
        flow_px: a cell has changed where its textured pixels' median normal flow exceeds
            this (pixels).
        grid: the view is cut into ``grid`` x ``grid`` cells.
        min_gradient: a pixel is textured where the (blurred) image the camera stopped at
            changes by at least this a pixel: something textured moving over a plain wall
            does not make the wall count.
        min_pixels: cells with fewer textured pixels are left out.
        blur_px: both images are blurred by a Gaussian this wide first, which averages the
            sensor noise away and keeps the normal flow linear over a few pixels of motion.

    Returns:
        The fraction of the cells with ``min_pixels`` textured pixels that changed, in
        [0, 1]; NaN where there is no such cell (nothing to tell by).
    """
    if still_grey.shape != grey.shape or grey.dim() != 4 or grey.shape[:2] != (1, 1):
        raise InputError(
            f"need two (1, 1, h, w) images, got {tuple(still_grey.shape)}, {tuple(grey.shape)}"
        )
    still, current = (_blurred(image, blur_px)[0, 0] for image in (still_grey, grey))
    gradient = torch.hypot(*image_gradients(still[None, None]))[0, 0]
    textured = gradient >= min_gradient
    if not textured.any():
        return math.nan
    gain, bias = _brightness_fit(still[textured], current[textured])
    flow = (gain * current + bias - still).abs()[textured] / gradient[textured]
    h, w = grey.shape[-2:]
    rows = (torch.arange(h, device=grey.device) * grid // h)[:, None]
    cols = (torch.arange(w, device=grey.device) * grid // w)[None, :]
    cell = (rows * grid + cols).expand(h, w)[textured]
    by_flow = torch.argsort(flow)
    by_cell = torch.sort(cell[by_flow], stable=True).indices  # by cell, each by flow
    ordered = flow[by_flow][by_cell]
    counts = torch.bincount(cell, minlength=grid * grid)
    first = torch.cumsum(counts, 0) - counts
    counted = counts >= min_pixels
    if not counted.any():
        return math.nan
    medians = ordered[(first + (counts - 1).clamp(min=0) // 2)[counted]]  # the lower median
    return float((medians > flow_px).double().mean())

"""Multi-view depth for a keyframe: a plane sweep around the network's depth, fused with it.

The DeepV2D depth module without learning. For every keyframe pixel, ``num_bins`` inverse-depth
hypotheses span ``prior_inverse_depth * (1 +- inverse_depth_range)``, or evenly in log depth a
factor ``1 + inverse_depth_range`` to either side (``bin_spacing``). Each is scored, in each
source view, by ``(1 - ZNCC) / 2`` over a square window (zero-mean normalised cross-correlation
is blind to gain and bias changes); the per-view costs are averaged over the best half of the
views that see the pixel (occlusion handling). With ``jump_penalty``, the cost volume is then
aggregated along the four scanline directions as in semi-global matching (Hirschmueller 2008),
so that a pixel's correction agrees with its neighbours' unless its own cost or an image edge
says otherwise. The winning bin is refined to sub-bin precision with a parabola. The sweep runs
on images reduced to at most ``sweep_pixels`` pixels (by 2x2 averaging, K scaled exactly); its
relative correction is upsampled to full resolution.
The prior's scale is first aligned to the poses' (``align_prior_scale``): a coarse, wide sweep
gives the median ratio of geometric to prior inverse depth, and the sweep runs around the
rescaled prior; the correction it finds is then applied to the prior as it was.

The geometric estimate is fused with the prior in inverse depth,
``1/d = w / d_geo + (1 - w) / d_prior`` (``d_geo`` in the prior's scale) with the weight
``w = c ** fusion_exponent``, where the confidence ``c`` in [0, 1] is the product of: texture
(local contrast of the keyframe), parallax (how many pixels the sweep moves along the epipolar
line in the best view), a valid view (the pixel projects into some source image), a winner
inside the sweep range (not at its ends), and the distinctiveness of the cost minimum. The
published confidence also falls where the winner matches poorly (its own cost).

With ``carry_over``, the previous frame's geometric depth is carried into the frame (warped
with the motion between them, brought to this frame's scale by the median ratio where both are
confident, kept where this frame's sweep could have found it and does not contradict it) and
averaged with this frame's estimate, weighted by their weights, the carried one's times
``carry_over``: a depth filter over the frames, as in REMODE or DeepVideoMVS's state.

Where geometry is silent (no texture, no parallax) the prior stands, with its own errors, which
a network makes over whole regions. With ``fill_radius``, such pixels take the correction
geometry made to the prior around them instead: a normalised convolution (Knutsson and Westin)
of the log correction weighted by the fusion weight, the prior's shape kept.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.geometry import check_intrinsics, inverse_intrinsics, pixel_grid, scale_intrinsics
from sfm_ros.core.lie import se3_inverse
from sfm_ros.core.refine import to_grey

_Z_MIN = 1e-3
_UNSEEN_COST = 1e4  # cost of a view that does not see the pixel (sorted last)


@dataclass
class MultiViewConfig:
    """Parameters of `multiview_depth` (intensities are grey levels in [0, 1])."""

    num_bins: int = 16
    """Inverse-depth hypotheses per pixel."""
    inverse_depth_range: float = 0.3
    """Hypotheses span the prior inverse depth times (1 - range, 1 + range), or with ``log``
    spacing times (1 / (1 + range), 1 + range)."""
    bin_spacing: Literal["inverse_depth", "log"] = "inverse_depth"
    """Hypotheses evenly spaced in inverse depth, or in log depth: as far nearer as farther by
    the factor, where a network errs by factors (with ``inverse_depth`` and the range 0.6, up to
    2.5x farther and only 1.6x nearer)."""
    patch_radius: int = 3
    """Half-size of the ZNCC window (pixels of the sweep resolution)."""
    sweep_pixels: int = 16000
    """The sweep runs at full resolution halved until it has at most this many pixels."""
    best_view_fraction: float = 0.5
    """Average the cost over this fraction of the views that see the pixel (the best ones)."""
    min_texture: float = 0.005
    """Standard deviation (grey levels) in the ZNCC window with zero confidence..."""
    full_texture: float = 0.02
    """... and with full confidence (linear in between)."""
    min_parallax_px: float = 1.0
    """Epipolar length of the whole sweep (sweep-resolution pixels) with zero confidence..."""
    full_parallax_px: float = 4.0
    """... and with full confidence."""
    full_distinctiveness: float = 0.5
    """``(mean cost - min cost) / mean cost`` of the cost curve with full confidence."""
    match_cost_full: float = 0.2
    """The winner's own cost (``(1 - ZNCC) / 2``) with full published confidence (ZNCC
    0.6)..."""
    match_cost_zero: float = 0.45
    """... and with none (ZNCC 0.1; linear in between): a winner that matches no view well
    may be distinct among worse ones, yet something moving through the view matches nowhere.
    Only the published confidence falls with it, not the fusion weight (in the weight as well,
    8 of 15 held-out synthetic sequences lost accuracy: `benchmarks/RESULTS.md`)."""
    align_prior_scale: bool = True
    """Sweep around the prior rescaled to the poses' scale: a monocular network's depth has a
    scale of its own in every frame and the poses have the trajectory's, which differ by 10-50 %
    (synthetic field, refined poses), enough to push the true depth out of the sweep range. The
    ratio is the median geometric / prior inverse depth over the confident pixels of a first,
    wider sweep at half resolution; the fused depth keeps the prior's scale."""
    align_range: float = 0.7
    """``inverse_depth_range`` of that first sweep (prior inverse depth x 0.3 to 1.7, spaced
    evenly in inverse depth whatever ``bin_spacing`` is)."""
    min_align_fraction: float = 0.02
    """Fraction of the pixels that must be confident (above 0.5) to align the scale."""
    fusion_exponent: float = 0.5
    """The geometric estimate's weight in the fusion is ``confidence ** fusion_exponent``: below
    1, geometry wins sooner over the single-view prior (0.5: about 1 % lower Abs Rel on held-out
    synthetic and real clips than 1). A new keyframe's depth, which the tracking aligns with, is
    fused with the exponent 1 (0.5 made one held-out synthetic track break down)."""
    fill_radius: float = 0.0
    """Half-size of the window, as a fraction of the sweep's width, whose weighted mean
    correction a pixel takes for the part of the fusion weight its own geometry does not
    claim; 0 = the prior as it is there."""
    fill_support: float = 0.02
    """Mean fusion weight in that window from which the mean correction is taken whole (less:
    scaled down towards the prior)."""
    carry_over: float = 0.8
    """Fraction of the previous frame's fusion weight its carried depth keeps here (0: each
    frame on its own). With 0.8 the published depth's Abs Rel went from 23.0 to 25.1 % below
    the network's over 15 held-out synthetic sequences, lower on 13 (0.95 and 1 did as well
    as 0.8 in an offline replay)."""
    carry_gate: float = 0.4
    """Log inverse-depth difference beyond which the carried depth is dropped where this frame
    has its own estimate (a moving object, an occlusion)."""
    jump_penalty: float = 0.0
    """Semi-global aggregation of the sweep's cost (Hirschmueller's SGM) along the four scanline
    directions before each pixel's winner is taken: the penalty, in cost units (ZNCC cost in
    [0, 1]), for a correction that jumps by more than one bin between neighbours; 0 = no
    aggregation (each pixel's own window decides)."""
    step_penalty: float = 0.02
    """The aggregation's penalty for a change of one bin between neighbours."""
    edge_contrast: float = 0.005
    """Grey-level difference between neighbours at which the jump penalty is halved (towards
    ``step_penalty``): the network's errors, and so the correction, change at image edges."""
    agreement_sigma: float = 0.1
    """Relative inverse-depth difference between the geometric estimate and the (scale-aligned)
    prior at which ``prior_confidence`` falls to exp(-1/2) of ``confidence``."""

    def __post_init__(self) -> None:
        if self.num_bins < 3:
            raise InputError(f"num_bins must be >= 3, got {self.num_bins}")
        if self.bin_spacing not in ("inverse_depth", "log"):
            raise InputError(
                f"bin_spacing must be 'inverse_depth' or 'log', got {self.bin_spacing!r}"
            )
        top = 1 if self.bin_spacing == "inverse_depth" else math.inf
        if not 0 < self.inverse_depth_range < top:
            raise InputError(
                f"inverse_depth_range must be in (0, {top}) with {self.bin_spacing} spacing, got "
                f"{self.inverse_depth_range}"
            )
        if not 0 < self.best_view_fraction <= 1:
            raise InputError(f"best_view_fraction must be in (0, 1], got {self.best_view_fraction}")
        if self.full_texture <= self.min_texture or self.full_parallax_px <= self.min_parallax_px:
            raise InputError("full_texture and full_parallax_px must exceed their minimums")
        if not 0 <= self.match_cost_full < self.match_cost_zero:
            raise InputError("need 0 <= match_cost_full < match_cost_zero")
        if not 0 < self.align_range < 1:
            raise InputError(f"align_range must be in (0, 1), got {self.align_range}")
        if not 0 < self.min_align_fraction <= 1:
            raise InputError(f"min_align_fraction must be in (0, 1], got {self.min_align_fraction}")
        if not 0 < self.fusion_exponent < math.inf:
            raise InputError(f"fusion_exponent must be finite and > 0, got {self.fusion_exponent}")
        if not self.agreement_sigma > 0:
            raise InputError(f"agreement_sigma must be > 0, got {self.agreement_sigma}")
        if self.patch_radius < 1 or self.sweep_pixels < 64:
            raise InputError("patch_radius must be >= 1 and sweep_pixels >= 64")
        if not 0 <= self.carry_over <= 1 or not self.carry_gate > 0:
            raise InputError(
                f"carry_over must be in [0, 1] and carry_gate > 0, got {self.carry_over}, "
                f"{self.carry_gate}"
            )
        if min(self.step_penalty, self.jump_penalty) < 0 or not self.edge_contrast > 0:
            raise InputError(
                "step_penalty and jump_penalty must be >= 0 and edge_contrast > 0, got "
                f"{self.step_penalty}, {self.jump_penalty}, {self.edge_contrast}"
            )
        if 0 < self.jump_penalty < self.step_penalty:
            raise InputError(
                f"jump_penalty must be 0 or >= step_penalty ({self.step_penalty}), got "
                f"{self.jump_penalty}"
            )
        if self.fill_radius < 0 or not self.fill_support > 0:
            raise InputError(
                f"fill_radius must be >= 0 and fill_support > 0, got {self.fill_radius}, "
                f"{self.fill_support}"
            )


@dataclass
class DepthEvidence:
    """A frame's geometric depth as the next frame's sweep carries it over; (B, 1, h, w) maps at
    the sweep's resolution."""

    inverse_depth: torch.Tensor
    """Inverse depth in the poses' scale (1/m if the poses are metric); 0 where there is none."""
    weight: torch.Tensor
    """Its fusion weight in [0, 1] (0 = nothing measured)."""


@dataclass
class MultiViewDepth:
    """Output of `multiview_depth`; all maps are (B, 1, H, W)."""

    depth_m: torch.Tensor
    """Fused depth; NaN only where the prior is invalid and there is no confident estimate."""
    confidence: torch.Tensor
    """Confidence of the fused depth in [0, 1], finite everywhere (0 = geometry supports
    nothing here): the geometric estimate's, whose weight in the fusion is its
    ``** fusion_exponent`` (``evidence.weight``), times how well its winner matches
    (``match_cost_full`` / ``match_cost_zero``)."""
    geometric_depth_m: torch.Tensor
    """Plane-sweep depth (sub-bin); NaN where no source view sees the pixel."""
    parallax_px: torch.Tensor
    """Epipolar length (full-resolution pixels) of the sweep in the view with the most
    parallax (0 where no view sees the pixel)."""
    prior_confidence: torch.Tensor
    """How far geometry confirms the prior, in [0, 1]: ``confidence`` times
    exp(-(s / agreement_sigma)^2 / 2), s the relative inverse-depth correction geometry makes to
    the scale-aligned prior. 0 where geometry says nothing or contradicts the prior: the
    confidence of the prior as a depth output (``confidence`` is the fused depth's)."""
    evidence: DepthEvidence
    """What the next frame carries over (``carry_over``)."""


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window (running sums), edges replicated."""
    k = 2 * r + 1
    c = F.pad(x, (r + 1, r, r + 1, r), mode="replicate").cumsum(-1)
    c = (c[..., k:] - c[..., :-k]).cumsum(-2)
    return (c[..., k:, :] - c[..., :-k, :]) / (k * k)


def _bin_position(s: torch.Tensor, cfg: MultiViewConfig) -> torch.Tensor:
    """Where a relative inverse-depth correction ``s`` lies on the sweep's evenly spaced axis:
    ``s`` itself, or log(1 + s) with ``log`` spacing (NaN below -1)."""
    return torch.log1p(s) if cfg.bin_spacing == "log" else s


def _correction(position: torch.Tensor, cfg: MultiViewConfig) -> torch.Tensor:
    """The relative inverse-depth correction at a position on the sweep's axis."""
    return torch.expm1(position) if cfg.bin_spacing == "log" else position


def _sweep_end(cfg: MultiViewConfig) -> float:
    """The sweep's last position on its axis (the first is its negative)."""
    r = cfg.inverse_depth_range
    return math.log1p(r) if cfg.bin_spacing == "log" else r


def _inverse_depth(depth_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse depth (0 where invalid) and the valid mask of (B, 1, H, W) depth."""
    ok = torch.isfinite(depth_m) & (depth_m > 0)
    return torch.where(ok, 1 / depth_m, torch.zeros_like(depth_m)), ok


def _check(
    key_image: torch.Tensor,
    prior_depth_m: torch.Tensor,
    K: torch.Tensor,
    src_images: torch.Tensor | Sequence[torch.Tensor],
    T_src_key: torch.Tensor | Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs as prior (B, 1, H, W), K (B, 3, 3), sources (B, N, C, H, W), poses (B, N, 4, 4)."""
    if key_image.dim() != 4 or key_image.shape[1] not in (1, 3):
        raise InputError(f"key_image must be (B, 1 or 3, H, W), got {tuple(key_image.shape)}")
    B, _, H, W = key_image.shape
    if not isinstance(src_images, torch.Tensor):
        if len(src_images) == 0:
            raise InputError("multi-view depth needs at least one source image")
        src_images = torch.stack(list(src_images), 1)
    if not isinstance(T_src_key, torch.Tensor):
        T_src_key = torch.stack(list(T_src_key), 1)
    prior = prior_depth_m.expand(B, 1, H, W) if prior_depth_m.dim() == 2 else prior_depth_m
    K = K.expand(B, 3, 3) if K.dim() == 2 else K
    N = src_images.shape[1] if src_images.dim() == 5 else 0
    if (
        tuple(prior.shape) != (B, 1, H, W)
        or N == 0
        or (src_images.shape[0], *src_images.shape[3:]) != (B, H, W)
        or tuple(T_src_key.shape) != (B, N, 4, 4)
        or tuple(K.shape) != (B, 3, 3)
    ):
        raise InputError(
            f"multi-view depth needs prior (B, 1, H, W), sources (B, N, C, H, W), poses "
            f"(B, N, 4, 4) and K (B, 3, 3) for a {tuple(key_image.shape)} keyframe; got "
            f"{tuple(prior.shape)}, {tuple(src_images.shape)}, {tuple(T_src_key.shape)}, "
            f"{tuple(K.shape)}"
        )
    check_intrinsics(K, W, H)
    if not torch.isfinite(T_src_key).all():
        raise InputError("T_src_key has NaN or inf")
    return prior, K, src_images, T_src_key


_KERNEL: dict[str, Callable[..., torch.Tensor] | None] = {}


def _on_kernel(cost: torch.Tensor, key: torch.Tensor, cfg: MultiViewConfig) -> torch.Tensor | None:
    """`_aggregate` by `scanline_kernel.aggregate` (one launch on a GPU); None where Triton is
    not installed or its kernel failed once (said once: a GPU it cannot compile for)."""
    if "aggregate" not in _KERNEL:
        try:
            from sfm_ros.core.scanline_kernel import aggregate
        except ImportError:
            aggregate = None
        _KERNEL["aggregate"] = aggregate
    kernel = _KERNEL["aggregate"]
    if kernel is None:
        return None
    try:
        return kernel(cost, key, cfg.step_penalty, cfg.jump_penalty, cfg.edge_contrast)
    except Exception as exc:  # noqa: BLE001 - the PyTorch steps below do the same work
        _KERNEL["aggregate"] = None
        logging.getLogger(__name__).warning(
            "the one-launch cost aggregation failed (%s: %s); aggregating step by step",
            type(exc).__name__,
            exc,
        )
        return None


def _aggregate(cost: torch.Tensor, key: torch.Tensor, cfg: MultiViewConfig) -> torch.Tensor:
    """Semi-global aggregation of a (B, D, h, w) cost volume: the mean over the four scanline
    directions of ``L(p, d) = C(p, d) + min(L(q, d), L(q, d +- 1) + P1, min L(q) + P2) - min
    L(q)``, q the previous pixel on the path, P2 lowered towards P1 across an edge of the (B, 1,
    h, w) grey keyframe ``key``: one Triton kernel on CUDA (float32; `_on_kernel`), else
    `_scanline_steps`."""
    if cost.is_cuda and cost.dtype == torch.float32:
        total = _on_kernel(cost, key, cfg)
        if total is not None:
            return total
    return _scanline_steps(cost, key, cfg)


def _scanline_steps(cost: torch.Tensor, key: torch.Tensor, cfg: MultiViewConfig) -> torch.Tensor:
    """`_aggregate` a few operations a path step: the path costs go straight into a buffer
    whose bins beyond both ends stay infinite."""
    total = torch.zeros_like(cost)
    for dim in (-1, -2):  # along rows (both ways at once), then along columns
        volume = torch.stack([cost, cost.flip(dim)]).movedim(dim, 0)  # (n, 2, B, D, m)
        grey = torch.stack([key, key.flip(dim)]).movedim(dim, 0)
        jump = cfg.step_penalty + (cfg.jump_penalty - cfg.step_penalty) / (
            1 + (grey[1:] - grey[:-1]).abs() / cfg.edge_contrast
        )
        n, _, _, D, _ = volume.shape
        padded = volume.new_full((n, *volume.shape[1:3], D + 2, volume.shape[-1]), math.inf)
        paths = padded[:, :, :, 1:-1]  # (n, 2, B, D, m)
        paths[0] = volume[0]
        # one view per step, taken at once: indexing inside the loop would cost more than its
        # arithmetic on these small slices
        path = paths.unbind()
        below, above = padded[..., :-2, :].unbind(), padded[..., 2:, :].unbind()
        for i, (cost_i, jump_i) in enumerate(zip(volume[1:], jump, strict=True), 1):
            best = path[i - 1].amin(2, keepdim=True)
            neighbours = torch.minimum(below[i - 1], above[i - 1]).add_(cfg.step_penalty)
            step = torch.minimum(path[i - 1], neighbours)
            step = torch.minimum(step.sub_(best), jump_i, out=step)
            torch.add(cost_i, step, out=path[i])
        both = paths.movedim(0, dim)
        total = total + both[0] + both[1].flip(dim)
    return total / 4


def _sweep(
    key: torch.Tensor,
    inv_centre: torch.Tensor,
    K: torch.Tensor,
    src: torch.Tensor,
    T: torch.Tensor,
    cfg: MultiViewConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plane sweep on grey images at one resolution.

    Returns the relative inverse-depth correction ``s`` (inverse depth = centre * (1 + s)),
    the confidence, the number of views that see each pixel, the parallax (pixels) and how
    well the winner matches in [0, 1] (1 where no view sees the pixel), each (B, 1, h, w).
    """
    B, N, _, h, w = src.shape
    D, r = cfg.num_bins, cfg.patch_radius
    end = _sweep_end(cfg)
    positions = torch.linspace(-end, end, D, dtype=key.dtype, device=key.device)
    inv_hyp = inv_centre * (1 + _correction(positions, cfg).view(1, D, 1, 1))  # (B, D, h, w)
    rays = inverse_intrinsics(K) @ pixel_grid(h, w, key.device, key.dtype)  # (B, 3, hw)
    points = rays[:, None] / inv_hyp.flatten(2)[:, :, None]  # (B, D, 3, hw)
    key_mean = _box(key, r)
    key_var = (_box(key * key, r) - key_mean**2).clamp(min=0)

    costs, seen = [], []
    parallax = torch.zeros_like(key)
    for n in range(N):
        X = T[:, n, None, :3, :3] @ points + T[:, n, None, :3, 3:]  # (B, D, 3, hw)
        z = X[:, :, 2]
        pix = (K[:, None, :2] @ X) / z.clamp(min=_Z_MIN)[:, :, None]  # (B, D, 2, hw)
        u, v = pix[:, :, 0], pix[:, :, 1]
        inside = ((z > _Z_MIN) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)).view(B, D, h, w)
        grid = torch.stack([(u + 0.5) * (2 / w) - 1, (v + 0.5) * (2 / h) - 1], -1)
        warped = F.grid_sample(
            src[:, n], grid.view(B, D * h, w, 2), align_corners=False, padding_mode="border"
        ).view(B, D, h, w)
        mean = _box(warped, r)
        var = (_box(warped * warped, r) - mean * mean).clamp(min=0)
        ncc = (_box(warped * key, r) - mean * key_mean) / torch.sqrt(var * key_var + 1e-8)
        view_ok = inside[:, D // 2 : D // 2 + 1]  # the view sees the pixel at the prior depth
        cost = torch.where(inside, (1 - ncc.clamp(-1, 1)) / 2, 1.0)
        costs.append(torch.where(view_ok, cost, _UNSEEN_COST).unsqueeze(-1))
        seen.append(view_ok)
        span = torch.hypot(*(pix[:, 0] - pix[:, -1]).unbind(1)).view(B, 1, h, w)
        parallax = torch.maximum(parallax, span * view_ok)

    # Best views per hypothesis: mean of the k lowest costs, k = ceil(fraction * views seeing).
    n_seen = torch.stack(seen).sum(0)  # (B, 1, h, w)
    n_best = torch.ceil(n_seen * cfg.best_view_fraction).clamp(min=1).long()
    ranked = torch.cat(costs, -1).sort(-1).values.cumsum(-1)  # (B, D, h, w, N)
    own = ranked.gather(-1, (n_best - 1).expand(B, D, h, w)[..., None])[..., 0] / n_best
    # a pixel no view sees (cost 1e4) aggregates as a flat 1
    cost = _aggregate(own.clamp(max=1), key, cfg) if cfg.jump_penalty > 0 else own

    best_cost, best = cost.min(1, keepdim=True)
    lo = cost.gather(1, (best - 1).clamp(min=0))
    hi = cost.gather(1, (best + 1).clamp(max=D - 1))
    curvature = lo - 2 * best_cost + hi
    interior = (best > 0) & (best < D - 1)
    offset = 0.5 * (lo - hi) / curvature.clamp(min=1e-9)
    offset = torch.where(interior & (curvature > 0), offset, 0.0).clamp(-0.5, 0.5)
    s = _correction(positions[best] + offset * (positions[1] - positions[0]), cfg)

    mean_cost = own.mean(1, keepdim=True)  # how distinct the winner is in the pixel's own cost
    distinct = (mean_cost - own.gather(1, best)) / mean_cost.clamp(min=1e-6)
    texture = (key_var.sqrt() - cfg.min_texture) / (cfg.full_texture - cfg.min_texture)
    par = (parallax - cfg.min_parallax_px) / (cfg.full_parallax_px - cfg.min_parallax_px)
    confidence = (
        (distinct / cfg.full_distinctiveness).clamp(0, 1)
        * texture.clamp(0, 1)
        * par.clamp(0, 1)
        * (interior & (n_seen > 0))
    )
    matched = (cfg.match_cost_zero - own.gather(1, best)) / (
        cfg.match_cost_zero - cfg.match_cost_full
    )
    match = torch.where(n_seen > 0, matched.clamp(0, 1), 1.0)
    return s, torch.nan_to_num(confidence, nan=0.0), n_seen, parallax, match


def _neighbourhood_correction(
    s: torch.Tensor, weight: torch.Tensor, cfg: MultiViewConfig
) -> torch.Tensor:
    """(B, 1, h, w) relative correction from the neighbourhood: the ``weight``-weighted mean of
    log(1 + s) over the fill window, scaled down where the window's mean weight is below
    ``fill_support`` (0 without any weight)."""
    radius = max(1, round(cfg.fill_radius * s.shape[-1]))
    numerator = _box(weight * torch.log1p(s), radius)
    support = _box(weight, radius)
    mean = torch.expm1(numerator / support.clamp(min=1e-6))
    return mean * (support / cfg.fill_support).clamp(max=1)


def _prior_scale(
    key: torch.Tensor,
    inv_centre: torch.Tensor,
    K: torch.Tensor,
    src: torch.Tensor,
    T: torch.Tensor,
    cfg: MultiViewConfig,
) -> torch.Tensor:
    """(B, 1, 1, 1) geometric / prior inverse depth: the median of ``1 + s`` over the confident
    pixels of a wide sweep at half the sweep resolution (1 where too few are confident)."""
    B, N, _, h, w = src.shape
    if min(h, w) >= 32:
        key, inv_centre = F.avg_pool2d(key, 2), F.avg_pool2d(inv_centre, 2)
        src = F.avg_pool2d(src.flatten(0, 1), 2).view(B, N, 1, h // 2, w // 2)
        K = scale_intrinsics(K, 0.5, 0.5)
    wide = replace(cfg, inverse_depth_range=cfg.align_range, bin_spacing="inverse_depth")
    s, confidence, _, _, _ = _sweep(key, inv_centre, K, src, T, wide)
    confident = confidence > 0.5
    ratio = torch.where(confident, 1 + s, math.nan).flatten(1).nanmedian(1).values
    enough = confident.flatten(1).float().mean(1) >= cfg.min_align_fraction
    return torch.where(enough, ratio, 1.0).view(B, 1, 1, 1)


def _carried(
    previous: DepthEvidence, T_prev_key: torch.Tensor, K: torch.Tensor, inv_guess: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The previous frame's evidence seen from the keyframe: (B, 1, h, w) inverse depth (poses'
    scale) and weight, 0 where it does not reach or its warp does not settle.

    Each pixel's ray is followed to the guessed depth, projected into the previous frame, the
    inverse depth there sampled and its point brought back; three times, each from the point
    found before (a fixed point), the last two agreeing within 2 %. The inverse depth is
    interpolated over the neighbours that have one (most of the four must), never with the
    zeros of those that do not.
    """
    B, _, h, w = inv_guess.shape
    K_inv = inverse_intrinsics(K)
    rays = K_inv @ pixel_grid(h, w, K.device, K.dtype)  # (B, 3, hw)
    T_key_prev = se3_inverse(T_prev_key)
    has = (previous.weight > 0) & (previous.inverse_depth > 0)
    maps = torch.cat(
        [torch.where(has, previous.inverse_depth, 0.0), previous.weight, has.to(K.dtype)], 1
    )
    guess = inv_guess.flatten(2)
    for _ in range(3):
        X = T_prev_key[:, :3, :3] @ (rays / guess.clamp(min=1e-9)) + T_prev_key[:, :3, 3:]
        z = X[:, 2:3]
        uv = (K[:, :2] @ X) / z.clamp(min=_Z_MIN)
        grid = torch.stack([(uv[:, 0] + 0.5) * (2 / w) - 1, (uv[:, 1] + 0.5) * (2 / h) - 1], -1)
        sampled = F.grid_sample(maps, grid.view(B, h, w, 2), align_corners=False).flatten(2)
        share = sampled[:, 2:]
        inv_prev, weight = sampled[:, :1] / share.clamp(min=1e-6), sampled[:, 1:2]
        reached = (z > _Z_MIN) & (share > 0.5)  # then inv_prev and weight are > 0
        X_prev = K_inv @ torch.cat([uv, torch.ones_like(z)], 1) / inv_prev.clamp(min=1e-9)
        z_key = (T_key_prev[:, 2:3, :3] @ X_prev + T_key_prev[:, 2:3, 3:]).clamp(min=_Z_MIN)
        settled = (guess * z_key - 1).abs() < 0.02
        guess = torch.where(reached, 1 / z_key, guess)
    weight = torch.where(reached & settled, weight, 0.0)
    return guess.view(B, 1, h, w), weight.view(B, 1, h, w)


def _with_carried(
    s: torch.Tensor,
    weight: torch.Tensor,
    centre: torch.Tensor,
    carried: tuple[torch.Tensor, torch.Tensor],
    cfg: MultiViewConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This frame's correction ``s`` and weight (B, 1, h, w) averaged with the carried
    estimate's, the latter brought to this frame's scale (median ratio over the pixels both
    measure, this frame's weight above 0.5; none where they are under 2 %) and dropped where
    this frame's sweep could not have found it (``s`` beyond the sweep's ends) or it
    differs from this frame's own by more than ``carry_gate`` in log inverse depth."""
    inv_carried, weight_carried = carried
    weight_carried = cfg.carry_over * weight_carried
    inv_own = centre * (1 + s)
    both = (weight > 0.5) & (weight_carried > 0)
    ratio = torch.where(both, inv_carried / inv_own, math.nan).flatten(1).nanmedian(1).values
    enough = both.flatten(1).to(s.dtype).mean(1) >= 0.02
    ratio = torch.where(enough, ratio, 1.0).view(-1, 1, 1, 1)
    s_carried = inv_carried / (centre * ratio) - 1
    inside = _bin_position(s_carried, cfg).abs() <= _sweep_end(cfg)  # False where not finite
    s_carried = torch.where(inside, s_carried, 0.0)
    clash = (weight > 0) & ((torch.log1p(s_carried) - torch.log1p(s)).abs() > cfg.carry_gate)
    weight_carried = torch.where(inside & ~clash, weight_carried, 0.0)
    total = weight + weight_carried
    s = torch.where(total > 0, (weight * s + weight_carried * s_carried) / total.clamp(min=1e-9), s)
    return s, 1 - (1 - weight) * (1 - weight_carried)


@torch.no_grad()
def multiview_depth(
    key_image: torch.Tensor,
    prior_depth_m: torch.Tensor,
    K: torch.Tensor,
    src_images: torch.Tensor | Sequence[torch.Tensor],
    T_src_key: torch.Tensor | Sequence[torch.Tensor],
    config: MultiViewConfig | None = None,
    previous: DepthEvidence | None = None,
    T_prev_key: torch.Tensor | None = None,
) -> MultiViewDepth:
    """Plane-sweep depth of a keyframe around its prior, fused with the prior.

    Args:
        key_image: (B, 1 or 3, H, W) keyframe in [0, 1].
        prior_depth_m: (B, 1, H, W) or (H, W) single-view depth; NaN or <= 0 invalid.
        K: (B, 3, 3) or (3, 3) intrinsics shared by all images.
        src_images: (B, N, 1 or 3, H, W), or a list of N (B, 1 or 3, H, W), source views.
        T_src_key: (B, N, 4, 4), or a list of N (B, 4, 4): keyframe points -> source camera,
            in the unit of the prior depth.
        config: parameters (defaults: `MultiViewConfig()`).
        previous: the ``evidence`` of the previous frame's result, carried over (None: none).
        T_prev_key: (B, 4, 4) keyframe points -> the previous frame's camera, in the poses'
            scale; needed with ``previous``.
    """
    prior, K, src, T = _check(key_image, prior_depth_m, K, src_images, T_src_key)
    if previous is not None and (
        T_prev_key is None
        or tuple(T_prev_key.shape) != (prior.shape[0], 4, 4)
        or not torch.isfinite(T_prev_key).all()
    ):
        raise InputError(
            "carrying the previous frame's depth over needs a finite (B, 4, 4) T_prev_key"
        )
    cfg = config or MultiViewConfig()
    return multiview_on_device(key_image, prior, K, src, T, cfg, previous, T_prev_key)


def multiview_on_device(
    key_image: torch.Tensor,
    prior: torch.Tensor,
    K: torch.Tensor,
    src: torch.Tensor,
    T: torch.Tensor,
    cfg: MultiViewConfig,
    previous: DepthEvidence | None = None,
    T_prev_key: torch.Tensor | None = None,
) -> MultiViewDepth:
    """`multiview_depth` without its input checks, on (B, C, H, W) keyframe and prior (B, 1, H,
    W), K (B, 3, 3), sources (B, N, C, H, W) and poses (B, N, 4, 4): nothing is read back to
    the host, so that it runs inside a CUDA graph. Evidence of another sweep resolution is not
    carried over."""
    B, _, H, W = key_image.shape
    N = src.shape[1]
    dtype = key_image.dtype if key_image.is_floating_point() else torch.float32
    key = to_grey(key_image.to(dtype))
    src = to_grey(src.to(dtype).flatten(0, 1)).view(B, N, 1, H, W)
    inv_prior, prior_ok = _inverse_depth(prior.to(dtype))

    # Reduce to the sweep resolution; inverse depth is averaged over valid pixels.
    factor = 1
    while cfg.sweep_pixels * factor**2 < H * W and min(H, W) >= 16 * factor:
        factor *= 2
    K_s, valid = K.to(dtype), prior_ok.to(dtype)
    key_s, src_s, inv_s = key, src.flatten(0, 1), inv_prior
    if factor > 1:
        key_s, src_s = F.avg_pool2d(key, factor), F.avg_pool2d(src_s, factor)
        inv_s, valid = F.avg_pool2d(inv_prior, factor), F.avg_pool2d(valid, factor)
        inv_s = torch.where(valid > 0, inv_s / valid.clamp(min=1e-6), 0.0)
        K_s = scale_intrinsics(K_s, 1 / factor, 1 / factor)
    h, w = key_s.shape[-2:]
    # Pixels without a prior are swept around the median prior (10 m if there is none).
    fill = torch.where(valid > 0, inv_s, math.nan).flatten(1).nanmedian(1).values
    fill = torch.nan_to_num(fill, nan=0.1).view(B, 1, 1, 1)
    inv_centre = torch.where(valid > 0, inv_s, fill)
    src_s, T = src_s.view(B, N, 1, h, w), T.to(dtype)
    ratio = torch.ones(B, 1, 1, 1, dtype=dtype, device=key.device)
    if cfg.align_prior_scale:
        ratio = _prior_scale(key_s, inv_centre, K_s, src_s, T, cfg)
    centre = inv_centre * ratio
    s, confidence, n_seen, parallax, match = _sweep(key_s, centre, K_s, src_s, T, cfg)
    weight = confidence**cfg.fusion_exponent
    if previous is not None and cfg.carry_over > 0 and previous.weight.shape == s.shape:
        carried = _carried(previous, T_prev_key.to(dtype), K_s, centre * (1 + weight * s))
        s, weight = _with_carried(s, weight, centre, carried, cfg)
        confidence = weight ** (1 / cfg.fusion_exponent)
    evidence = DepthEvidence(torch.where(weight > 0, centre * (1 + s), 0.0), weight)
    s_near = torch.zeros_like(s)
    if cfg.fill_radius > 0:
        s_near = _neighbourhood_correction(s, weight * (valid > 0), cfg)
    if factor > 1:
        up = dict(size=(H, W), mode="bilinear", align_corners=False)
        s, confidence = F.interpolate(s, **up), F.interpolate(confidence, **up)
        match = F.interpolate(match, **up)
        s_near = F.interpolate(s_near, **up)
        parallax = F.interpolate(parallax, **up) * factor
        n_seen = F.interpolate(n_seen.to(dtype), size=(H, W), mode="nearest")
    # The correction s is relative to the rescaled prior: applied to the prior, it keeps the
    # prior's scale; the geometric depth is in the poses' scale.
    inv_geo = torch.where(prior_ok, inv_prior, fill) * (1 + s)
    weight = confidence**cfg.fusion_exponent
    inv_fused = torch.where(prior_ok, inv_prior * (1 + weight * s + (1 - weight) * s_near), inv_geo)
    nan = torch.full_like(inv_geo, math.nan)
    published = confidence * match
    return MultiViewDepth(
        depth_m=torch.where(prior_ok | (confidence > 0), 1 / inv_fused, nan),
        confidence=published,
        geometric_depth_m=torch.where(n_seen > 0, 1 / (inv_geo * ratio), nan),
        parallax_px=parallax,
        prior_confidence=published * torch.exp(-0.5 * (s / cfg.agreement_sigma) ** 2),
        evidence=evidence,
    )

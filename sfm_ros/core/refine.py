"""Direct photometric pose refinement (DSO / LSD-SLAM / DeepV2D motion module, without learning).

`refine_pose` finds ``T_tgt_ref`` (maps reference-camera points into the target camera) that
minimises the robust photometric residual

    r = exp(a) * I_tgt(pi(K, T_tgt_ref @ X_ref)) + b - I_ref

over reference pixels with valid depth and enough image gradient, where ``X_ref`` is the
back-projected reference pixel and ``(a, b)`` an optional global gain and bias. It runs
Levenberg-Marquardt on SE(3) with the left update ``T <- exp(xi) @ T``, ``xi = (v, w)``, coarse to
fine over an image pyramid, with analytic Jacobians: target-image gradient x projection
Jacobian (2x3) x point Jacobian ``[I | -[X]x]``.

With ``depth_uncertainty`` (the reference depth's relative error, e.g. a network's) each
residual is divided by its standard deviation including what that depth error would cause
(LSD-SLAM's variance-normalised residual): pixels whose residual a depth error moves, along the
translation, count less, and rotation is no longer pulled off by the depth's errors.

A result that fails a sanity check keeps the initial pose and names the reason (one of
`REASONS`), so that callers can count them. Images are grey or RGB in [0, 1]; translations are
in the unit of the depth. `prepare_reference` + `refine_with_reference` let a caller align
many targets to one reference (a keyframe) without rebuilding its pyramid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Literal

import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.geometry import check_intrinsics, inverse_intrinsics, scale_intrinsics
from sfm_ros.core.lie import se3_exp, se3_inverse, so3_log

REASONS = ("ok", "few_pixels", "low_texture", "diverged", "non_finite", "no_improvement")
"""Outcomes of a refinement; everything but "ok" means the initial pose was returned."""
FALLBACK_VARIANCE = 1.0
"""Variance (unit^2, rad^2) on the diagonal of the covariance returned with a fallback."""
MIN_RESIDUAL_STD = 1 / 255
"""The residual standard deviation behind the covariance is never taken below one 8-bit grey
level: two identical frames (a repeated frame, a camera that stopped) leave no residual, which
says nothing about a motion the images cannot show."""

_GREY = (0.299, 0.587, 0.114)
_Z_MIN = 1e-3  # depth units: points closer to the target camera count as out of view


@dataclass
class RefineConfig:
    """Parameters of `refine_pose` (intensities are grey levels in [0, 1])."""

    max_iterations: tuple[int, ...] = (10, 8, 6)
    """Iteration cap per pyramid level, coarsest first; its length is the number of levels."""
    max_pixels: int = 1500
    """Pixels used per level at most: the strongest-gradient pixel of each cell of a grid."""
    min_gradient: float = 0.02
    """Gradient magnitude (grey levels per pixel, central differences) a pixel needs."""
    max_depth_step: float = 0.1
    """Pixels whose 3x3 neighbourhood spans more than this fraction of their inverse depth
    (occlusion edges, borders of invalid depth) are not used."""
    min_pixels: int = 80
    """Fewer usable pixels than this at the finest level (or, in the target image, fewer
    pixels with ``min_gradient``) is a failure."""
    robust: Literal["huber", "cauchy"] = "huber"
    robust_scale: float = 0.04
    """Residual (grey levels) where Huber leaves the quadratic, or Cauchy's scale; with
    ``adaptive_scale`` its lower bound."""
    adaptive_scale: bool = True
    """Set the scale from the residuals at the start of each level: 1.345 (Huber) or 2.385
    (Cauchy) times their robust standard deviation (1.4826 median |r|)."""
    depth_uncertainty: float = 0.0
    """Relative error of the reference depth (0 = exact). A depth error moves a pixel along its
    epipolar line, so each residual's standard deviation grows by this times |grad r . t| (t the
    translation); residuals are weighted by ``robust_scale`` over that combined deviation
    (LSD-SLAM's variance-normalised residual), which trusts pixels that constrain rotation
    whatever the depth."""
    affine_brightness: bool = True
    """Estimate a global gain and bias between the two images (exposure changes)."""
    initial_damping: float = 1e-3
    """Levenberg-Marquardt lambda at the start of each level (relative to diag(H))."""
    max_damping: float = 1e5
    """A level stops when lambda grows past this (no step lowers the cost)."""
    step_tolerance: float = 1e-5
    """A level has converged when the twist update norm falls below this..."""
    cost_tolerance: float = 1e-3
    """... or when a step changes the cost by less than this fraction..."""
    coarse_cost_tolerance: float = 1e-2
    """... (this fraction on the coarser levels, which only need to bring the pose close)."""
    max_cost_ratio: float = 1.5
    """Final cost above this times the initial cost: "diverged"."""
    max_rotation_deg: float = 10.0
    """Rotation change from the initial pose above this: "diverged"."""
    max_translation_ratio: float = 0.5
    """Translation change from the initial pose above this times the median depth of the
    used pixels: "diverged"."""
    compile_step: bool = False
    """Run each Levenberg-Marquardt step compiled by ``torch.compile`` (one graph, dynamic
    shapes): its few hundred small operations fused. The first call compiles (about 20 s on one
    CPU core, again for another batch size); then a refinement took 12 instead of 21 ms on one
    CPU thread at 128x416 (`benchmarks/RESULTS.md`). Needs a C++ compiler (CPU) or Triton
    (CUDA)."""
    sync_free: bool = False
    """Run every level's iteration cap, never asking the device whether an item is still
    active (items that stopped are left as they are, so the result is the same). No host
    sync inside the solver: what capturing it in a CUDA graph needs. Off, the solver stops
    once no item is active, which is faster where launches are not recorded."""

    def __post_init__(self) -> None:
        if not self.max_iterations or min(self.max_iterations) < 0:
            raise InputError(f"max_iterations must be non-negative, got {self.max_iterations}")
        if self.robust not in ("huber", "cauchy"):
            raise InputError(f"robust must be 'huber' or 'cauchy', got {self.robust!r}")
        if self.max_pixels < 1 or self.min_pixels < 1 or self.robust_scale <= 0:
            raise InputError("max_pixels, min_pixels and robust_scale must be positive")
        if not self.depth_uncertainty >= 0:
            raise InputError(f"depth_uncertainty must be >= 0, got {self.depth_uncertainty}")


@dataclass
class RefineResult:
    """Output of `refine_pose` for a batch of B image pairs."""

    T_tgt_ref: torch.Tensor
    """(B, 4, 4) refined pose, or the initial one where ``ok`` is False."""
    ok: torch.Tensor
    """(B,) bool: the refined pose passed every check (reason "ok")."""
    converged: torch.Tensor
    """(B,) bool: ok, and the finest level stopped on a small update, not on its cap."""
    reason: list[str]
    """Per item, one of `REASONS`."""
    iterations: torch.Tensor
    """(B,) int: Levenberg-Marquardt steps (accepted or not) over all levels."""
    initial_cost: torch.Tensor
    """(B,) mean robust residual at the initial pose (finest level)."""
    final_cost: torch.Tensor
    """(B,) mean robust residual at the returned pose (finest level)."""
    valid_pixels: torch.Tensor
    """(B,) int: pixels in view at the returned pose (finest level)."""
    covariance: torch.Tensor
    """(B, 6, 6) float64 covariance of the left-perturbation twist (v, w) of ``T_tgt_ref``:
    ``sigma^2 (J^T W J)^-1`` at the solution (gain and bias marginalised), or
    ``FALLBACK_VARIANCE * I`` where ``ok`` is False."""
    gain_bias: torch.Tensor = field(repr=False)
    """(B, 2) log gain ``a`` and bias ``b`` of the brightness model (zeros if not estimated)."""


# ------------------------------------------------------------------------------------ helpers


def to_grey(image: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) image -> (B, 1, H, W) grey (ITU-R 601 luma for RGB)."""
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise InputError(f"images must be (B, 1 or 3, H, W), got {tuple(image.shape)}")
    if image.shape[1] == 1:
        return image
    r, g, b = _GREY
    return image[:, :1] * r + image[:, 1:2] * g + image[:, 2:] * b


def image_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) -> (d/du, d/dv) per pixel: central differences, one-sided at the border."""
    gv, gu = torch.gradient(image, dim=(-2, -1))
    return gu, gv


def downsample_depth(depth_m: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) depth (<= 0 or NaN invalid) -> (B, 1, H//2, W//2): mean inverse depth of
    the valid pixels of each 2x2 block, NaN where none is valid."""
    valid = torch.isfinite(depth_m) & (depth_m > 0)
    inv = torch.where(valid, 1 / depth_m, torch.zeros_like(depth_m))
    num = F.avg_pool2d(inv, 2)
    den = F.avg_pool2d(valid.to(depth_m.dtype), 2)
    return torch.where(den > 0, den / num, torch.full_like(num, math.nan))


def robust_weight(r: torch.Tensor, kind: str, scale: float | torch.Tensor) -> torch.Tensor:
    """IRLS weights ``rho'(r) / r`` of the Huber or Cauchy loss."""
    if kind == "huber":
        return scale / r.abs().clamp(min=scale)
    return 1 / (1 + (r / scale) ** 2)


def robust_loss(r: torch.Tensor, kind: str, scale: float | torch.Tensor) -> torch.Tensor:
    """Huber ``r^2/2 | k(|r| - k/2)`` or Cauchy ``k^2/2 log(1 + (r/k)^2)``, elementwise."""
    if kind == "huber":
        a = r.abs()
        q = a.clamp(max=scale)
        return q * (a - 0.5 * q)
    return 0.5 * scale**2 * torch.log1p((r / scale) ** 2)


def _penalty(scale: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """(B,) robust loss charged for a pixel that leaves the target image (that of 3 scales)."""
    k2 = scale[:, 0].double() ** 2
    return 2.5 * k2 if cfg.robust == "huber" else 0.5 * math.log(10.0) * k2


def _robust_scale(r: torch.Tensor, inside: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """(B, 1) robust scale for residuals r (B, N): see `RefineConfig.adaptive_scale`."""
    floor = torch.full_like(r[:, :1], cfg.robust_scale)
    if not cfg.adaptive_scale:
        return floor
    mad = torch.where(inside, r.abs(), math.nan).nanmedian(1, keepdim=True).values
    factor = 1.345 if cfg.robust == "huber" else 2.385
    return torch.fmax(factor * 1.4826 * mad, floor)  # fmax: NaN (nothing inside) -> floor


# ------------------------------------------------------------------------------- the problem


@dataclass
class _Level:
    """Selected reference pixels of one pyramid level."""

    K: torch.Tensor  # (B, 3, 3)
    X_ref: torch.Tensor  # (B, 3, N) reference-camera points
    I_ref: torch.Tensor  # (B, N)
    selected: torch.Tensor  # (B, N) bool
    n_selected: torch.Tensor  # (B,) float64
    size: tuple[int, int]  # (h, w)


@dataclass
class Reference:
    """A reference image prepared for alignment: its pyramid levels, finest first."""

    levels: list[_Level]
    valid_depth_pixels: torch.Tensor  # (B,) at the finest level
    median_depth: torch.Tensor  # (B,) of the selected finest-level pixels (inf if none)
    K: torch.Tensor  # (B, 3, 3) finest level

    def expand(self, batch: int) -> Reference:
        """This one reference (batch 1) as ``batch`` identical ones, without copying: one image
        aligned against several targets is prepared once."""
        if self.K.shape[0] != 1 or batch < 1:
            raise InputError(
                f"can expand a reference of batch 1 to >= 1, got {self.K.shape[0]} to {batch}"
            )

        def many(t: torch.Tensor) -> torch.Tensor:
            return t.expand(batch, *t.shape[1:])

        levels = [
            replace(
                level,
                K=many(level.K),
                X_ref=many(level.X_ref),
                I_ref=many(level.I_ref),
                selected=many(level.selected),
                n_selected=many(level.n_selected),
            )
            for level in self.levels
        ]
        return Reference(
            levels, many(self.valid_depth_pixels), many(self.median_depth), many(self.K)
        )


@dataclass
class _Eval:
    """Residuals at one pose and what their Jacobian needs."""

    r: torch.Tensor  # (B, N) residuals (weighted by depth_sqrt_w), 0 where not in view
    inside: torch.Tensor  # (B, N) bool: selected and projected inside the target image
    cost: torch.Tensor  # (B,) float64 mean robust residual, out-of-view pixels at a penalty
    scale: torch.Tensor  # (B, 1) robust scale of the cost
    X: torch.Tensor  # (B, 3, N) points in the target camera
    sample: torch.Tensor  # (B, 3, N) target I, dI/du, dI/dv there
    gain: torch.Tensor  # (B, 1) exp(a)
    dr_dpoint: torch.Tensor  # (B, 3, N) d(unweighted r)/dX: gain * grad I . d pix / dX
    depth_sqrt_w: torch.Tensor  # (B, N) sqrt of the depth-uncertainty weight (1 when exact)


def _select_pixels(
    grey: torch.Tensor, depth_m: torch.Tensor, K: torch.Tensor, cfg: RefineConfig
) -> tuple[_Level, torch.Tensor]:
    """The strongest-gradient valid-depth pixel of each grid cell, and the valid count (B,)."""
    B, _, h, w = grey.shape
    gu, gv = image_gradients(grey)
    valid = torch.isfinite(depth_m) & (depth_m > 0)
    inv = torch.where(valid, 1 / depth_m, torch.zeros_like(depth_m))
    spread = F.max_pool2d(inv, 3, 1, 1) + F.max_pool2d(-inv, 3, 1, 1)  # 3x3 max - min
    smooth = spread <= cfg.max_depth_step * inv
    n_valid = valid.flatten(1).sum(1)
    valid &= smooth
    for border in (valid[..., 0, :], valid[..., -1, :], valid[..., 0], valid[..., -1]):
        border.fill_(False)  # one-sided gradients there (slices: no index tensor to copy)
    score = torch.hypot(gu, gv) * valid
    cell = max(1, math.ceil(math.sqrt(h * w / cfg.max_pixels)))
    best, idx = F.max_pool2d(score, cell, cell, ceil_mode=True, return_indices=True)
    best, idx = best.flatten(1), idx.flatten(1)
    selected = best > cfg.min_gradient
    u = (idx % w).to(grey.dtype)
    v = torch.div(idx, w, rounding_mode="floor").to(grey.dtype)
    depth = torch.gather(torch.nan_to_num(depth_m, nan=0.0).flatten(1), 1, idx)
    rays = inverse_intrinsics(K) @ torch.stack([u, v, torch.ones_like(u)], 1)
    I_ref = torch.gather(grey.flatten(1), 1, idx)
    level = _Level(K, rays * depth[:, None], I_ref, selected, selected.sum(1).double(), (h, w))
    return level, n_valid


def _target_pyramid(tgt: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """(B, 1, H, W) grey -> per level (B, 3, h, w): I, dI/du, dI/dv, finest first."""
    out = []
    for i in range(levels):
        tgt = F.avg_pool2d(tgt, 2) if i else tgt
        out.append(torch.cat([tgt, *image_gradients(tgt)], 1))
    return out


def _residuals(
    level: _Level,
    target: torch.Tensor,
    T_tgt_ref: torch.Tensor,
    gain_bias: torch.Tensor,
    cfg: RefineConfig,
    scale: torch.Tensor | None = None,
) -> _Eval:
    """Residuals at ``T_tgt_ref``; the cost uses ``scale`` (B, 1), or one set from them."""
    h, w = level.size
    dtype = level.X_ref.dtype
    X = T_tgt_ref[:, :3, :3].to(dtype) @ level.X_ref + T_tgt_ref[:, :3, 3:].to(dtype)
    z = X[:, 2:3]
    pix = (level.K @ X)[:, :2] / z.clamp(min=_Z_MIN)
    # align_corners=False: pixel centre u sits at (u + 0.5) / w * 2 - 1; inside = [0, w-1]
    # (Python scalars, not small tensors: no host-to-device copy inside the solver)
    gu, gv = pix[:, 0] * (2 / w) + (1 / w - 1), pix[:, 1] * (2 / h) + (1 / h - 1)
    grid = torch.stack([gu, gv], -1)  # (B, N, 2)
    inside = (gu.abs() <= 1 - 1 / w) & (gv.abs() <= 1 - 1 / h)
    inside &= level.selected & (z[:, 0] > _Z_MIN)
    sample = F.grid_sample(target, grid[:, None], align_corners=False, padding_mode="border")
    sample = sample[:, :, 0]
    gain = torch.exp(gain_bias[:, :1]).to(dtype)
    # d(u, v)/dX = (K[:2] - [u, v] e_z^T) / z  (K's last row is [0, 0, 1]); dr/dX = grad I . that
    zi = 1 / z.clamp(min=_Z_MIN)  # (B, 1, N)
    g = gain[..., None] * sample[:, 1:]  # (B, 2, N) gain * (dI/du, dI/dv)
    gX = (level.K[:, :2].transpose(1, 2) @ g) * zi  # (B, 3, N)
    gX[:, 2] -= (g * pix).sum(1) * zi[:, 0]
    # A relative depth error e shifts r by e * gX . t (gX . X = 0: moving along the ray does not
    # move the pixel), so sigma_r^2 = robust_scale^2 + (e gX . t)^2.
    depth_sigma = cfg.depth_uncertainty * (gX * T_tgt_ref[:, :3, 3:].to(dtype)).sum(1)
    sqrt_w = torch.rsqrt(1 + (depth_sigma / cfg.robust_scale) ** 2)
    r = (gain * sample[:, 0] + gain_bias[:, 1:].to(dtype) - level.I_ref) * inside * sqrt_w
    scale = _robust_scale(r, inside, cfg) if scale is None else scale
    rho = robust_loss(r, cfg.robust, scale).sum(1).double()
    n_out = level.n_selected - inside.sum(1)
    cost = (rho + _penalty(scale, cfg) * n_out) / level.n_selected.clamp(min=1)
    return _Eval(r, inside, cost, scale, X, sample, gain, gX, sqrt_w)


def _jacobian(ev: _Eval, cfg: RefineConfig) -> torch.Tensor:
    """(B, N, P) d r / d (v, w[, a, b]), zero rows outside the view; the depth-uncertainty
    weights are held constant (iteratively reweighted)."""
    gX = ev.dr_dpoint
    cols = [gX, torch.linalg.cross(ev.X, gX, dim=1)]  # dr/dv = gX, dr/dw = X x gX
    if cfg.affine_brightness:
        cols += [(ev.gain * ev.sample[:, 0])[:, None], torch.ones_like(ev.r)[:, None]]
    return torch.cat(cols, 1).transpose(1, 2) * (ev.inside * ev.depth_sqrt_w)[..., None]


def _normal_equations(
    ev: _Eval, J: torch.Tensor, cfg: RefineConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted ``H = J^T W J`` (B, P, P), ``g = J^T W r`` (B, P) (float64) and W (B, N)."""
    W = robust_weight(ev.r, cfg.robust, ev.scale) * ev.inside
    JW = (J * W[..., None]).transpose(1, 2)
    return (JW @ J).double(), (JW @ ev.r[..., None])[..., 0].double(), W


@dataclass
class _Fit:
    """What Levenberg-Marquardt keeps of the residuals at one pose: per item, small tensors
    only (choosing between two poses then costs a few elementwise selects)."""

    cost: torch.Tensor  # (B,) float64 mean robust residual, out-of-view pixels at a penalty
    scale: torch.Tensor  # (B, 1) robust scale of the cost
    H: torch.Tensor  # (B, P, P) float64 J^T W J
    g: torch.Tensor  # (B, P) float64 J^T W r
    weighted_sq: torch.Tensor  # (B,) float64 sum of W r^2
    n_inside: torch.Tensor  # (B,) pixels in view


def _fit(
    level: _Level,
    target: torch.Tensor,
    T_tgt_ref: torch.Tensor,
    gain_bias: torch.Tensor,
    cfg: RefineConfig,
    scale: torch.Tensor | None = None,
) -> _Fit:
    """Residuals at ``T_tgt_ref`` reduced to their cost and normal equations."""
    ev = _residuals(level, target, T_tgt_ref, gain_bias, cfg, scale)
    H, g, W = _normal_equations(ev, _jacobian(ev, cfg), cfg)
    weighted_sq = (W * ev.r.square()).sum(1).double()
    return _Fit(ev.cost, ev.scale, H, g, weighted_sq, ev.inside.sum(1))


def _covariance(fit: _Fit) -> torch.Tensor:
    """(B, 6, 6) ``sigma^2 H^-1`` twist block (gain and bias marginalised); NaN if singular."""
    H = fit.H
    dof = (fit.n_inside - H.shape[-1]).clamp(min=1)
    sigma2 = (fit.weighted_sq / dof).clamp(min=MIN_RESIDUAL_STD**2)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    L, info = torch.linalg.cholesky_ex(H)
    L_inv = torch.linalg.solve_triangular(_select(info == 0, L, eye), eye, upper=False)
    cov = (L_inv.mT @ L_inv)[:, :6, :6] * sigma2[:, None, None]  # H^-1 = L^-T L^-1
    cov = (cov + cov.transpose(1, 2)) / 2
    good = (info == 0) & torch.isfinite(cov).flatten(1).all(1)
    return torch.where(good[:, None, None], cov, torch.full_like(cov, math.nan))


def _select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where the batch ``mask`` (B,) is set, else ``b``."""
    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)


def _merge(mask: torch.Tensor, a: _Fit, b: _Fit) -> _Fit:
    """Fit ``a`` where the batch ``mask`` is set, else ``b``."""
    pairs = zip(vars(a).values(), vars(b).values(), strict=True)
    return _Fit(*(_select(mask, x, y) for x, y in pairs))


@dataclass
class _Solver:
    """Levenberg-Marquardt state of a batch on one level."""

    T: torch.Tensor  # (B, 4, 4) float64 pose
    ab: torch.Tensor  # (B, 2) float64 log gain and bias
    fit: _Fit  # at (T, ab)
    damping: torch.Tensor  # (B,) float64 lambda
    steps: torch.Tensor  # (B,) long: steps taken, accepted or not
    converged: torch.Tensor  # (B,) bool: stopped on a small update or a flat cost
    active: torch.Tensor  # (B,) bool: still iterating


def _lm_step(
    level: _Level, target: torch.Tensor, s: _Solver, cfg: RefineConfig, tolerance: float
) -> _Solver:
    """One damped Gauss-Newton step for the active items; inactive items are left as they are.
    Runs on the device without reading anything back (no host sync)."""
    diag = s.fit.H.diagonal(0, -2, -1)
    damp = s.damping[:, None] * diag + 1e-9 * diag.amax(-1, keepdim=True) + 1e-12
    # Cholesky and two triangular solves: unlike linalg.solve, none of them reads back an
    # error flag (the damped H is positive definite unless something is non-finite).
    L, info = torch.linalg.cholesky_ex(s.fit.H + torch.diag_embed(damp))
    y = torch.linalg.solve_triangular(L, -s.fit.g[..., None], upper=False)
    delta = torch.linalg.solve_triangular(L.mT, y, upper=True)[..., 0]
    finite = (info == 0) & torch.isfinite(delta).all(1)
    delta = torch.where(finite[:, None], delta, 0.0)
    T_new = se3_exp(delta[:, :6]) @ s.T
    ab_new = s.ab + delta[:, 6:] if cfg.affine_brightness else s.ab
    fit_new = _fit(level, target, T_new, ab_new, cfg, s.fit.scale)
    accept = s.active & finite & (fit_new.cost < s.fit.cost)
    # a step that changes the cost by less than the tolerance, taken or not: a minimum
    flat = finite & ((s.fit.cost - fit_new.cost).abs() < tolerance * s.fit.cost)
    small = delta[:, :6].norm(dim=1) < cfg.step_tolerance
    damping = torch.where(accept, (s.damping / 4).clamp(min=1e-7), s.damping * 8)
    return _Solver(
        T=_select(accept, T_new, s.T),
        ab=_select(accept, ab_new, s.ab),
        fit=_merge(accept, fit_new, s.fit),
        damping=damping,
        steps=s.steps + s.active,
        converged=s.converged | (s.active & finite & (small | flat)),
        active=s.active & finite & ~small & ~flat & (damping <= cfg.max_damping),
    )


@cache
def _compiled_lm_step() -> Callable[..., _Solver]:
    """`_lm_step` compiled once per process (`RefineConfig.compile_step`)."""
    return torch.compile(_lm_step, fullgraph=True, dynamic=True)


def _levenberg_marquardt(
    level: _Level,
    target: torch.Tensor,
    T: torch.Tensor,
    ab: torch.Tensor,
    active: torch.Tensor,
    max_iterations: int,
    cfg: RefineConfig,
    scale: torch.Tensor | None,
    tolerance: float,
) -> _Solver:
    """Robust LM on one level for the ``active`` items, with a fixed robust scale (given, or
    set from the residuals at the start); ``tolerance`` is the relative cost change that
    counts as converged. Stops early once no item is active, unless ``cfg.sync_free``."""
    B = T.shape[0]
    s = _Solver(
        T=T,
        ab=ab,
        fit=_fit(level, target, T, ab, cfg, scale),
        damping=torch.full((B,), cfg.initial_damping, dtype=torch.float64, device=T.device),
        steps=torch.zeros(B, dtype=torch.long, device=T.device),
        converged=torch.zeros(B, dtype=torch.bool, device=T.device),
        active=active,
    )
    step = _compiled_lm_step() if cfg.compile_step else _lm_step
    for _ in range(max_iterations):
        if not cfg.sync_free and not s.active.any():
            break
        s = step(level, target, s, cfg, tolerance)
    return s


# ------------------------------------------------------------------------------------ the API


def _check_images(image: torch.Tensor, name: str) -> None:
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise InputError(f"{name} must be (B, 1 or 3, H, W), got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise InputError(f"{name} has NaN or inf")


@torch.no_grad()
def prepare_reference(
    ref_image: torch.Tensor,
    ref_depth_m: torch.Tensor,
    K: torch.Tensor,
    config: RefineConfig | None = None,
) -> Reference:
    """Pyramid and selected pixels of a reference image (B, 1 or 3, H, W) in [0, 1] with its
    depth (B, 1, H, W) (NaN or <= 0 invalid) and intrinsics K (B, 3, 3)."""
    cfg = config or RefineConfig()
    _check_images(ref_image, "ref_image")
    B, _, H, W = ref_image.shape
    if tuple(ref_depth_m.shape) != (B, 1, H, W) or tuple(K.shape) != (B, 3, 3):
        raise InputError(
            f"need ref_depth_m {(B, 1, H, W)} and K {(B, 3, 3)}, got "
            f"{tuple(ref_depth_m.shape)} and {tuple(K.shape)}"
        )
    check_intrinsics(K, W, H)
    return prepare_reference_on_device(ref_image, ref_depth_m, K, cfg)


def prepare_reference_on_device(
    ref_image: torch.Tensor, ref_depth_m: torch.Tensor, K: torch.Tensor, cfg: RefineConfig
) -> Reference:
    """`prepare_reference` without its input checks: nothing is read back to the host."""
    dtype = ref_image.dtype if ref_image.is_floating_point() else torch.float32
    grey, depth, K_l = to_grey(ref_image.to(dtype)), ref_depth_m.to(dtype), K.to(dtype)
    levels, n_valid = [], None
    for i in range(len(cfg.max_iterations)):
        if i:
            grey, depth = F.avg_pool2d(grey, 2), downsample_depth(depth)
            K_l = scale_intrinsics(K_l, 0.5, 0.5)
        if min(grey.shape[-2:]) < 8:
            break
        level, valid = _select_pixels(grey, depth, K_l, cfg)
        levels.append(level)
        n_valid = valid if n_valid is None else n_valid
    z = torch.where(levels[0].selected, levels[0].X_ref[:, 2], math.nan).double()
    median = torch.nan_to_num(z.nanmedian(1).values, nan=math.inf)
    return Reference(levels, n_valid, median, K.to(dtype))


@torch.no_grad()
def refine_with_reference(
    reference: Reference,
    tgt_image: torch.Tensor,
    T_tgt_ref: torch.Tensor,
    config: RefineConfig | None = None,
) -> RefineResult:
    """`refine_pose` with a reference from `prepare_reference` (same config)."""
    cfg = config or RefineConfig()
    _check_images(tgt_image, "tgt_image")
    B = reference.K.shape[0]
    if tgt_image.shape[0] != B or tuple(tgt_image.shape[-2:]) != reference.levels[0].size:
        raise InputError(
            f"target image {tuple(tgt_image.shape)} does not match the reference "
            f"(batch {B}, size {reference.levels[0].size})"
        )
    if tuple(T_tgt_ref.shape) != (B, 4, 4) or not torch.isfinite(T_tgt_ref).all():
        raise InputError(f"T_tgt_ref must be finite with shape {(B, 4, 4)}")
    reason, solution = refine_on_device(reference, tgt_image, T_tgt_ref.double(), cfg)
    return RefineResult(
        T_tgt_ref=solution.pop("T_tgt_ref").to(T_tgt_ref.dtype),
        reason=[REASONS[i] for i in reason.tolist()],
        **solution,
    )


def refine_on_device(
    reference: Reference,
    tgt_image: torch.Tensor,
    T_init: torch.Tensor,
    cfg: RefineConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`refine_with_reference` without its input checks: (B,) indices into `REASONS` and the
    tensor fields of `RefineResult` (``T_tgt_ref`` float64 from a float64 rigid ``T_init``).
    With ``cfg.sync_free`` it reads nothing back to the host: a caller can capture it in a
    CUDA graph (inputs checked once, then copied into the graph's tensors per frame)."""
    B, device = T_init.shape[0], T_init.device
    levels = reference.levels
    targets = _target_pyramid(to_grey(tgt_image.to(reference.K.dtype)), len(levels))

    fine = levels[0]
    n_tgt = (targets[0][:, 1:].square().sum(1) > cfg.min_gradient**2).flatten(1).sum(1)
    reason = torch.zeros(B, dtype=torch.long, device=device)  # index into REASONS
    for name, bad in (
        ("low_texture", fine.selected.sum(1) < cfg.min_pixels),
        ("low_texture", n_tgt < cfg.min_pixels),
        ("few_pixels", reference.valid_depth_pixels < cfg.min_pixels),
    ):
        reason = torch.where(bad, REASONS.index(name), reason)
    active = reason == 0

    T, ab, iterations = T_init, torch.zeros(B, 2, dtype=torch.float64, device=device), 0
    for i in reversed(range(len(levels))):
        cap = cfg.max_iterations[len(cfg.max_iterations) - 1 - i]  # coarsest first
        tolerance = cfg.cost_tolerance if i == 0 else cfg.coarse_cost_tolerance
        s = _levenberg_marquardt(levels[i], targets[i], T, ab, active, cap, cfg, None, tolerance)
        T, ab, iterations = s.T, s.ab, iterations + s.steps
    # The initial cost with the finest level's robust scale, so that the two compare; where the
    # coarse levels led somewhere worse, try the finest level alone from the start.
    zero = torch.zeros_like(ab)
    initial = _residuals(fine, targets[0], T_init, zero, cfg, s.fit.scale)
    retry = active & (s.fit.cost > initial.cost)
    if len(levels) > 1 and (cfg.sync_free or retry.any()):
        cap, tolerance = cfg.max_iterations[-1], cfg.cost_tolerance
        s2 = _levenberg_marquardt(
            fine, targets[0], T_init, zero, retry, cap, cfg, s.fit.scale, tolerance
        )
        iterations = iterations + s2.steps
        better = retry & (s2.fit.cost < s.fit.cost)
        s = replace(
            s,
            T=_select(better, s2.T, s.T),
            ab=_select(better, s2.ab, s.ab),
            fit=_merge(better, s2.fit, s.fit),
            converged=_select(better, s2.converged, s.converged),
        )

    # Sanity checks; a later failing check's reason wins.
    T, fit = s.T, s.fit
    dT = T @ se3_inverse(T_init)
    cov = _covariance(fit)
    for name, bad in (
        ("no_improvement", fit.cost > initial.cost),
        ("diverged", fit.cost > cfg.max_cost_ratio * initial.cost),
        (
            "diverged",
            so3_log(dT[:, :3, :3]).norm(dim=1) > math.radians(cfg.max_rotation_deg),
        ),
        ("diverged", dT[:, :3, 3].norm(dim=1) > cfg.max_translation_ratio * reference.median_depth),
        ("few_pixels", fit.n_inside < cfg.min_pixels),
        (
            "non_finite",
            ~torch.isfinite(T).flatten(1).all(1) | ~torch.isfinite(cov).flatten(1).all(1),
        ),
    ):
        reason = torch.where(active & bad, REASONS.index(name), reason)
    ok = reason == 0
    fallback = FALLBACK_VARIANCE * torch.eye(6, dtype=torch.float64, device=device)
    return reason, dict(
        T_tgt_ref=_select(ok, T, T_init),
        ok=ok,
        converged=s.converged & ok,
        iterations=iterations,
        initial_cost=initial.cost,
        final_cost=_select(ok, fit.cost, initial.cost),
        valid_pixels=_select(ok, fit.n_inside, initial.inside.sum(1)),
        covariance=_select(ok, torch.nan_to_num(cov), fallback.expand(B, 6, 6)),
        gain_bias=_select(ok, s.ab, zero),
    )


def refine_pose(
    ref_image: torch.Tensor,
    ref_depth_m: torch.Tensor,
    tgt_image: torch.Tensor,
    K: torch.Tensor,
    T_tgt_ref: torch.Tensor,
    config: RefineConfig | None = None,
) -> RefineResult:
    """Refine ``T_tgt_ref`` by direct photometric alignment of the target to the reference.

    Args:
        ref_image: (B, 1 or 3, H, W) reference image in [0, 1].
        ref_depth_m: (B, 1, H, W) reference depth; NaN or <= 0 = invalid.
        tgt_image: (B, 1 or 3, H, W) target image in [0, 1].
        K: (B, 3, 3) intrinsics of both images.
        T_tgt_ref: (B, 4, 4) rigid initial pose mapping reference-camera points into the target.
        config: parameters (defaults: `RefineConfig()`).

    Returns:
        `RefineResult`; items that fail a check keep the initial pose.
    """
    reference = prepare_reference(ref_image, ref_depth_m, K, config)
    return refine_with_reference(reference, tgt_image, T_tgt_ref, config)


@torch.no_grad()
def linearize(
    reference: Reference,
    tgt_image: torch.Tensor,
    T_tgt_ref: torch.Tensor,
    gain_bias: torch.Tensor | None = None,
    config: RefineConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Finest-level residuals and analytic Jacobians at one pose (for checks and diagnostics).

    Returns r (B, N), J (B, N, P) with columns d/d(v, w) of the left update ``exp(xi) @ T``
    (then log gain and bias when ``config.affine_brightness``), and inside (B, N) bool: the
    selected pixels that project into the target image (r and J are 0 elsewhere). With
    ``config.depth_uncertainty`` both r and J are weighted as the solver weights them (J with
    the weights held constant).
    """
    cfg = config or RefineConfig()
    target = _target_pyramid(to_grey(tgt_image.to(reference.K.dtype)), 1)[0]
    B = T_tgt_ref.shape[0]
    ab = gain_bias.double() if gain_bias is not None else torch.zeros(B, 2, dtype=torch.float64)
    ab = ab.to(T_tgt_ref.device)
    ev = _residuals(reference.levels[0], target, T_tgt_ref.double(), ab, cfg)
    return ev.r, _jacobian(ev, cfg), ev.inside


@torch.no_grad()
def cauchy_costs(
    reference: Reference,
    tgt_image: torch.Tensor,
    poses: list[torch.Tensor],
    gain_bias: torch.Tensor,
    config: RefineConfig | None = None,
) -> torch.Tensor:
    """(len(poses), B) finest-level mean Cauchy costs of candidate poses ``T_tgt_ref``
    (B, 4, 4), over the pixels that every candidate keeps in view, with one robust scale per
    item: the smallest of the candidates' adaptive scales.

    The refinement's Huber kernel lets every pixel pull with a bounded force, so an object
    moving on its own across much of the view pulls the pose along; Cauchy's influence falls
    back towards zero for large residuals, so comparing candidates by it asks which one the
    static rest of the scene supports. The residuals are not weighted by
    ``depth_uncertainty``: that weight falls with the translation, which would favour the
    candidate that moves further.
    """
    cfg = replace(config or RefineConfig(), robust="cauchy", depth_uncertainty=0.0)
    target = _target_pyramid(to_grey(tgt_image.to(reference.K.dtype)), 1)[0]
    level, ab = reference.levels[0], gain_bias.double()
    evs = [_residuals(level, target, T.double(), ab, cfg) for T in poses]
    common = torch.stack([ev.inside for ev in evs]).all(0)  # (B, N)
    scale = torch.stack([_robust_scale(ev.r, common, cfg) for ev in evs]).amin(0)
    n = common.sum(1).clamp(min=1)
    return torch.stack([(robust_loss(ev.r, "cauchy", scale) * common).sum(1) / n for ev in evs])

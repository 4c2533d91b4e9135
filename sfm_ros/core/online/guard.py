"""Depth statistics of held-out frames, and the guard that refuses weights whose depth went bad.

The photometric loss can improve while depth gets worse: it is blind to the monocular scale (which
can drift until the depth network's output sits at one of its bounds), to far and textureless
regions, and it is happy with a depth that only explains rotation. Depth is therefore guarded
with its own statistics, computed on the held-out frames for the candidate weights and for two
references, the starting weights and the last good version:

- ``spread``: std of log depth in an image, averaged over images (scale-free; 0 = constant);
- ``saturation``: fraction of pixels within ``SATURATION_MARGIN`` of the depth network's output
  bounds (depth at its near or far limit, which the depth node publishes as NaN);
- ``median``: median log depth per image (the monocular scale);
- rank correlation (Spearman) per image between the candidate's depth and a reference's.

A candidate whose depth is collapsed (constant, or mostly saturated) is refused whatever was
accepted before; otherwise it is refused when it saturates more than the starting weights, when
its spread moved far from theirs, or when its scale or depth ordering jumped from the last good
version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SATURATION_MARGIN = 0.02
"""A disparity within this fraction of the network's output bound counts as saturated."""


@dataclass
class DepthStats:
    """Depth statistics of N held-out images (see the module docstring)."""

    log_depth: torch.Tensor
    """(N, P) float64 log depth (network units) of the N images' P pixels."""
    saturation: float
    """Fraction of pixels at the network's output bounds, in [0, 1]."""

    @property
    def spread(self) -> float:
        """Std of log depth per image, averaged over images."""
        return float(self.log_depth.std(dim=1).mean())

    @property
    def median(self) -> torch.Tensor:
        """(N,) median log depth per image."""
        return self.log_depth.median(dim=1).values

    @property
    def median_depth(self) -> float:
        """Median over images of the per-image median depth (network units)."""
        return float(self.median.median().exp())


def depth_stats(disp: torch.Tensor, disp_bounds: tuple[float, float]) -> DepthStats:
    """Statistics of (N, 1, h, w) disparities whose network output lies in ``disp_bounds``
    (``beta``, ``alpha + beta`` of the depth network's ``alpha * sigmoid + beta``)."""
    d = disp.detach().double().flatten(1).clamp_min(1e-12)
    lo, hi = disp_bounds
    saturated = (d <= lo * (1.0 + SATURATION_MARGIN)) | (d >= hi / (1.0 + SATURATION_MARGIN))
    return DepthStats(log_depth=-d.log(), saturation=float(saturated.double().mean()))


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks (0..P-1, float64) of the values of each row of (N, P) ``x``."""
    order = x.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(x.shape[1], device=x.device).expand_as(order))
    return ranks.double()


def rank_correlation(a: DepthStats, b: DepthStats) -> float:
    """Spearman correlation of two depth predictions of the same images, averaged over images;
    0 for an image where either prediction is constant."""
    ra, rb = _ranks(a.log_depth), _ranks(b.log_depth)
    ra, rb = ra - ra.mean(dim=1, keepdim=True), rb - rb.mean(dim=1, keepdim=True)
    denom = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-12)
    constant = (a.log_depth.std(dim=1) == 0) | (b.log_depth.std(dim=1) == 0)
    rho = torch.where(constant, torch.zeros_like(denom), (ra * rb).sum(dim=1) / denom)
    return float(rho.mean())


@dataclass
class DepthGuard:
    """Thresholds on `DepthStats`; see the module docstring and `OnlineConfig`."""

    min_spread: float
    """Collapse: log-depth spread below this."""
    max_saturation: float
    """Collapse: saturated fraction above this."""
    max_saturation_increase: float
    """Saturated fraction above the starting weights' by more than this."""
    max_spread_ratio: float
    """Spread differs from the starting weights' by more than this factor (either way)."""
    max_scale_change: float
    """Median depth moved by more than this fraction (either way) from the last good version."""
    min_rank_correlation: float
    """Depth ordering correlates less than this with the last good version's."""

    def collapse(self, s: DepthStats) -> list[str]:
        """Why depth ``s`` is collapsed (empty when it is not)."""
        reasons = []
        if not math.isfinite(s.spread) or s.spread < self.min_spread:
            reasons.append(
                f"depth collapsed: held-out log-depth spread {s.spread:.4f} below "
                f"{self.min_spread} (constant depth)"
            )
        if s.saturation > self.max_saturation:
            reasons.append(
                f"depth saturated: {100 * s.saturation:.0f}% of held-out pixels at the depth "
                f"network's output bound (more than {100 * self.max_saturation:.0f}%)"
            )
        return reasons

    def check(
        self, cand: DepthStats, start: DepthStats, good: DepthStats, version: int
    ) -> list[str]:
        """Why the candidate's depth must not be published (empty when it may).

        Relative checks use a reference only when that reference is not collapsed itself.
        """
        reasons = self.collapse(cand)
        if reasons:
            return reasons
        if not self.collapse(start):
            if cand.saturation > start.saturation + self.max_saturation_increase:
                reasons.append(
                    f"depth saturation: {100 * cand.saturation:.1f}% of held-out pixels at the "
                    f"output bounds, {100 * start.saturation:.1f}% with the starting weights"
                )
            ratio = cand.spread / start.spread
            if not 1.0 / self.max_spread_ratio <= ratio <= self.max_spread_ratio:
                reasons.append(
                    f"depth spread: held-out log-depth spread {cand.spread:.3f}, "
                    f"{start.spread:.3f} with the starting weights (x{ratio:.2f})"
                )
        if not self.collapse(good):
            drift = float((cand.median - good.median).median())
            if abs(drift) > math.log1p(self.max_scale_change):
                reasons.append(
                    f"depth scale drift: held-out median depth x{math.exp(drift):.2f} from "
                    f"version {version}"
                )
            rho = rank_correlation(cand, good)
            if rho < self.min_rank_correlation:
                reasons.append(
                    f"depth ordering: rank correlation {rho:.2f} with version {version} (below "
                    f"{self.min_rank_correlation})"
                )
        return reasons

    @staticmethod
    def summary(cand: DepthStats, start: DepthStats, good: DepthStats) -> dict[str, float]:
        """Numbers recorded with a check (published checkpoints carry them)."""
        return {
            "depth_spread": cand.spread,
            "depth_spread_start": start.spread,
            "depth_saturation": cand.saturation,
            "depth_saturation_start": start.saturation,
            "depth_median": cand.median_depth,
            "depth_median_start": start.median_depth,
            "depth_median_previous": good.median_depth,
            "depth_rank_corr_previous": rank_correlation(cand, good),
            "depth_rank_corr_start": rank_correlation(cand, start),
        }

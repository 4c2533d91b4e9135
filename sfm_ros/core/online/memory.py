"""`MemorySet`: synthetic frames with true depth that measure forgetting while adapting.

Replaying the synthetic training worlds (`replay`) slows forgetting but does not bound it: 3000
warm-up steps on KITTI 06's 51 frames worsened the field's held-out Abs Rel by 14 % while every
check on the clip's own held-out snippets passed. So each check also measures what the model
knew: the median-scaled Abs Rel of the depth network on a few frames of each synthetic domain,
spread along trajectories (``MEMORY_SEEDS``) that neither the packaged model's training, nor
the replay, nor the warm-up benchmark's forgetting table use. A candidate whose Abs Rel in any
domain exceeds the starting weights' by more than ``max_forgetting`` is not published; training
goes on from it (forgetting comes and goes while replay keeps training on what the model knew).
The frames are seen as a camera's are: rendered at ``UPSCALE`` times the adaptation size, resized
to it (antialiased), and scored at the rendered size against the true depth with the
benchmarks' `evaluate_depth` (scored at the network's size instead, the check saw +4 % where
the benchmark measured +13 %). They are rendered once, before the first check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.metrics import evaluate_depth
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.synthetic.domains import domain_spec

MEMORY_SEEDS = tuple(range(500, 508))
"""Trajectories per domain: one place's frames look alike, and Abs Rel moves by 10-20 % from
one place to another (with three trajectories of three frames, the check saw +3.7 % on the
field where the benchmark's 25 trajectories measured +9.8 %)."""
MEMORY_SPACING = 30
"""Frames between two memory frames of one trajectory (10 Hz: 3 s, another view)."""
UPSCALE = 2
"""Memory frames are rendered at this times the network's input size, as a camera sees more."""


def parse_domains(spec: str) -> list[str]:
    """The synthetic domains of a comma-separated list (empty = none).

    Raises:
        ConfigError: an unknown domain.
    """
    domains = [d.strip() for d in spec.split(",") if d.strip()]
    for domain in domains:
        domain_spec(domain)
    return domains


@dataclass
class MemorySet:
    """N synthetic frames with their true depth, grouped by domain."""

    frames: torch.Tensor
    """(N, 3, h, w) float images in [0, 1] at the network's input size."""
    depth_m: np.ndarray
    """(N, H, W) float32 true depth in metres at the rendered size."""
    domains: list[str]
    """(N,) each frame's domain."""

    @classmethod
    def render(
        cls, domains: list[str], frames_per_trajectory: int, height: int, width: int,
        device: torch.device,
    ) -> MemorySet:  # fmt: skip
        """``frames_per_trajectory`` frames, ``MEMORY_SPACING`` apart, of each of the
        ``MEMORY_SEEDS`` trajectories of each domain, for a network input of ``height`` x
        ``width``."""
        images, depths, names = [], [], []
        for domain in domains:
            for seed in MEMORY_SEEDS:
                for k in range(frames_per_trajectory):
                    seq = render_sequence(
                        domain, 1, seed=seed, height=UPSCALE * height, width=UPSCALE * width,
                        start=k * MEMORY_SPACING,
                    )  # fmt: skip
                    images.append(seq.images[0])
                    depths.append(seq.depth_m[0])
                    names.append(domain)
        frames = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        frames = F.interpolate(
            frames, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
        depth_m = np.stack(depths).astype(np.float32)
        return cls(frames.contiguous().to(device), depth_m, names)

    def abs_rel(self, disp: torch.Tensor) -> dict[str, float]:
        """Mean over each domain's frames of the median-scaled Abs Rel of the depth
        ``1 / disp`` ((N, 1, h, w) disparities of the depth network on ``frames``), scored as
        the benchmarks score depth (`evaluate_depth`: upsampled to the true depth's size, true
        depths in (1e-3, 80) m)."""
        pred_m = (1.0 / disp[:, 0].float()).cpu().numpy()
        scores = {}
        for domain in dict.fromkeys(self.domains):
            rows = [i for i, name in enumerate(self.domains) if name == domain]
            try:
                result = evaluate_depth(self.depth_m[rows], pred_m[rows])
                scores[domain] = result.median_scaled["abs_rel"]
            except InputError:  # no valid prediction anywhere: diverged weights
                scores[domain] = float("nan")
        return scores


def forgetting_reasons(
    cand: dict[str, float], start: dict[str, float], max_forgetting: float
) -> list[str]:
    """Why the candidate forgot too much (empty when it did not): a domain whose Abs Rel is
    not finite, or above the starting weights' by more than ``max_forgetting`` (a fraction)."""
    reasons = []
    for domain, a in cand.items():
        b = start[domain]
        if not np.isfinite(a):
            reasons.append(f"forgetting: {domain} memory depth is not finite")
        elif np.isfinite(b) and a > b * (1.0 + max_forgetting):
            reasons.append(
                f"forgetting: {domain} memory Abs Rel {a:.3f}, {100 * (a / b - 1):+.1f}% from "
                f"the starting weights' {b:.3f} (limit {100 * max_forgetting:.0f}%)"
            )
    return reasons


def worst_change(cand: dict[str, float], start: dict[str, float]) -> float:
    """Largest relative change of Abs Rel from ``start`` over the domains (NaN if none)."""
    changes = [cand[d] / start[d] - 1.0 for d in cand if start[d] > 0]
    return float(max(changes)) if changes else float("nan")

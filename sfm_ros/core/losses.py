"""Self-supervised view-synthesis losses (SfMLearner, Monodepth2).

All images are (B, 3, H, W) float in [0, 1]; disparities are the depth network's inverse depth
(depth = 1 / disp, metres).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sfm_ros.core.errors import ConfigError, InputError
from sfm_ros.core.geometry import (
    backproject,
    depth_from_disp,
    inverse_intrinsics,
    inverse_warp,
    scale_intrinsics,
)
from sfm_ros.core.models.exposure import brightness_matched
from sfm_ros.core.params import Params, param


class SSIM(nn.Module):
    """Per-pixel structural dissimilarity ``(1 - SSIM) / 2`` in [0, 1], 3x3 window (Monodepth2).

    forward(x, y): (B, C, H, W) each -> (B, C, H, W); reflection padding keeps the size.
    """

    C1 = 0.01**2
    C2 = 0.03**2

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        y = F.pad(y, (1, 1, 1, 1), mode="reflect")
        mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
        sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
        sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
        sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
        num = (2 * mu_x * mu_y + self.C1) * (2 * sigma_xy + self.C2)
        den = (mu_x**2 + mu_y**2 + self.C1) * (sigma_x + sigma_y + self.C2)
        return ((1 - num / den) / 2).clamp(0, 1)


_ssim = SSIM()


def photometric_error(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """``ssim_weight * SSIM + (1 - ssim_weight) * L1``, channel mean: (B, C, H, W) -> (B, 1, H, W).

    ``ssim_weight = 0`` is SfMLearner's plain L1; Monodepth2 uses 0.85.
    """
    error = (1 - ssim_weight) * (pred - target).abs().mean(1, keepdim=True)
    if ssim_weight > 0:
        error = error + ssim_weight * _ssim(pred, target).mean(1, keepdim=True)
    return error


def _grad_x(t: torch.Tensor) -> torch.Tensor:
    return t[..., :, 1:] - t[..., :, :-1]


def _grad_y(t: torch.Tensor) -> torch.Tensor:
    return t[..., 1:, :] - t[..., :-1, :]


def _mean_abs(t: torch.Tensor) -> torch.Tensor:
    """Mean absolute value; 0 for an empty tensor (gradients of maps too small to have them)."""
    return t.abs().mean() if t.numel() else t.new_zeros(())


def smoothness_second_order(disp: torch.Tensor) -> torch.Tensor:
    """SfMLearner smoothness: mean |d2/dx2| + |d2/dxdy| + |d2/dydx| + |d2/dy2| of (B, 1, H, W)."""
    dx, dy = _grad_x(disp), _grad_y(disp)
    return (
        _mean_abs(_grad_x(dx))
        + _mean_abs(_grad_y(dx))
        + _mean_abs(_grad_x(dy))
        + _mean_abs(_grad_y(dy))
    )


def smoothness_edge_aware(disp: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """Monodepth2 smoothness of mean-normalised disparity (B, 1, H, W), down-weighted at edges.

    First-order disparity gradients are weighted by ``exp(-|image gradient|)`` of ``img``
    (B, 3, H, W) at the same resolution.
    """
    disp = disp / (disp.mean((2, 3), keepdim=True) + 1e-7)
    weight_x = torch.exp(-_grad_x(img).abs().mean(1, keepdim=True))
    weight_y = torch.exp(-_grad_y(img).abs().mean(1, keepdim=True))
    return _mean_abs(_grad_x(disp) * weight_x) + _mean_abs(_grad_y(disp) * weight_y)


def explainability_regularizer(mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """SfMLearner: binary cross-entropy of a mask in (0, 1) towards 1, i.e. ``mean(-log mask)``.

    Keeps the explainability mask from collapsing to 0 (written out rather than
    ``F.binary_cross_entropy``, which autocast refuses).
    """
    return -torch.log(mask.clamp(min=eps)).mean()


@dataclass
class LossConfig(Params):
    """Weights and switches of :class:`ViewSynthesisLoss`; defaults are Monodepth2's."""

    ssim_weight: float = param(0.85, "weight of SSIM against L1 in the photometric error")
    smooth_weight: float = param(1e-3, "weight of the disparity smoothness term")
    smoothness: str = param(
        "edge_aware",
        "smoothness: edge_aware (Monodepth2) or second_order (SfMLearner)",
        choices=("edge_aware", "second_order"),
    )
    use_mask: bool = param(False, "explainability mask term (SfMLearner)")
    mask_weight: float = param(0.2, "weight of the explainability regulariser")
    min_reprojection: bool = param(True, "per-pixel minimum over sources (Monodepth2)")
    automask: bool = param(True, "mask pixels the identity warp explains better (Monodepth2)")
    scales: int = param(4, "number of disparity scales in the loss")
    upsample_to_full: bool = param(True, "warp at full resolution with upsampled disparity")
    min_depth: float = param(0.1, "depth used for warping is bounded below by this")
    max_depth: float = param(100.0, "depth used for warping is bounded above by this")
    sum_over_sources: bool = param(
        False,
        "sum the photometric and mask terms over sources (SfMLearner) instead of averaging "
        "them; this sets their weight relative to smoothness",
    )
    velocity_weight: float = param(
        0.0,
        "weak velocity supervision (PackNet-SfM): weight of |‖t_pred‖ - ‖t_true‖| (m) per "
        "source frame, on training data with true poses (synthetic); it fixes the monocular "
        "scale, which otherwise drifts until depth sits at min_depth; 0 = off",
    )
    consistency_weight: float = param(
        0.0,
        "geometry consistency (SC-SfMLearner): weight of |D_moved - D_src| / (D_moved + D_src), "
        "the target's depth moved into each source camera against the source's own depth "
        "there; it keeps depth, and so the translation scale, consistent from frame to frame; "
        "runs the depth network on the sources too; 0 = off",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.smoothness not in ("edge_aware", "second_order"):
            raise ConfigError(
                f"loss smoothness must be 'edge_aware' or 'second_order', got {self.smoothness!r}"
            )
        if not 0.0 <= self.ssim_weight <= 1.0:
            raise ConfigError(f"loss ssim_weight must be in [0, 1], got {self.ssim_weight}")
        weights = (self.smooth_weight, self.mask_weight, self.velocity_weight)
        if min(weights) < 0 or self.consistency_weight < 0:
            raise ConfigError(
                "loss smooth_weight, mask_weight, velocity_weight and consistency_weight must "
                "be >= 0"
            )
        if self.scales < 1:
            raise ConfigError(f"loss scales must be >= 1, got {self.scales}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(
                f"loss needs 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}"
            )

    @classmethod
    def preset(cls, name: str, **overrides: object) -> LossConfig:
        """``"monodepth2"`` (the defaults) or ``"sfmlearner"``, with optional field overrides."""
        presets = {
            "monodepth2": {},
            "sfmlearner": {
                "ssim_weight": 0.0,
                "smooth_weight": 0.5,
                "smoothness": "second_order",
                "use_mask": True,
                "mask_weight": 0.2,
                "min_reprojection": False,
                "automask": False,
                "upsample_to_full": False,
                "sum_over_sources": True,
            },
        }
        if name not in presets:
            raise ConfigError(f"unknown loss preset {name!r}; choose one of {sorted(presets)}")
        unknown = set(overrides) - set(cls.defaults())
        if unknown:
            raise ConfigError(f"unknown loss config fields {sorted(unknown)}")
        return cls(**{**presets[name], **overrides})


def velocity_loss(pred_T_src_tgt: torch.Tensor, true_T_src_tgt: torch.Tensor) -> torch.Tensor:
    """Mean |‖t_pred‖ - ‖t_true‖| in metres over (B, S, 4, 4) source-from-target poses."""
    pred = pred_T_src_tgt[..., :3, 3].norm(dim=-1)
    true = true_T_src_tgt[..., :3, 3].norm(dim=-1)
    return (pred - true).abs().mean()


def depth_consistency_loss(
    depth_tgt: torch.Tensor, depth_srcs: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor
) -> torch.Tensor:
    """SC-SfMLearner's geometry consistency (Bian et al., NeurIPS 2019).

    Each target pixel is moved into every source camera with its depth and ``T_src_tgt``; its
    depth there, ``D_moved``, is compared with the source's own depth sampled where it lands:
    ``|D_moved - D_src| / (D_moved + D_src)`` in [0, 1], averaged over the pixels that land in
    view. Zero for true depths and poses; a frame whose depth is scaled differently from its
    neighbours' pays, whatever the images.

    Args:
        depth_tgt: (B, 1, H, W) metres; depth_srcs: (B, S, 1, H, W) metres;
        T_src_tgt: (B, S, 4, 4); K: (B, 3, 3) for (H, W).
    """
    B, S, _, H, W = depth_srcs.shape
    depth = depth_tgt.unsqueeze(1).expand(B, S, 1, H, W).flatten(0, 1)
    K_rep = K.unsqueeze(1).expand(B, S, 3, 3).flatten(0, 1)
    T = T_src_tgt.flatten(0, 1)
    sampled, valid = inverse_warp(depth_srcs.flatten(0, 1), depth, T, K_rep)
    points = backproject(depth, inverse_intrinsics(K_rep))
    moved = (T[:, 2:3, :3] @ points + T[:, 2:3, 3:]).reshape(B * S, 1, H, W)
    # The floor keeps the ratio finite (and its gradient too) behind the source camera,
    # where `valid` drops the pixel anyway.
    diff = (moved - sampled).abs() / (moved + sampled).clamp(min=1e-3)
    valid = valid > 0
    return torch.where(valid, diff, 0.0).sum() / valid.sum().clamp(min=1)


class ViewSynthesisLoss(nn.Module):
    """Multi-scale photometric + smoothness (+ explainability) loss.

    Per scale ``s``: photometric loss of the target against each source warped with the depth
    of ``disps[s]`` and ``T_src_tgt``, either at full resolution from the upsampled disparity
    (``upsample_to_full``, Monodepth2) or at the disparity's resolution with area-downsampled
    images and scaled K (SfMLearner). A pixel that projects outside a source costs its unwarped
    (identity) error there, without gradient, so depth cannot lower the loss by sending pixels
    out of view. With ``min_reprojection`` the per-pixel minimum over sources is used, else the mean
    over (source, pixel) pairs. ``automask`` (Monodepth2) replaces the error of pixels whose
    unwarped (identity) error is lower by that identity error, a constant without gradient:
    they are excluded from learning but keep the loss value comparable between poses. With
    ``use_mask`` each source's error is weighted by its explainability mask (before the
    minimum) and the regulariser is added. Smoothness is taken on ``disps[s]`` with
    weight ``smooth_weight / 2**s``. The total is the mean over scales.

    With ``consistency_weight`` and the sources' full-resolution disparities, the weighted
    `depth_consistency_loss` is added (``consistency`` in the stats); held-out evaluation
    leaves it out by not passing them.

    After each forward, ``self.last_warped`` holds the scale-0 warped sources (B, S, 3, H, W),
    detached, for logging.
    """

    def __init__(self, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LossConfig()
        self.last_warped: torch.Tensor | None = None

    def forward(
        self,
        tgt: torch.Tensor,
        srcs: torch.Tensor,
        disps: list[torch.Tensor],
        T_src_tgt: torch.Tensor,
        K: torch.Tensor,
        masks: list[torch.Tensor] | None = None,
        src_disps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Args: tgt (B,3,H,W); srcs (B,S,3,H,W); disps list of (B,1,h,w), full resolution first;
        T_src_tgt (B,S,4,4); K (B,3,3) for (H, W); masks list of (B,S,h,w) or None;
        src_disps (B,S,1,H,W) or None.

        Returns: (total loss scalar tensor, stats): ``photo/s{i}``, ``smooth`` (weighted),
        ``mask_reg`` (weighted, with ``use_mask``), ``automask_fraction`` (with ``automask``),
        ``total``; total = mean of photo/s* + smooth + mask_reg.
        """
        cfg = self.cfg
        _check_inputs(tgt, srcs, disps, T_src_tgt, K, masks, cfg)
        srcs = brightness_matched(tgt, srcs)
        B, S, _, H, W = srcs.shape
        stats: dict[str, torch.Tensor] = {}
        photo_terms, smooth_terms, mask_terms, masked_fractions = [], [], [], []
        per_source = S if cfg.sum_over_sources else 1  # SfMLearner sums these over sources
        for s in range(cfg.scales):
            disp = disps[s]
            h, w = disp.shape[-2:]
            if cfg.upsample_to_full:
                disp = F.interpolate(disp, (H, W), mode="bilinear", align_corners=False)
                tgt_s, srcs_s, K_s = tgt, srcs, K
            else:
                tgt_s = F.interpolate(tgt, (h, w), mode="area")
                srcs_s = F.interpolate(srcs.flatten(0, 1), (h, w), mode="area").unflatten(0, (B, S))
                K_s = scale_intrinsics(K, w / W, h / H)
            mask = None
            if cfg.use_mask:
                mask = masks[s]
                if mask.shape[-2:] != disp.shape[-2:]:
                    mask = F.interpolate(
                        mask, disp.shape[-2:], mode="bilinear", align_corners=False
                    )
            photo, masked_fraction, warped = self._photometric(
                tgt_s, srcs_s, disp, T_src_tgt, K_s, mask
            )
            if s == 0:
                self.last_warped = warped.detach()
            photo_terms.append(per_source * photo)
            stats[f"photo/s{s}"] = photo
            if masked_fraction is not None:
                masked_fractions.append(masked_fraction)

            if cfg.smoothness == "edge_aware":
                img = tgt if (h, w) == (H, W) else F.interpolate(tgt, (h, w), mode="area")
                smooth = smoothness_edge_aware(disps[s], img)
            else:
                smooth = smoothness_second_order(disps[s])
            smooth_terms.append(cfg.smooth_weight / 2**s * smooth)
            if cfg.use_mask:
                mask_terms.append(
                    per_source * cfg.mask_weight * explainability_regularizer(masks[s])
                )

        n = cfg.scales
        total = (sum(photo_terms) + sum(smooth_terms)) / n
        stats["smooth"] = sum(smooth_terms) / n
        if cfg.use_mask:
            stats["mask_reg"] = sum(mask_terms) / n
            total = total + stats["mask_reg"]
        if cfg.consistency_weight > 0 and src_disps is not None:
            if src_disps.shape != (B, S, 1, H, W):
                raise InputError(
                    f"src_disps must be {(B, S, 1, H, W)}, got {tuple(src_disps.shape)}"
                )
            stats["consistency"] = cfg.consistency_weight * depth_consistency_loss(
                self.depth(F.interpolate(disps[0], (H, W), mode="bilinear", align_corners=False)),
                self.depth(src_disps),
                T_src_tgt,
                K,
            )
            total = total + stats["consistency"]
        if cfg.automask:
            stats["automask_fraction"] = sum(masked_fractions) / n
        stats["total"] = total
        values = torch.stack([v.detach().float() for v in stats.values()]).tolist()
        return total, dict(zip(stats, values, strict=True))

    def depth(self, disp: torch.Tensor) -> torch.Tensor:
        """Depth (metres) used for warping: ``1 / disp`` within [min_depth, max_depth]."""
        return depth_from_disp(disp.clamp(max=1 / self.cfg.min_depth), eps=1 / self.cfg.max_depth)

    def _photometric(
        self,
        tgt: torch.Tensor,
        srcs: torch.Tensor,
        disp: torch.Tensor,
        T_src_tgt: torch.Tensor,
        K: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Photometric loss at one resolution (h, w) of ``tgt``/``srcs``/``disp``/``mask``.

        Returns (loss, fraction of pixels removed by auto-masking or None, warped (B,S,3,h,w)).
        """
        cfg = self.cfg
        B, S, C, h, w = srcs.shape
        depth = self.depth(disp)
        depth = depth.unsqueeze(1).expand(B, S, 1, h, w).flatten(0, 1)
        K_rep = K.unsqueeze(1).expand(B, S, 3, 3).flatten(0, 1)
        warped, valid = inverse_warp(srcs.flatten(0, 1), depth, T_src_tgt.flatten(0, 1), K_rep)
        tgt_rep = tgt.unsqueeze(1).expand(B, S, C, h, w).flatten(0, 1)
        error = photometric_error(warped, tgt_rep, cfg.ssim_weight).view(B, S, h, w)
        valid = valid.view(B, S, h, w) > 0
        # A pixel a source does not see costs what no motion costs (the unwarped error, no
        # gradient): otherwise depth that projects everything out of view scores zero and
        # training collapses towards it.
        identity = photometric_error(srcs.flatten(0, 1), tgt_rep, cfg.ssim_weight)
        identity = identity.view(B, S, h, w)
        if mask is not None:
            error, identity = error * mask, identity * mask

        if cfg.min_reprojection:
            # Out-of-view reprojections never win the minimum unless no source sees the pixel.
            seen = torch.where(valid, error, error.detach().max() + 1).min(1, keepdim=True)[0]
            valid = valid.any(1, keepdim=True)
            error = torch.where(valid, seen, identity.min(1, keepdim=True).values)
        else:
            error = torch.where(valid, error, identity)
        masked_fraction = None
        if cfg.automask:
            identity = identity + 1e-5 * torch.randn_like(identity)  # break ties (Monodepth2)
            if cfg.min_reprojection:
                identity = identity.min(1, keepdim=True).values
            static = identity < error
            masked_fraction = (static & valid).float().sum() / valid.float().sum().clamp(min=1)
            error = torch.where(static, identity, error)
        loss = error.mean()
        return loss, masked_fraction, warped.view(B, S, C, h, w)


def _check_inputs(
    tgt: torch.Tensor,
    srcs: torch.Tensor,
    disps: list[torch.Tensor],
    T_src_tgt: torch.Tensor,
    K: torch.Tensor,
    masks: list[torch.Tensor] | None,
    cfg: LossConfig,
) -> None:
    if tgt.dim() != 4 or srcs.dim() != 5 or srcs.shape[:1] + srcs.shape[2:] != tgt.shape:
        raise InputError(
            f"loss expects tgt (B,C,H,W) and srcs (B,S,C,H,W), got {tuple(tgt.shape)} "
            f"and {tuple(srcs.shape)}"
        )
    B, S = srcs.shape[:2]
    if T_src_tgt.shape != (B, S, 4, 4) or K.shape != (B, 3, 3):
        raise InputError(
            f"loss expects T_src_tgt {(B, S, 4, 4)} and K {(B, 3, 3)}, got "
            f"{tuple(T_src_tgt.shape)} and {tuple(K.shape)}"
        )
    if len(disps) < cfg.scales:
        raise InputError(f"loss needs {cfg.scales} disparity scales, got {len(disps)}")
    for d in disps[: cfg.scales]:
        if d.dim() != 4 or d.shape[:2] != (B, 1):
            raise InputError(f"disparities must be (B, 1, h, w), got {tuple(d.shape)}")
    if cfg.use_mask:
        if masks is None or len(masks) < cfg.scales:
            raise InputError("loss config use_mask needs explainability masks for every scale")
        for m, d in zip(masks, disps[: cfg.scales], strict=False):
            if m.shape != (B, S, *d.shape[-2:]):
                raise InputError(
                    f"mask must be (B, S, h, w) {(B, S, *d.shape[-2:])}, got {tuple(m.shape)}"
                )

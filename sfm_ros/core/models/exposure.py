"""What every network does to its input's brightness first: a camera's exposure is not scene
content, and the networks learnt one exposure range, with one exposure in a snippet.

Images are (B, 3, H, W) float in [0, 1]; a gain of exactly 1 leaves them as they are to the bit.
"""

from __future__ import annotations

import math

import torch

BRIGHTNESS_BAND = (0.25, 0.6)
"""Mean brightness range a network input is scaled into. The packaged depth network's
median-scaled Abs Rel on held-out synthetic frames scaled to a mean of 0.12 / 0.18 / 0.25 /
0.32 / 0.4 / 0.5 / 0.6 / 0.7: 0.407 / 0.353 / 0.289 / 0.263 / 0.248 / 0.254 / 0.265 / 0.280
(the synthetic camera's auto-exposure aims at 0.45); the band is centred on its best in log.
The real clips' frames lie at 0.32-0.53, the held-out synthetic ones at 0.27-0.50: inside."""

EXPOSURE_STEP = 0.1
"""Brightness change between the frames of a snippet (|log| of the ratio of their means) that
content alone explains: neighbouring frames of the real clips differ by up to 0.074 (KITTI,
10 Hz) and 0.044 (7-Scenes and a phone video, 30 Hz). What exceeds it is an exposure change."""

_MAX_LOG_GAIN = math.log(4.0)  # a frame darker than a quarter of the band shows mostly noise


def _mean(images: torch.Tensor) -> torch.Tensor:
    """(B, ..., H, W) -> (B, ..., 1, 1, 1) mean over the last three dimensions, kept positive."""
    return images.mean(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-3)


def _limited(log_gain: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_gain.clamp(-_MAX_LOG_GAIN, _MAX_LOG_GAIN))


def _band_log_gain(mean: torch.Tensor) -> torch.Tensor:
    """Log gain that takes a mean brightness into `BRIGHTNESS_BAND` (0 inside it)."""
    return torch.log(mean.clamp(*BRIGHTNESS_BAND) / mean)


def _log_ratio(mean_tgt: torch.Tensor, srcs: torch.Tensor) -> torch.Tensor:
    """(B, S, 1, 1, 1) log of the target's mean (B, 1, 1, 1) over each source's."""
    return torch.log(mean_tgt[:, None] / _mean(srcs))


def in_band(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images, each scaled so that its mean lies in `BRIGHTNESS_BAND`."""
    return images * _limited(_band_log_gain(_mean(images)))


def _step_log_gains(mean_tgt: torch.Tensor, srcs: torch.Tensor) -> torch.Tensor:
    """(B, S, 1, 1, 1) log gains that take what exceeds `EXPOSURE_STEP` out of each source's
    brightness ratio to the target (mean (B, 1, 1, 1))."""
    log_ratio = _log_ratio(mean_tgt, srcs)
    return torch.sign(log_ratio) * (log_ratio.abs() - EXPOSURE_STEP).clamp_min(0.0)


def brightness_matched(tgt: torch.Tensor, srcs: torch.Tensor) -> torch.Tensor:
    """Sources (B, S, 3, H, W) scaled to the target's (B, 3, H, W) mean brightness: what the
    view-synthesis loss compares the target with, so that an exposure change is not blamed on
    depth and motion. 1000 warm-up steps on KITTI 06 with an exposure step every fifth frame
    gave a pose network with a 5-frame ATE / RE of 0.0426 / 0.0030 on the clean clip unmatched,
    0.0394 / 0.0024 matched (0.0323 / 0.0022 warmed up on the clean clip, 0.0330 / 0.0022 there
    unmatched). Unlike `exposure_matched` there is no `EXPOSURE_STEP` band: on the clean clips
    matching fully was as good (KITTI 00) or better (KITTI 06) than leaving the loss as it was."""
    return srcs * _limited(_log_ratio(_mean(tgt), srcs))


def exposure_matched(tgt: torch.Tensor, srcs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target (B, 3, H, W) and sources (B, S, 3, H, W) of a snippet: each source scaled towards
    the target's mean by what their ratio exceeds `EXPOSURE_STEP`, then the whole snippet by the
    target's gain into `BRIGHTNESS_BAND` (one gain: the frames keep their relative brightness).

    The pose network learnt snippets of one exposure (training jitters colour alike for all the
    frames of one): on KITTI 00 an exposure step at every second frame (gain 0.5) turned its
    motions by 2.4 degrees a frame, 0.4 matched (0.39 clean).
    """
    mean_tgt = _mean(tgt)
    band = _band_log_gain(mean_tgt)
    return tgt * _limited(band), srcs * _limited(_step_log_gains(mean_tgt, srcs) + band[:, None])

"""Classical rotations as a pseudo-label for the pose network while warming up.

On real driving, ORB + essential-matrix VO (MAGSAC++ on the camera images) erred a quarter of
the pose network's rotation per frame (KITTI 00: 0.12 against 0.44 degrees), rarely but far
off on a few frames. Each live snippet's sources get their classical rotation from the target
(`source_rotations`, computed once when the snippet completes, on the camera images, not the
network's small input), and `rotation_loss` pulls the network's rotations towards them with a
Cauchy loss that a wrong pair cannot dominate.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from sfm_ros.core.classical_vo import (
    RELIABLE_INLIERS,
    match_features,
    relative_motion,
    spread_features,
)

CAUCHY_SCALE_RAD = math.radians(1.0)
"""Rotation differences well under this pull quadratically, far above it hardly at all."""


class ClassicalRotations:
    """Classical rotations of a snippet's sources from its target (one ORB detector kept)."""

    def __init__(self, features: int = 2000) -> None:
        self.orb, self.matcher = cv2.ORB_create(4 * features), cv2.BFMatcher(cv2.NORM_HAMMING)
        self.features = features

    def source_rotations(self, frames: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
        """(L - 1, 3, 3) float32 rotations R_src_tgt of the sources in `collate`'s order (those
        before the target, then those after), NaN where a pair has fewer than
        `RELIABLE_INLIERS` inliers, from (grey uint8, (3, 3) K) frames in time order."""
        mid = len(frames) // 2
        target, K = frames[mid]
        target_features = spread_features(self.orb, target, self.features)  # once for all
        rotations = []
        for j in [*range(mid), *range(mid + 1, len(frames))]:
            source_features = spread_features(self.orb, frames[j][0], self.features)
            pa, pb = match_features(self.matcher, source_features, target_features)
            motion = relative_motion(pa, pb, K, RELIABLE_INLIERS)  # x_src = T x_tgt
            rotations.append(np.full((3, 3), np.nan) if motion is None else motion[0][:3, :3])
        return torch.from_numpy(np.stack(rotations).astype(np.float32))


def rotation_loss(R_pred: torch.Tensor, R_label: torch.Tensor) -> torch.Tensor | None:
    """Mean Cauchy loss log(1 + (angle / CAUCHY_SCALE_RAD)^2) between (N, 3, 3) predicted and
    label rotations over the labels without NaN (the angle from the chordal distance, smooth at
    zero); None when no label is valid."""
    valid = torch.isfinite(R_label).flatten(1).all(1)
    if not valid.any():
        return None
    diff = R_pred[valid] - R_label[valid].to(R_pred)
    angle_sq = diff.pow(2).sum((1, 2)) / 2  # ||R_a - R_b||_F^2 = 4 (1 - cos a) ~ 2 a^2
    return torch.log1p(angle_sq / CAUCHY_SCALE_RAD**2).mean()

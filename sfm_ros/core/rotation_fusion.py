"""One rotation from two estimates of it: the pose network's and the photometric refinement's.

The two err differently: the network from what it learnt (its rotation is good on straight roads,
worse in turns), the refinement from the depth it aligns with (good in turns and with texture,
noisy where the depth is poor). Fused by inverse variance, the rotation is better than either
where their errors are about equal (KITTI 06: RE 0.0019 against 0.0026 and 0.0027) and close
to the better one where they are not (`benchmarks/RESULTS.md`).

The refinement publishes a (calibrated) covariance, the network none. Its variance is the part
of the disagreement that the refinement does not explain: for independent errors the mean
squared angle between the two, per axis, is ``var_network + var_refined``, so ``var_network``
is the running mean of the one minus that of the other (each an exponential mean over about
``window`` frames, floored at ``min_network_ratio`` times the refined variance). It adapts to
the model and the place: a warm-up, a model swap or a new environment changes it.
"""

from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp, so3_log


class RotationFusion:
    """Fuses (3, 3) rotations of the same motion, network and refined.

    Args:
        window: frames over which the two variances are averaged (exponential, a running mean
            until that many were seen).
        min_network_ratio: floor of the network's variance, relative to the refined one's.
    """

    def __init__(self, window: float = 30.0, min_network_ratio: float = 0.1) -> None:
        if not (window >= 1 and math.isfinite(window)) or not min_network_ratio > 0:
            raise InputError(
                f"window must be finite and >= 1 and min_network_ratio > 0, got {window}, "
                f"{min_network_ratio}"
            )
        self.window, self.min_network_ratio = float(window), float(min_network_ratio)
        self.reset()

    def reset(self) -> None:
        """Forget the variances (a new model or camera)."""
        self._disagreement = self._refined_var = 0.0  # rad^2 per axis
        self._count = 0

    @property
    def network_variance(self) -> float:
        """The network rotation's variance per axis (rad^2) as estimated so far (0 before)."""
        return max(
            self._disagreement - self._refined_var, self.min_network_ratio * self._refined_var
        )

    def fuse(
        self, R_network: np.ndarray, R_refined: np.ndarray, refined_var: float
    ) -> tuple[np.ndarray, float]:
        """The fused (3, 3) rotation and the weight of the refined one in [0, 1].

        Args:
            R_network, R_refined: (3, 3) rotations of the same motion.
            refined_var: the refined rotation's variance per axis (rad^2), e.g. the mean of
                the diagonal of its covariance's rotation block.

        Non-finite inputs raise InputError and leave the state unchanged.
        """
        R_n = np.asarray(R_network, dtype=np.float64)
        R_r = np.asarray(R_refined, dtype=np.float64)
        if R_n.shape != (3, 3) or R_r.shape != (3, 3):
            raise InputError(f"rotations must be (3, 3), got {R_n.shape} and {R_r.shape}")
        if not (np.isfinite(R_n).all() and np.isfinite(R_r).all() and refined_var > 0):
            raise InputError("rotation fusion needs finite rotations and a variance > 0")
        delta = so3_log(R_n.T @ R_r)  # (3,) axis-angle from the network's to the refined
        self._count += 1
        gain = max(1.0 / self.window, 1.0 / self._count)
        self._disagreement += gain * (float(delta @ delta) / 3 - self._disagreement)
        self._refined_var += gain * (float(refined_var) - self._refined_var)
        var_net = self.network_variance
        weight = var_net / (var_net + float(refined_var))
        return R_n @ so3_exp(weight * delta), weight

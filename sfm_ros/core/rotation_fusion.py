"""One rotation from two or three estimates of it: the pose network's, the photometric
refinement's and, optionally, classical ORB + essential-matrix VO's.

The three err differently: the network from what it learnt (good on straight roads, worse in
turns), the refinement from the depth it aligns with (good in turns and with texture, noisy
where the depth is poor), the classical estimate from features and RANSAC (independent of
both networks). They are fused by inverse variance, in the tangent space at the network's
rotation.

The variances are estimated online from how much the estimates disagree: for independent
errors the mean squared angle between two of them, per axis, is the sum of their variances.
- With the classical estimate (at least ``min_classical`` frames of it), the three pairwise
  disagreements give all three variances (the "three-cornered hat" of clock comparisons), so
  nothing has to be calibrated; the refined variance of a frame is its claimed one (its
  covariance) rescaled so that the claims average to the estimated variance. All three
  disagreements are averaged over the same frames, those with a classical estimate: where
  ORB + E succeeds only on some frames, the other two may err differently there than on
  average (indoors the refinement erred 26 % more on them), and mixing the sets would charge
  that difference to the classical estimate.
- Without it, only the sum is known: the refined variance is taken as claimed and the
  network's is the rest of the disagreement. That is only as good as the covariance's
  calibration, which varies from camera to camera (`benchmarks/RESULTS.md`).
Each running mean is exponential over about ``window`` frames; every variance is floored at
``min_ratio`` times the network-refined disagreement. A model swap or a new camera resets them.
"""

from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp, so3_log


def _squared_angle(delta: np.ndarray) -> float:
    """Mean squared angle per axis (rad^2) of a (3,) axis-angle difference."""
    return float(delta @ delta) / 3


class RotationFusion:
    """Fuses (3, 3) rotations of the same motion: network, refined and optionally classical.

    Args:
        window: frames over which the disagreements are averaged (exponential, a running mean
            until that many were seen).
        min_ratio: floor of each variance, relative to the network-refined disagreement.
        min_classical: frames with a classical estimate before it is used.
    """

    def __init__(self, window: float = 30.0, min_ratio: float = 0.1, min_classical: int = 5):
        if not (window >= 1 and math.isfinite(window)) or not 0 < min_ratio < 1:
            raise InputError(
                f"window must be finite and >= 1 and min_ratio in (0, 1), got {window}, {min_ratio}"
            )
        self.window, self.min_ratio = float(window), float(min_ratio)
        self.min_classical = int(min_classical)
        self.reset()

    def reset(self) -> None:
        """Forget the variances (a new model or camera)."""
        self._nr = self._claimed = 0.0  # network-refined disagreement, claimed refined var
        # over the frames with a classical estimate: the three pairwise disagreements and the
        # claimed refined variance
        self._nr_classical = self._nc = self._rc = self._claimed_classical = 0.0
        self._count = self._count_classical = 0
        self.last_weights = (1.0, 0.0, 0.0)
        """Weights of the network, refined and classical rotation in the last fusion."""
        self.last_variance = math.nan
        """Variance per axis (rad^2) of the last fused rotation: 1 / sum of 1 / variance."""

    @property
    def frames(self) -> int:
        """Rotations fused since the last reset."""
        return self._count

    @property
    def three_cornered(self) -> bool:
        """Whether the variances come from the three pairwise disagreements."""
        return self._count_classical >= self.min_classical

    @property
    def variances(self) -> tuple[float, float, float]:
        """(network, refined, classical) variance per axis (rad^2) as estimated so far: the
        refined one is its average (classical: inf until it is used; all 0 before a fusion)."""
        if self._count == 0:
            return 0.0, 0.0, math.inf
        if not self.three_cornered:
            refined = max(self._claimed, self.min_ratio * self._nr, 1e-16)
            return max(self._nr - self._claimed, self.min_ratio * refined, 1e-16), refined, math.inf
        nr, nc, rc = self._nr_classical, self._nc, self._rc
        floor = max(self.min_ratio * nr, 1e-16)
        return (
            max((nr + nc - rc) / 2, floor),
            max((nr + rc - nc) / 2, floor),
            max((nc + rc - nr) / 2, floor),
        )

    @property
    def network_variance(self) -> float:
        """The network rotation's variance per axis (rad^2) as estimated so far."""
        return self.variances[0]

    def _update(self, mean: float, value: float, count: int) -> float:
        return mean + max(1.0 / self.window, 1.0 / count) * (value - mean)

    def fuse(
        self,
        R_network: np.ndarray,
        R_refined: np.ndarray,
        refined_var: float,
        R_classical: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """The fused (3, 3) rotation and the weight of the refined one in [0, 1].

        Args:
            R_network, R_refined: (3, 3) rotations of the same motion.
            refined_var: the refined rotation's claimed variance per axis (rad^2), e.g. the
                mean of the diagonal of its covariance's rotation block.
            R_classical: (3, 3) classical estimate of the motion's rotation, or None where
                there is none (a failed pair).

        Non-finite inputs raise InputError and leave the state unchanged.
        """
        R_n = np.asarray(R_network, dtype=np.float64)
        R_r = np.asarray(R_refined, dtype=np.float64)
        R_c = None if R_classical is None else np.asarray(R_classical, dtype=np.float64)
        rotations = [R for R in (R_n, R_r, R_c) if R is not None]
        if any(R.shape != (3, 3) for R in rotations):
            raise InputError(f"rotations must be (3, 3), got {[R.shape for R in rotations]}")
        if not (all(np.isfinite(R).all() for R in rotations) and 0 < refined_var < math.inf):
            raise InputError("rotation fusion needs finite rotations and a finite variance > 0")
        to_refined = so3_log(R_n.T @ R_r)  # (3,) axis-angle from the network's
        network_refined = _squared_angle(to_refined)
        self._count += 1
        self._nr = self._update(self._nr, network_refined, self._count)
        self._claimed = self._update(self._claimed, float(refined_var), self._count)
        to_classical = None
        if R_c is not None:
            to_classical = so3_log(R_n.T @ R_c)
            self._count_classical += 1
            n = self._count_classical
            self._nr_classical = self._update(self._nr_classical, network_refined, n)
            self._claimed_classical = self._update(self._claimed_classical, float(refined_var), n)
            self._nc = self._update(self._nc, _squared_angle(to_classical), n)
            self._rc = self._update(self._rc, _squared_angle(so3_log(R_r.T @ R_c)), n)
        var_net, var_ref, var_cls = self.variances
        # this frame's claim, rescaled so that the claims average to the estimated variance
        # (over the frames that variance was estimated on)
        claimed = self._claimed_classical if self.three_cornered else self._claimed
        var_ref *= float(refined_var) / max(claimed, 1e-16)
        inverse = np.array([1 / var_net, 1 / var_ref, 0.0])
        if to_classical is not None and self.three_cornered:
            inverse[2] = 1 / var_cls
        weights = inverse / inverse.sum()
        self.last_variance = float(1 / inverse.sum())
        delta = weights[1] * to_refined
        if weights[2] > 0:
            delta = delta + weights[2] * to_classical
        self.last_weights = tuple(float(w) for w in weights)
        return R_n @ so3_exp(delta), float(weights[1])

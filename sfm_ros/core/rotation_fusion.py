"""One rotation from two or three estimates of it: the pose network's, the photometric refinement's
and, optionally, classical ORB + essential-matrix VO's.

The three err differently: the network from what it learnt (good on straight roads, worse in
turns), the refinement from the depth it aligns with (good in turns and with texture, noisy
where the depth is poor), the classical estimate from features and MAGSAC++ (independent of both
networks; each frame's claimed variance from its inliers sets its weight relative to the
others). The refinement aligns with the network's depth, so it may err with the network (their
shared error is measured too). They are fused by their variances, in the tangent space at the
network's rotation, with the variances estimated online from how much the three disagree
(`three_cornered.py`; disagreements are squared angles per axis, rad^2). Until those are
measured (the first frames after a start, a model swap or a new camera, which reset them), a
frame with all three takes the one closest to the other two. Where the refinement fails, the
network's and the classical rotation are fused by the variances measured on the other frames.
The network's rotation is fused scaled by its gain and less its steady offset from the other two
(`network_bias.py`), both measured after each fusion with the weights it gave them. A classical
rotation far from both others while those two agree, from a fit that claims an unusual variance,
is a mismatch (`MISMATCH_RATIO`) and is left out of the variances and the fusion alike.
The variances are averages over the last frames, while the network and the refinement err most
in sharp turns: wherever a classical rotation is fused, a rotation whose residual from the
fusion exceeds what its variance allows gives way for that frame (`OUTLIER_CHI2`).
Where classical VO also measures its rotation's closure over two frames (`add_closure`), its
variance is that measure, not what its disagreements with the other two leave: the network's
and the refined rotation share an error that the disagreements cannot tell from the classical
one's, and the hat had put the classical rotation's sigma at 1.8x (KITTI 00) and 4.7x (KITTI 06)
what its closure says (`benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp, so3_log
from sfm_ros.core.network_bias import RotationBias, RotationGain
from sfm_ros.core.three_cornered import ThreeCorneredHat, valid_claim

MISMATCH_RATIO = 9.0
"""A classical rotation is a mismatch where its squared disagreements with the network's and
the refined rotation both exceed this many times theirs with each other (this frame's or, if
larger, its running mean) and its claimed variance exceeds `MISMATCH_CLAIM_RATIO` times the
median of the last claims. ORB matches on repeated texture (a rendered field of grass) put a
fifth of the classical rotations 1.2-1.9 degrees off where the other two were within 0.2, and
those frames, left in, set the variances: the refined rotation's came out 9x too high
(`benchmarks/RESULTS.md`)."""
MISMATCH_CLAIM_RATIO = 5.0
"""A mismatch's claimed variance over the median of the last claims, at least. The
disagreements alone cannot tell a mismatch from a sharp turn that the network's rotation falls
short of, and the refined one, started from it, with it (KITTI 00: 1 degree short together, the
classical rotation right); KITTI 00's classical claims stayed under 3.8x their median, the
field's mismatches claimed 7-20x."""

OUTLIER_CHI2 = 2.6
"""A rotation's squared residual from the fusion (per axis) beyond this many times its variance
(the chi-square 95th percentile with 3 degrees of freedom, over 3) inflates its variance, for
this frame, by the square of the excess (`OUTLIER_POWER`): the network's and the refined
rotation err most in sharp turns, the classical one on repeated texture, while the variances
are averages over the last frames."""
OUTLIER_POWER = 2.0
"""The inflation is the excess ``squared residual / (OUTLIER_CHI2 * variance)`` to this power:
with 2 an outlier's weight falls as the fourth power of its residual, as Geman-McClure's does,
and its pull on the fusion as the third. With 1 (its variance inflated just to match its
residual) a refined rotation 0.25-0.75 degrees off in KITTI 00's turn kept 0.1-0.5 of the
weight beside a classical rotation within 0.11 (`benchmarks/RESULTS.md`)."""
ROBUST_ROUNDS = 3
"""Rounds of reweighting (`OUTLIER_CHI2`)."""
CLOSURE_TERMS = 3
"""Rotations a closure compares: two single steps and the one over both, each matched afresh,
so with independent errors a closure's mean squared angle is three times a step's variance."""
ROTATION_MIN_RATIO = 0.03
"""The variances' floor relative to the smallest disagreement (`ThreeCorneredHat`'s
``min_ratio``): on KITTI 00 classical VO's rotation errs a sixth of the network's (0.027
against 0.167 degrees per axis), and the floor of 0.1 held its variance at 2.8x the truth."""


def _squared_angle(delta: np.ndarray) -> float:
    """Mean squared angle per axis (rad^2) of a (3,) axis-angle difference."""
    return float(delta @ delta) / 3


class RotationFusion(ThreeCorneredHat):
    """Fuses (3, 3) rotations of the same motion: network, refined and optionally classical
    (arguments: `ThreeCorneredHat`; variances per axis, rad^2)."""

    def __init__(
        self, window: float = 30.0, min_ratio: float = ROTATION_MIN_RATIO, min_classical: int = 5
    ):
        self.bias = RotationBias()
        """The network rotation's steady offset, removed before it is fused."""
        self.gain = RotationGain()
        """The network rotation's gain per axis, applied before the offset is removed."""
        super().__init__(window, min_ratio, min_classical)

    def reset(self) -> None:
        """Forget the variances and the network's gain and offset (a new model or camera)."""
        super().reset()
        self.bias.reset()
        self.gain.reset()
        self.last_weights = (1.0, 0.0, 0.0)
        """Weights of the network, refined and classical rotation in the last fusion."""
        self.last_variance = math.nan
        """Variance per axis (rad^2) of the last fused rotation: 1 / sum of 1 / variance."""
        self.last_mismatch = False
        """The last frame's classical rotation was a mismatch (`MISMATCH_RATIO`)."""
        self.mismatches = 0
        """Classical rotations left out as mismatches since the last reset."""
        self._claims: deque[float] = deque(maxlen=max(int(self.window), self.min_classical))
        """The last valid classical claims."""

    def add_closure(self, closure_variance: float) -> None:
        """Add a frame's closure of the classical rotations (`OrbMotion.last_closure_variance`:
        squared angle per axis, rad^2, between the rotation fitted over two frames and the
        chain of the two steps; NaN where there is none, which is ignored): the classical
        variance is then measured as its running mean over `CLOSURE_TERMS`
        (`ThreeCorneredHat.add_classical_variance`)."""
        self.add_classical_variance(closure_variance / CLOSURE_TERMS)

    @property
    def network_variance(self) -> float:
        """The network rotation's variance per axis (rad^2) as estimated so far."""
        return self.variances[0]

    def fuse(
        self,
        R_network: np.ndarray,
        R_refined: np.ndarray,
        refined_var: float,
        R_classical: np.ndarray | None = None,
        classical_var: float | None = None,
        use_classical: bool = True,
    ) -> tuple[np.ndarray, float]:
        """The fused (3, 3) rotation and the weight of the refined one in [0, 1].

        Args:
            R_network, R_refined: (3, 3) rotations of the same motion.
            refined_var: the refined rotation's claimed variance per axis (rad^2), e.g. the
                mean of the diagonal of its covariance's rotation block.
            R_classical: (3, 3) classical estimate of the motion's rotation, or None where
                there is none (a failed pair).
            classical_var: its claimed variance (only its ratio to the average claim counts;
                None, or not finite and positive: the average).
            use_classical: False: the classical rotation is measured (its disagreements
                enter the variances, as on every frame) but not fused (it is not the
                camera's this frame).

        Non-finite inputs raise InputError and leave the state unchanged.
        """
        self.last_weights, self.last_variance = (1.0, 0.0, 0.0), math.nan
        self.last_mismatch = False
        R_n = np.asarray(R_network, dtype=np.float64)
        R_r = np.asarray(R_refined, dtype=np.float64)
        R_c = None if R_classical is None else np.asarray(R_classical, dtype=np.float64)
        rotations = [R for R in (R_n, R_r, R_c) if R is not None]
        if any(R.shape != (3, 3) for R in rotations):
            raise InputError(f"rotations must be (3, 3), got {[R.shape for R in rotations]}")
        if not (all(np.isfinite(R).all() for R in rotations) and 0 < refined_var < math.inf):
            raise InputError("rotation fusion needs finite rotations and a finite variance > 0")
        R_raw, R_gained, R_n = self.corrected_network(R_n)
        to_refined = so3_log(R_n.T @ R_r)  # (3,) axis-angle from the network's
        network_refined = _squared_angle(to_refined)
        to_classical = None if R_c is None else so3_log(R_n.T @ R_c)
        classical, disagreements = (None, None), None
        if to_classical is not None:
            refined_classical = so3_log(R_r.T @ R_c)
            classical = (_squared_angle(to_classical), _squared_angle(refined_classical))
            self.last_mismatch = self._mismatch(network_refined, *classical, classical_var)
            if self.last_mismatch:
                self.mismatches += 1
                R_c, to_classical, classical = None, None, (None, None)
            elif use_classical:  # one that followed something moving repeats its error
                disagreements = np.stack([to_refined, to_classical, refined_classical])
        self.update(network_refined, float(refined_var), *classical, classical_var, disagreements)
        if not use_classical:
            R_c = to_classical = None
        if to_classical is None:
            weights, self.last_variance = self.weights(float(refined_var), False)
            delta = weights[1] * to_refined
        elif not self.three_cornered:
            # the refined claims, the only variance known this early, were off by 4x on KITTI
            self.last_variance = self.weights(float(refined_var), True, classical_var)[1]
            best = self.closest_of_three(network_refined, *classical)
            self.last_weights = tuple(float(i == best) for i in range(3))
            self._learn(R_raw, R_gained, R_r, R_c)
            return (R_n, R_r, R_c)[best], float(best == 1)
        else:
            points = np.stack([np.zeros(3), to_refined, to_classical])
            weights, self.last_variance = self._robust_weights(
                float(refined_var), classical_var, points
            )
            delta = weights @ points
        self.last_weights = tuple(float(w) for w in weights)
        self._learn(R_raw, R_gained, R_r, R_c)
        return R_n @ so3_exp(delta), float(weights[1])

    def _robust_weights(
        self,
        refined_var: float,
        classical_var: float | None,
        points: np.ndarray,
        refined: bool = True,
        network: bool = True,
    ) -> tuple[np.ndarray, float]:
        """The weights (3,) and fused variance of a frame with a classical rotation, each
        estimate's variance inflated where its residual from the fusion exceeds it
        (`OUTLIER_CHI2`, `OUTLIER_POWER`, `ROBUST_ROUNDS`).

        Args:
            refined_var, classical_var: the claims, as `ThreeCorneredHat.weights` takes them.
            points: (3, 3) the network's, the refined and the classical rotation as
                axis-angles (rows) from one of them (a row not used has no weight, so its
                value does not matter).
            refined, network: whether the refined and the network's rotation are used.
        """
        own, shared = self.frame_variances(refined_var, classical_var)
        expected = own + np.array([shared, shared, 0.0])
        inflation = np.ones(3)
        for _ in range(ROBUST_ROUNDS):
            weights, _ = self.weights(
                refined_var, True, classical_var, refined, network, inflation=inflation
            )
            fused = weights @ points
            squared = np.array([_squared_angle(p - fused) for p in points])
            inflation = np.maximum(1.0, squared / (OUTLIER_CHI2 * expected)) ** OUTLIER_POWER
        return self.weights(refined_var, True, classical_var, refined, network, inflation)

    def corrected_network(self, R_network: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's (3, 3) rotation as given, scaled by its gain, and then less its
        offset (the last one is what the fusion weighs)."""
        R_gained = self.gain.correct(R_network)
        return R_network, R_gained, self.bias.correct(R_gained)

    def _learn(
        self,
        R_raw: np.ndarray,
        R_gained: np.ndarray,
        R_refined: np.ndarray | None,
        R_classical: np.ndarray | None,
    ) -> None:
        """Update the network's gain and offset from this frame with the last weights."""
        self.gain.update(R_raw, R_refined, R_classical, self.last_weights[1:])
        self.bias.update(R_gained, R_refined, R_classical, self.last_weights[1:])

    def _mismatch(
        self,
        network_refined: float,
        network_classical: float,
        refined_classical: float,
        claim: float | None,
    ) -> bool:
        """Whether a classical rotation is a mismatch (`MISMATCH_RATIO`), from this frame's
        squared disagreements and classical claim (a valid one is remembered); never before
        ``min_classical`` frames and claims were seen, nor without a valid claim."""
        if not valid_claim(claim):
            return False
        enough = self.frames >= self.min_classical and len(self._claims) >= self.min_classical
        typical = float(np.median(self._claims)) if enough else math.nan
        self._claims.append(float(claim))
        if not enough:
            return False
        far = min(network_classical, refined_classical) > MISMATCH_RATIO * max(
            network_refined, self._nr
        )
        return far and claim > MISMATCH_CLAIM_RATIO * typical

    def fuse_without_refined(
        self, R_network: np.ndarray, R_classical: np.ndarray, classical_var: float | None = None
    ) -> np.ndarray:
        """The fused (3, 3) rotation of a frame whose refinement failed: the network's and the
        classical one weighted by the variances measured on the frames with all three (the
        network's until those are known). The variances are not updated: two estimates do not
        separate them. Non-finite inputs raise InputError."""
        self.last_weights, self.last_variance = (1.0, 0.0, 0.0), math.nan
        R_n = np.asarray(R_network, dtype=np.float64)
        R_c = np.asarray(R_classical, dtype=np.float64)
        if R_n.shape != (3, 3) or R_c.shape != (3, 3):
            raise InputError(f"rotations must be (3, 3), got {R_n.shape} and {R_c.shape}")
        if not (np.isfinite(R_n).all() and np.isfinite(R_c).all()):
            raise InputError("rotation fusion needs finite rotations")
        self.skip()
        self.last_variance = self.network_variance
        if not self.three_cornered:
            return R_n
        R_raw, R_gained, R_n = self.corrected_network(R_n)
        to_classical = so3_log(R_n.T @ R_c)
        points = np.stack([np.zeros(3), np.zeros(3), to_classical])
        weights, self.last_variance = self._robust_weights(
            1.0, classical_var, points, refined=False
        )
        self.last_weights = tuple(float(w) for w in weights)
        self._learn(R_raw, R_gained, None, R_c)
        return R_n @ so3_exp(weights[2] * to_classical)

    def fuse_without_network(
        self,
        R_refined: np.ndarray,
        refined_var: float,
        R_classical: np.ndarray | None = None,
        classical_var: float | None = None,
    ) -> np.ndarray:
        """The fused (3, 3) rotation of a frame whose network motion was rejected (the
        refinement fit better from the classical rotation): the refined and the classical one
        weighted by the variances measured on the other frames (the refined one alone, with
        its claimed variance, until those are known, or without a classical one). Nothing is
        updated: the frame says nothing about the network. Non-finite inputs raise
        InputError."""
        self.last_weights, self.last_variance = (0.0, 1.0, 0.0), math.nan
        R_r = np.asarray(R_refined, dtype=np.float64)
        R_c = None if R_classical is None else np.asarray(R_classical, dtype=np.float64)
        rotations = [R for R in (R_r, R_c) if R is not None]
        if any(R.shape != (3, 3) for R in rotations):
            raise InputError(f"rotations must be (3, 3), got {[R.shape for R in rotations]}")
        if not (all(np.isfinite(R).all() for R in rotations) and 0 < refined_var < math.inf):
            raise InputError("rotation fusion needs finite rotations and a finite variance > 0")
        self.skip()
        if not self.three_cornered:
            self.last_variance = float(refined_var)
            return R_r
        if R_c is None:
            weights, self.last_variance = self.weights(float(refined_var), False, network=False)
            self.last_weights = tuple(float(w) for w in weights)
            return R_r
        to_classical = so3_log(R_r.T @ R_c)
        points = np.stack([np.zeros(3), np.zeros(3), to_classical])
        weights, self.last_variance = self._robust_weights(
            float(refined_var), classical_var, points, network=False
        )
        self.last_weights = tuple(float(w) for w in weights)
        return R_r @ so3_exp(weights[2] * to_classical)

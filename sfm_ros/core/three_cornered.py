"""Variances of three estimates of one quantity from how much they disagree, and their
minimum-variance weights.

The estimates are the pose network's, the photometric refinement's and classical ORB +
essential-matrix VO's (`rotation_fusion.py` fuses rotations with it, `direction_fusion.py`
translation directions). For independent errors the mean squared disagreement between two
estimates is the sum of their variances:
- With the classical estimate (at least ``min_classical`` frames of it), the three pairwise
  disagreements give all three variances (the "three-cornered hat" of clock comparisons), so
  nothing has to be calibrated; the refined variance of a frame is its claimed one (from its
  covariance) rescaled so that the claims average to the estimated variance. All three
  disagreements are averaged over the same frames, those with a classical estimate: where
  ORB + E succeeds only on some frames, the other two may err differently there than on
  average (indoors the refinement erred 26 % more on them), and mixing the sets would charge
  that difference to the classical estimate.
- The network's and the refined estimate may share an error (the same network, the same
  depth): on KITTI 06 and a rendered warehouse their rotation errors correlate 0.5, and the
  plain hat then charges their covariance to the classical estimate (10-26x its true variance
  there). Where the caller gives the disagreements themselves (`update`'s
  ``disagreements``), that covariance is measured (`shared_variance`) and moved back: the
  shared error is slow (it stays over frames), the classical estimate's is not (each pair
  of frames is matched afresh), and over a pair of frames the plain hat's classical share
  less that of the disagreements' changes keeps the first and cancels the second. Where the
  caller measures the classical variance itself (`add_classical_variance`: the rotation's
  closure over two frames, `classical_vo.OrbMotion`), that covariance is what the plain hat's
  classical share leaves beside it, and nothing is assumed of how the errors run over frames.
- Without it, only the sum is known: the refined variance is taken as claimed and the
  network's is the rest of the disagreement. That is only as good as the claim's calibration,
  which varies from camera to camera (`benchmarks/RESULTS.md`).
Each running mean is exponential over about ``window`` frames; every variance estimated from
the disagreements is floored at ``min_ratio`` times the smallest of them (a floor relative
to the network-refined one capped the classical rotation's weight on KITTI, where its errors
are a third of the network's and a fifth of the refined ones).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from sfm_ros.core.errors import InputError

SHARED_LAGS = 2
"""Frames apart over which `ThreeCorneredHat.shared_variance` is measured (1 to this)."""
TWO_WAY_MIN_RATIO = 0.1
"""Without the classical estimate, the floor of the refined variance relative to the
network-refined disagreement, and of the network's (that disagreement less the claim, a
difference of two noisy means) relative to the refined one."""
MEASURED_MAX_RATIO = 9.0
"""Once measured, a frame's `ThreeCorneredHat.add_classical_variance` counts at most this many
times its running mean: one failed rotation fit over two frames put a closure of 3.9 degrees
where they had averaged 0.1, and unclipped it tripled the classical sigma for the next 30
frames, in which the network's rotation, 0.5 degrees off, got 0.9 of the weight (a rendered
warehouse with sensor noise: RE 0.0035 -> 0.0073; clipped 0.0025, `benchmarks/RESULTS.md`)."""
MAX_CLAIM_RATIO = 100.0
"""A classical estimate's claimed variance counts at most this factor above or below the
average claim."""


class ThreeCorneredHat:
    """Running variances of the network's, the refined and the classical estimate.

    Args:
        window: frames over which the disagreements are averaged (exponential, a running mean
            until that many were seen).
        min_ratio: floor of each variance, relative to the smallest disagreement (with the
            classical estimate; without it `TWO_WAY_MIN_RATIO`).
        min_classical: frames with a classical estimate before it is used.
    """

    disagreement_dof: int | None = None
    """Degrees of freedom of the disagreements `update` is given (None: their length)."""

    def __init__(self, window: float = 30.0, min_ratio: float = 0.1, min_classical: int = 5):
        if not (window >= 1 and math.isfinite(window)) or not 0 < min_ratio < 1:
            raise InputError(
                f"window must be finite and >= 1 and min_ratio in (0, 1), got {window}, {min_ratio}"
            )
        self.window, self.min_ratio = float(window), float(min_ratio)
        self.min_classical = int(min_classical)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new model or camera)."""
        self._nr = self._claimed = 0.0  # network-refined disagreement, claimed refined var
        # over the frames with a classical estimate: the three pairwise disagreements and the
        # claimed refined variance
        self._nr_classical = self._nc = self._rc = self._claimed_classical = 0.0
        self._claimed_by_classical = 0.0  # the classical estimate's own claimed variance
        # the network's and the refined errors' covariance measured at each lag, and the last
        # frames' share of the plain hat's classical variance with their disagreements (None
        # where a frame had no classical estimate or gave no disagreements)
        self._shared = [0.0] * SHARED_LAGS
        self._count_shared = [0] * SHARED_LAGS
        self._recent: deque[tuple[float, np.ndarray] | None] = deque(maxlen=SHARED_LAGS)
        self._measured_classical = 0.0  # the classical variance as the caller measures it
        self._count = self._count_classical = self._count_claims = self._count_measured = 0

    @property
    def frames(self) -> int:
        """Frames seen since the last reset."""
        return self._count

    @property
    def three_cornered(self) -> bool:
        """Whether the variances come from the three pairwise disagreements."""
        return self._count_classical >= self.min_classical

    def _update(self, mean: float, value: float, count: int) -> float:
        return mean + max(1.0 / self.window, 1.0 / count) * (value - mean)

    def update(
        self,
        network_refined: float,
        claimed: float,
        network_classical: float | None = None,
        refined_classical: float | None = None,
        classical_claimed: float | None = None,
        disagreements: np.ndarray | None = None,
    ) -> None:
        """Add one frame: squared disagreements (per degree of freedom) between the estimates,
        the refined estimate's claimed variance in the same units, and the two disagreements
        with the classical estimate where there is one (both or neither) with the classical
        estimate's claimed variance (any positive units: only its ratio to the average claim
        is used; None, or anything not finite and positive, counts as the average).
        ``disagreements``: (3, D) network-refined, network-classical and refined-classical
        differences (D degrees of freedom; only with a classical estimate), from which
        `shared_variance` is measured."""
        self._count += 1
        self._nr = self._update(self._nr, network_refined, self._count)
        self._claimed = self._update(self._claimed, claimed, self._count)
        if network_classical is None or refined_classical is None:
            self.skip()
            return
        self._count_classical += 1
        n = self._count_classical
        classical_share = (network_classical + refined_classical - network_refined) / 2
        self._nr_classical = self._update(self._nr_classical, network_refined, n)
        self._claimed_classical = self._update(self._claimed_classical, claimed, n)
        self._nc = self._update(self._nc, network_classical, n)
        self._rc = self._update(self._rc, refined_classical, n)
        self._measure_shared(classical_share, disagreements)
        if not valid_claim(classical_claimed):
            return
        self._count_claims += 1
        if self._count_claims > 1:  # a claim enters the average at most MAX_CLAIM_RATIO from it
            classical_claimed = self.claim_ratio(classical_claimed) * self._claimed_by_classical
        self._claimed_by_classical = self._update(
            self._claimed_by_classical, classical_claimed, self._count_claims
        )

    def add_classical_variance(self, variance: float) -> None:
        """Add one frame's measure of the classical estimate's variance that does not come
        from the other two (per degree of freedom, in the disagreements' units; anything not
        finite and non-negative is ignored; once measured, one above `MEASURED_MAX_RATIO`
        times the running mean counts as that): `shared_variance` is then the plain hat's
        classical share less its running mean."""
        if 0 <= variance < math.inf:
            if self.classical_variance_measured:
                variance = min(variance, MEASURED_MAX_RATIO * self._measured_classical)
            self._count_measured += 1
            self._measured_classical = self._update(
                self._measured_classical, variance, self._count_measured
            )

    @property
    def classical_variance_measured(self) -> bool:
        """Whether ``min_classical`` frames of `add_classical_variance` were seen."""
        return self._count_measured >= self.min_classical

    def skip(self) -> None:
        """Count a frame that is not added (the lags of `shared_variance` are frames)."""
        self._recent.append(None)

    def _measure_shared(self, classical_share: float, disagreements: np.ndarray | None) -> None:
        """Add this frame's pairs with the last frames to `shared_variance`'s running means."""
        dof = None if disagreements is None else self.disagreement_dof or disagreements.shape[1]
        for lag, past in enumerate(reversed(self._recent)):
            if past is None or dof is None:
                continue
            # both frames' share of the plain hat's classical variance, less the share of the
            # disagreements' changes: the classical errors' variance cancels, outliers included
            nr, nc, rc = (float(v @ v) / dof for v in disagreements - past[1])
            pair = (classical_share + past[0]) / 2 - (nc + rc - nr) / 4
            self._count_shared[lag] += 1
            self._shared[lag] = self._update(self._shared[lag], pair, self._count_shared[lag])
        self._recent.append(None if disagreements is None else (classical_share, disagreements))

    def _independent_variances(self) -> tuple[float, float, float]:
        """The three variances with independent errors assumed (the plain hat)."""
        if self._count == 0:
            return 0.0, 0.0, math.inf
        if not self.three_cornered:
            refined = max(self._claimed, TWO_WAY_MIN_RATIO * self._nr, 1e-16)
            network = max(self._nr - self._claimed, TWO_WAY_MIN_RATIO * refined, 1e-16)
            return network, refined, math.inf
        nr, nc, rc = self._nr_classical, self._nc, self._rc
        floor = self._floor()
        return (
            max((nr + nc - rc) / 2, floor),
            max((nr + rc - nc) / 2, floor),
            max((nc + rc - nr) / 2, floor),
        )

    def _floor(self) -> float:
        return max(self.min_ratio * min(self._nr_classical, self._nc, self._rc), 1e-16)

    @property
    def shared_variance(self) -> float:
        """Covariance of the network's and the refined errors (per degree of freedom), the
        smallest of its measures over 1 and 2 frames that have ``min_classical`` pairs each,
        within [0, what leaves the classical variance at its floor]; 0 until one has (with a
        measured classical variance: the last paragraph). (A pair
        is two frames, one or two apart, both with all three estimates: where the refinement
        falls back often, as on KITTI 06's first frames, a lag's pairs come late, and where it
        falls back every other frame the one-frame lag never has any.)

        Over a pair of frames with all three estimates, the plain hat's classical share of
        both frames less that of the disagreements' changes between them is the classical
        errors' covariance across the pair plus the network's and the refined errors'. The
        first is 0 for independent matches; the second is their shared error, which is slow
        and so stays. ORB on repeated texture (a rendered field of grass) repeats its errors
        over consecutive frames, but not over both lags alike (`benchmarks/RESULTS.md`).

        Where the classical variance is measured directly (`add_classical_variance`), the
        covariance is the plain hat's classical share less that variance (at least 0): the
        plain hat's classical share is the classical variance plus the covariance, whether
        either error stays over frames or not. The classical variance is then that measure,
        below the floor too: in KITTI 00's turn the floor held its sigma at 1.7-3.5x its
        closure's, and the network's rotation, 0.3-2 degrees off, kept 3-8 % of the weight
        (`benchmarks/RESULTS.md`).
        """
        if not self.three_cornered:
            return 0.0
        plain = self._independent_variances()[2]
        if self.classical_variance_measured:
            # a measure of its own, not a difference of noisy means: not held at the floor
            shared, floor = plain - self._measured_classical, 1e-16
        else:
            measured = [
                shared
                for shared, count in zip(self._shared, self._count_shared, strict=True)
                if count >= self.min_classical
            ]
            if not measured:
                return 0.0
            shared, floor = min(measured), self._floor()
        return min(max(shared, 0.0), max(plain - floor, 0.0))

    @property
    def variances(self) -> tuple[float, float, float]:
        """(network, refined, classical) variance as estimated so far: the refined one is its
        average (classical: inf until it is used; all 0 before the first frame). The network's
        and the refined one include `shared_variance`."""
        network, refined, classical = self._independent_variances()
        shared = self.shared_variance
        return network + shared, refined + shared, classical - shared

    def weights(
        self,
        claimed: float,
        classical: bool,
        classical_claimed: float | None = None,
        refined: bool = True,
        network: bool = True,
        inflation: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0),
    ) -> tuple[np.ndarray, float]:
        """Minimum-variance weights (3,) of the network's, the refined and the classical
        estimate of this frame (classical 0 where there is none or it is not used yet), and
        the fused variance (1 / sum of 1 / variance where no error is shared). The network's
        and the refined estimate are first weighed by the variances of their own errors, and
        their combination then with the classical one, its variance including the error they
        share (`shared_variance`).

        Args:
            claimed: this frame's claimed refined variance; it is rescaled here so that the
                claims average to the estimated refined variance (over the frames that
                variance was estimated on).
            classical: whether this frame has a classical estimate.
            classical_claimed: its claimed variance, rescaled the same way (None, or anything
                not finite and positive: the average).
            refined: whether this frame has a refined estimate (where the refinement failed,
                the other two are weighted by the variances measured on the other frames).
            network: whether the network's estimate is used (not where it was rejected).
            inflation: factors (3,) on this frame's variances of the network's, the refined
                and the classical estimate's own errors (an estimate far from the others).
        """
        own, shared = self.frame_variances(claimed, classical_claimed)
        own = own * np.asarray(inflation, dtype=np.float64)
        inverse = np.where([network, refined], 1 / own[:2], 0.0)
        # the network's and the refined estimate as one, with their shared error
        group_var = 1 / inverse.sum() + shared
        inverse_classical = 0.0
        if classical and self.three_cornered:
            inverse_classical = 1 / own[2]
        fused_var = 1 / (1 / group_var + inverse_classical)
        weights = np.append(inverse / inverse.sum() * fused_var / group_var, 0.0)
        weights[2] = inverse_classical * fused_var
        return weights, float(fused_var)

    def frame_variances(
        self, claimed: float, classical_claimed: float | None = None
    ) -> tuple[np.ndarray, float]:
        """This frame's variances (3,) of the network's, the refined and the classical
        estimate's own errors (the refined and the classical one rescaled by their claims, as
        `weights` says) and the variance the first two share (`shared_variance`)."""
        own_net, own_ref, var_cls = self._independent_variances()
        shared = self.shared_variance
        mean_claim = self._claimed_classical if self.three_cornered else self._claimed
        return np.array(
            [
                own_net,
                own_ref * claimed / max(mean_claim, 1e-16),
                (var_cls - shared) * self.claim_ratio(classical_claimed),
            ]
        ), shared

    @staticmethod
    def closest_of_three(
        network_refined: float, network_classical: float, refined_classical: float
    ) -> int:
        """Index (0 network, 1 refined, 2 classical) of the estimate closest to the other two,
        from this frame's squared disagreements: the choice while the variances are not
        measured yet (a single wrong estimate cannot pull it away)."""
        d_nr, d_nc, d_rc = (
            math.sqrt(d) for d in (network_refined, network_classical, refined_classical)
        )
        return int(np.argmin([d_nr + d_nc, d_nr + d_rc, d_nc + d_rc]))

    @staticmethod
    def agreeing_pair(
        network_refined: float, network_classical: float, refined_classical: float
    ) -> np.ndarray:
        """Weights (3,) of the network's, the refined and the classical estimate while the
        variances are not measured yet, from this frame's squared disagreements: a half each
        for the two that agree best, none for the third (which cannot pull the mean away
        either). Where the third is far off, `closest_of_three` is a coin toss between the
        two that agree: on KITTI 06's first frames, where the refined direction erred 7-15
        degrees, it kept the network's direction (2.0-2.6 degrees off) over the classical one
        (0.5-0.7); their mean halves such an error. The translation direction takes this
        (KITTI 06's ATE5 lower in each of four runs); the rotation keeps `closest_of_three`:
        with this its RE on KITTI was lower in each of eight runs, but r_err on the rendered
        clips, where the classical rotation is the weakest, rose 2-13 % on six of ten
        (`benchmarks/RESULTS.md`)."""
        pairs = ((0, 1), (0, 2), (1, 2))
        closest = pairs[int(np.argmin([network_refined, network_classical, refined_classical]))]
        weights = np.zeros(3)
        weights[list(closest)] = 0.5
        return weights

    def claim_ratio(self, classical_claimed: float | None) -> float:
        """A classical claim over the average claim, within [1 / MAX_CLAIM_RATIO,
        MAX_CLAIM_RATIO] (KITTI and 7-Scenes claims spanned 0.03-22x their mean: a degenerate
        fit's claim cannot take all the weight); 1 for an invalid claim or before any valid
        one."""
        if not valid_claim(classical_claimed) or self._count_claims == 0:
            return 1.0
        ratio = classical_claimed / self._claimed_by_classical
        return min(max(ratio, 1 / MAX_CLAIM_RATIO), MAX_CLAIM_RATIO)


def valid_claim(claim: float | None) -> bool:
    """Whether a claimed variance is finite and positive."""
    return claim is not None and 0 < claim < math.inf

"""One translation direction from the pose network's, the photometric refinement's and
classical ORB + essential-matrix VO's; the length (the monocular scale) stays the network's.

A monocular pose's translation direction carries most of its short-range error: with the
former packaged model, the legacy 5-frame ATE on KITTI 06 and 00 falls to a third and a fifth
with the true direction and the network's length (`benchmarks/RESULTS.md`). The classical
direction errs independently of the other two, so their variances follow from how much they
disagree (`three_cornered.py`; disagreements are squared angles per degree of freedom, rad^2),
with the error the network's and the refined direction share (both lean on the same network:
on KITTI 06 a covariance of 8x the classical variance) measured over pairs of frames, and the
unit vectors are averaged by those weights. Only with the classical estimate: without it the
refined translation's claimed covariance would have to be calibrated, and it is not. Until the
variances are measured (the first frames after a start, a model swap or a new camera), a frame
with all three takes the mean of the two directions that agree best
(`ThreeCorneredHat.agreeing_pair`), and so does one whose variances the hat cannot split yet
(`DirectionFusion.split_unmeasured`; a frame without the refined direction then takes the mean
of the other two). Where no two of the directions a frame has agree within chance, the variances
cannot say which is right, and the one nearest the last fused direction is kept alone
(`DirectionFusion.near_last`): something moving across the view pulls the refinement and
classical VO each its own way, but a camera on a vehicle or a robot keeps its direction of
travel from one frame to the next (where the refinement failed, the network's, as classical VO
is the suspect). So it is, too, where two that follow the same moving thing agree with each
other and outvote the third: where the directions as weighted would turn from the last moving
frame's by more than a camera under way can (`plausible_turn`, at least `MAX_TURN_DEG`) while
one lies within half of that of it and its variance says it knows the direction so well.

A direction is only defined while the camera moves: frames whose network translation is shorter
than ``min_speed_ratio`` times its running mean (a stop, a pure rotation) keep the network's
translation and leave the variances alone (their directions would be noise, and such a frame
would inflate all three disagreements for the next ``window`` frames). And the variances are a
small-angle model: while even the best of the three directions has an estimated sigma above
``max_sigma`` (small translations at a high frame rate, as with a handheld camera at 30 Hz,
where all three scatter by tens of degrees), the network's translation is kept here and
`directions_unmeasurable` says so. That does not say whose direction is wrong; where the
network's also fails over a window of frames (`window_direction.py`), a translation aligned with
a keyframe, whose errors do not add up from frame to frame, is the better one to publish
(`motion_fusion.py` does).
"""

from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.network_bias import DirectionBias
from sfm_ros.core.three_cornered import ThreeCorneredHat

SLOW_LAG = 2
"""Frames apart over which the network direction's slow error is measured
(`DirectionFusion.slow_network_variance`): two pairs of frames two apart share no frame, so no
feature, and classical VO's errors on them are independent. It reads the hat's last frames'
disagreements, which it keeps for `three_cornered.SHARED_LAGS` (at least this many) frames."""
NOISY_REFINED_RATIO = 5.0
"""The network's variance is floored at `DirectionFusion.slow_network_variance` only where the
refined direction's variance exceeds this times the network-classical disagreement: there the
three-cornered hat's split of that disagreement is noise (on KITTI 06 the ratio is 25-50).
Below it the hat stands: on rendered streets at 128x416, where ORB's errors repeat over frames
on repeated texture, the floor moved weight to the classical direction and a street's ATE5
rose 18 % (replayed, the ratio 5, 10 or 20 gave the same on every clip; `benchmarks/RESULTS.md`)."""


MAX_ACCELERATION = 50.0
"""Acceleration (m/s^2) beyond which no camera under way turns its direction of travel: about
5 g, beyond any vehicle or robot (KITTI 00's car: at most 4 m/s^2), and 2x the most a handheld
camera showed (7-Scenes at 30 Hz, 7 mm a frame: its true direction turned more than 45 degrees
on 198 of 867 moving frames, at 14 m/s^2 at the 99th percentile and 25 at most), a margin for
a depth whose units are not quite metres. Turning a velocity v by an angle within a frame
interval dt takes 2 v sin(angle / 2) / dt (`plausible_turn`)."""
MAX_TURN_DEG = 45.0
"""The least turn of the direction of travel within a frame that `near_last` holds against,
whatever the speed: the directions' own errors stay well below it (KITTI: 0.4 degrees between
frames, median) and the estimates that follow something moving lie far beyond (on a rendered
street with an object 0.3 of the view wide crossing it, the refinement at 159 degrees off and
classical VO at 136 agreed and outvoted the network's, 4.5, `benchmarks/RESULTS.md`)."""


def plausible_turn(distance_m: float, interval_s: float | None) -> float | None:
    """The largest angle (rad) by which a camera that moved ``distance_m`` (m) in a frame
    interval of ``interval_s`` (s) can have turned its direction of travel since the frame
    before (`MAX_ACCELERATION`); None where any turn is (a slow camera) or the interval is
    not known."""
    if interval_s is None or not (interval_s > 0 and distance_m > 0):
        return None
    reach = MAX_ACCELERATION * interval_s**2 / (2 * distance_m)  # sin(angle / 2)
    return 2 * math.asin(reach) if reach < 1 else None


CHI2_2DOF_999 = 13.82
"""99.9th percentile of the chi-square distribution with two degrees of freedom."""


def _unit(t: np.ndarray) -> np.ndarray:
    return t / np.linalg.norm(t)


def _weighted(
    weights: np.ndarray, units: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]
) -> np.ndarray:
    """The sum (3,) of the unit directions given (None: not there) times their ``weights``
    (3,), those weighted zero left out."""
    terms = (w * u for w, u in zip(weights, units, strict=True) if u is not None and w > 0)
    return sum(terms, np.zeros(3))


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad) between the directions of (3,) vectors."""
    return math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b))


def squared_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Squared angle per degree of freedom (rad^2) between the directions of (3,) vectors."""
    return angle(a, b) ** 2 / 2


def direction_variance(t: np.ndarray, cov_t: np.ndarray) -> float:
    """Variance per degree of freedom (rad^2) of the direction of a (3,) translation with
    (3, 3) covariance ``cov_t`` (same frame): the part of the covariance across ``t``, over
    its squared length."""
    u = _unit(t)
    across = np.eye(3) - np.outer(u, u)
    return float(np.trace(across @ cov_t @ across)) / (2 * float(t @ t))


class DirectionFusion(ThreeCorneredHat):
    """Fuses the directions of (3,) translations of the same motion (arguments:
    `ThreeCorneredHat`, and ``min_speed_ratio`` and ``max_sigma`` (rad) of the module
    docstring)."""

    disagreement_dof = 2  # differences of unit vectors lie across the direction

    @property
    def shared_variance(self) -> float:
        """`ThreeCorneredHat.shared_variance`, credited only where it leaves the classical
        direction better than the network's and the refined one taken together. Where the
        classical direction is the worse either way (ORB on grass: heavy-tailed), the measure
        moves weight towards it all the same, and the bursts of a few frames in which the
        network and the refinement go wrong together, a shared error that the running mean
        keeps for ``window`` frames, moved enough to cost a rendered field 23-31 % of its ATE5
        (`benchmarks/RESULTS.md`)."""
        shared = super().shared_variance
        if shared <= 0:  # also before the variances are measured
            return shared
        network, refined, classical = self._independent_variances()
        together = 1 / (1 / network + 1 / refined) + shared
        return shared if classical - shared < together else 0.0

    def __init__(
        self,
        window: float = 30.0,
        min_ratio: float = 0.1,
        min_classical: int = 5,
        min_speed_ratio: float = 0.25,
        max_sigma: float = math.radians(20.0),
    ):
        if not (0 <= min_speed_ratio < 1 and max_sigma > 0):
            raise InputError(
                f"min_speed_ratio must be in [0, 1) and max_sigma > 0, got {min_speed_ratio}, "
                f"{max_sigma}"
            )
        self.min_speed_ratio, self.max_sigma = float(min_speed_ratio), float(max_sigma)
        self.bias = DirectionBias()
        """The network direction's steady offset, removed before it is fused."""
        super().__init__(window, min_ratio, min_classical)
        self.held_course = 0
        """Frames on which a direction was kept alone because the directions as weighted
        turned from the last moving frame's by more than the camera could (`near_last`)."""

    def reset(self) -> None:
        """Forget the variances, the network's offset and the running speed (a new model or
        camera)."""
        super().reset()
        self.bias.reset()
        self._speed, self._speed_count = 0.0, 0
        self.last_weights = (1.0, 0.0, 0.0)
        """Weights of the network's, the refined and the classical direction in the last
        fusion ((1, 0, 0) where the network's translation was kept)."""
        self._slow, self._count_slow = 0.0, 0
        self._last_direction: np.ndarray | None = None
        """The unit direction the last moving frame returned (`near_last`)."""
        self._moved_last = False
        """Whether the frame before this one moved (no stop between it and this one)."""
        self._calm: np.ndarray | None = None
        """The variances (3,) `near_last` tests against while it keeps one direction alone:
        those before the first such frame (the frames it acts on would inflate them)."""

    def _measure_shared(self, classical_share: float, disagreements: np.ndarray | None) -> None:
        """`ThreeCorneredHat._measure_shared`, and first the network's slow error: this frame's
        classical-minus-network disagreement times that of `SLOW_LAG` frames before, from the
        hat's last frames (`slow_network_variance`)."""
        recent = self._recent
        past = recent[-SLOW_LAG] if len(recent) >= SLOW_LAG else None
        if disagreements is not None and past is not None:
            self._count_slow += 1
            product = float(disagreements[1] @ past[1][1]) / self.disagreement_dof
            self._slow = self._update(self._slow, product, self._count_slow)
        super()._measure_shared(classical_share, disagreements)

    @property
    def slow_network_variance(self) -> float:
        """The network direction's error that stays over `SLOW_LAG` frames (per degree of
        freedom, rad^2; 0 until ``min_classical`` pairs were seen): the running mean of the
        products of its disagreements with the classical direction that many frames apart.
        Classical VO's errors there are independent, so only the network's slow error remains
        (what its steady offset, `DirectionBias`, has not removed).

        The three-cornered hat cannot tell the network's variance from the classical one's
        where the refined direction errs far more than both: on KITTI its disagreements with
        the other two are 4-6 degrees against their 0.8 with each other, and their difference,
        which splits that 0.8, is noise (on KITTI 06 it gave the network 0.25-0.4 degrees and
        classical VO 0.8-1.3, where they erred about 0.6 and 0.25). This one does not involve
        the refined direction (`benchmarks/RESULTS.md`)."""
        if self._count_slow < self.min_classical:
            return 0.0
        return max(self._slow, 0.0)

    def _independent_variances(self) -> tuple[float, float, float]:
        """`ThreeCorneredHat`'s; where the refined direction is too noisy for the hat to split
        the network-classical disagreement (`NOISY_REFINED_RATIO`), the network's at least
        `slow_network_variance` (the classical one then the rest of that disagreement, at
        least the floor)."""
        network, refined, classical = super()._independent_variances()
        slow = self.slow_network_variance
        if self.three_cornered and self._too_noisy(refined) and slow > network:
            network, classical = slow, max(self._nc - slow, self._floor())
        return network, refined, classical

    @property
    def split_unmeasured(self) -> bool:
        """Whether the network-classical disagreement cannot be split yet: the refined
        direction too noisy for the hat (`NOISY_REFINED_RATIO`) and `slow_network_variance`
        not measured yet. The hat's split is then noise: on KITTI 06's frames 7-14 (the
        refinement failing on every third) it gave the network's direction, 1.5-2.3 degrees
        off, 0.7-0.9 of the weight where classical VO's erred 0.25-0.5 (`benchmarks/RESULTS.md`)."""
        if not self.three_cornered:
            return False
        refined = super()._independent_variances()[1]
        return self._too_noisy(refined) and self._count_slow < self.min_classical

    def _too_noisy(self, refined_variance: float) -> bool:
        """Whether the refined direction's variance (the plain hat's) is too large for the hat
        to split the network-classical disagreement (`NOISY_REFINED_RATIO`)."""
        return refined_variance > NOISY_REFINED_RATIO * self._nc

    @property
    def usable(self) -> bool:
        """Whether the variances are measured and at least one direction is known within
        ``max_sigma``."""
        return self.three_cornered and min(self.variances) <= self.max_sigma**2

    @property
    def directions_unmeasurable(self) -> bool:
        """Whether the variances are measured and every direction's sigma is above
        ``max_sigma``: the camera moves too little between frames for any of the three to
        know its direction."""
        return self.three_cornered and not self.usable

    @staticmethod
    def none_agree(
        units: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None],
        before: np.ndarray | None,
    ) -> bool:
        """Whether at least two of the network's, the refined and the classical unit direction
        (None: not there) are given and no two of them agree within chance: the 99.9th
        percentile of the sum of their variances ``before`` this frame (`frame_variances`;
        this frame's disagreements would inflate them; the error the first two share cancels
        in their difference). False without ``before``."""
        present = [i for i, u in enumerate(units) if u is not None]
        if before is None or len(present) < 2:
            return False
        return not any(
            2 * squared_angle(units[i], units[j]) <= CHI2_2DOF_999 * (before[i] + before[j])
            for i, j in ((0, 1), (0, 2), (1, 2))
            if i in present and j in present
        )  # twice the squared angle per degree of freedom: chi-square, 2 dof

    def _variances_before(self, claimed: float) -> np.ndarray | None:
        """The variances (3,) `none_agree` tests this frame against: those kept while a run of
        frames with one direction kept alone goes on (`_calm`), else this frame's
        `frame_variances` before it updates them; None while they are not usable."""
        if self._calm is not None:
            return self._calm
        return self.frame_variances(claimed)[0] if self.usable else None

    def near_last(
        self,
        units: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None],
        before: np.ndarray | None,
        weights: np.ndarray,
        max_turn: float | None = None,
    ) -> int:
        """Which of a frame's network, refined and classical unit direction (None: not there)
        to keep alone, or -1 (the ``weights`` (3,) as measured): the one nearest the last fused
        direction, where none agree (`none_agree`) or where the directions as weighted turn
        from the last moving frame's by more than ``max_turn`` (rad, `plausible_turn`; None:
        any turn), at least `MAX_TURN_DEG`, while that one lies within half of it and knows
        the direction within half of it by its variance ``before`` (the 99.9th percentile: on
        7-Scenes at 30 Hz the network's direction, sigma 56 degrees, stays near the last
        because the last was the network's, while the refined one, 9, turns). A camera
        on a vehicle or a robot does not turn its direction of travel by tens of degrees from
        one frame to the next, but an object crossing 40 % of the view pulls the photometric
        refinement so: on KITTI 00 with `benchmarks/faults.py`'s crossing, the refined
        direction 20-30 degrees off had 0.64-0.89 of the weight, the network's erred 2-6,
        classical VO's, which followed the object, 80-97 (`benchmarks/RESULTS.md`)."""
        last = self._last_direction
        if last is None:
            return -1
        present = [i for i, u in enumerate(units) if u is not None]
        nearest = min(present, key=lambda i: squared_angle(units[i], last))
        if self.none_agree(units, before):
            return nearest
        if max_turn is None or not self._moved_last or before is None:
            return -1
        limit = max(max_turn, math.radians(MAX_TURN_DEG))
        if (
            angle(units[nearest], last) > limit / 2
            or CHI2_2DOF_999 * before[nearest] > (limit / 2) ** 2
        ):  # the one kept must know the direction within half of it (99.9th percentile)
            return -1
        weighted = _weighted(weights, units)
        if np.linalg.norm(weighted) > 1e-9 and angle(weighted, last) <= limit:
            return -1
        self.held_course += 1
        return nearest

    def interrupt(self) -> None:
        """End the run of moving frames (a stop, a break in the frames): the next frame's
        direction is free to turn any way (a reversal passes through a stop)."""
        self._moved_last = False

    def _remember(self, direction: np.ndarray) -> None:
        """Keep a moving frame's returned unit direction for the next (`near_last`)."""
        self._last_direction, self._moved_last = direction, True

    def moving(self, t_network: np.ndarray) -> bool:
        """Whether a network translation is at least ``min_speed_ratio`` of the running mean
        length (a stop's or a pure rotation's direction is noise)."""
        return float(np.linalg.norm(t_network)) >= self.min_speed_ratio * self._speed

    def fuse(
        self,
        t_network: np.ndarray,
        t_refined: np.ndarray,
        refined_cov: np.ndarray,
        t_classical: np.ndarray | None = None,
        use_classical: bool = True,
        max_turn: float | None = None,
    ) -> np.ndarray:
        """The fused (3,) translation: the fused direction times the network's length.

        Args:
            t_network, t_refined: (3,) translations of the same motion (any scale).
            refined_cov: (3, 3) covariance of ``t_refined`` in its frame.
            t_classical: (3,) classical translation (its length is ignored), or None where
                there is none (a failed pair).
            use_classical: False: the classical direction is measured (its disagreements
                enter the variances) but not fused (it is not the camera's this frame).
            max_turn: the largest turn (rad) of the direction of travel since the last frame
                that the camera's speed allows (`plausible_turn`; None: any, `near_last`).

        Non-finite or zero translations, or a covariance without a finite positive part
        across ``t_refined``, raise InputError and leave the state unchanged.
        """
        self.last_weights = (1.0, 0.0, 0.0)
        t_raw, t_r = (np.asarray(t, dtype=np.float64) for t in (t_network, t_refined))
        t_c = None if t_classical is None else np.asarray(t_classical, dtype=np.float64)
        cov = np.asarray(refined_cov, dtype=np.float64)
        vectors = [t for t in (t_raw, t_r, t_c) if t is not None]
        if any(t.shape != (3,) for t in vectors) or cov.shape != (3, 3):
            raise InputError("direction fusion needs (3,) translations and a (3, 3) covariance")
        if not all(np.isfinite(t).all() and np.linalg.norm(t) > 0 for t in vectors):
            raise InputError("direction fusion needs finite, non-zero translations")
        claimed = direction_variance(t_r, cov) if np.isfinite(cov).all() else math.nan
        if not 0 < claimed < math.inf:
            raise InputError("direction fusion needs a finite covariance across the translation")
        t_n = self.bias.correct(t_raw)
        speed = self._update_speed(t_n)
        if speed < self.min_speed_ratio * self._speed:
            self.skip()
            self.interrupt()
            return t_n
        u_n, u_r = _unit(t_n), _unit(t_r)
        u_c = None if t_c is None else _unit(t_c)
        classical, disagreements = (None, None), None
        if u_c is not None:
            classical = (squared_angle(u_n, u_c), squared_angle(u_r, u_c))
            if use_classical:  # one that followed something moving repeats its error
                disagreements = np.stack([u_r - u_n, u_c - u_n, u_c - u_r])
        network_refined = squared_angle(u_n, u_r)
        before = self._variances_before(claimed)
        self.update(network_refined, claimed, *classical, None, disagreements)
        if not use_classical:
            t_c = u_c = None
        if u_c is not None and (not self.three_cornered or self.split_unmeasured):
            weights = self.agreeing_pair(network_refined, *classical)
        elif not self.usable:
            self._remember(u_n)
            return t_n
        else:
            weights, _ = self.weights(claimed, u_c is not None)
            kept = self.near_last((u_n, u_r, u_c), before, weights, max_turn)
            self._calm = before if kept >= 0 else None
            if kept >= 0:
                weights = np.eye(3)[kept]
        fused = _weighted(weights, (u_n, u_r, u_c))
        if not np.linalg.norm(fused) > 1e-9:  # opposite directions cancelled: no average
            self._remember(u_n)
            return t_n
        self.last_weights = tuple(float(w) for w in weights)
        self.bias.update(t_raw, t_r, t_c, self.last_weights[1:])
        self._remember(_unit(fused))
        return self._last_direction * speed

    def fuse_without_refined(self, t_network: np.ndarray, t_classical: np.ndarray) -> np.ndarray:
        """The fused (3,) translation of a frame whose refinement failed: the network's and the
        classical direction weighted by the variances measured on the frames with all three,
        times the network's length (the network's translation until those are known, and on
        the frames `fuse` keeps it on). Where the two disagree beyond chance (`none_agree`)
        the network's alone: classical VO may follow something moving (nearest the last
        direction instead, a moving-object street's worst published direction went 72.5 ->
        89.1 degrees, where the last fused one had been pulled already). The variances are not
        updated. Non-finite or zero translations raise InputError."""
        self.last_weights = (1.0, 0.0, 0.0)
        t_raw, t_c = (np.asarray(t, dtype=np.float64) for t in (t_network, t_classical))
        if t_raw.shape != (3,) or t_c.shape != (3,):
            raise InputError("direction fusion needs (3,) translations")
        if not all(np.isfinite(t).all() and np.linalg.norm(t) > 0 for t in (t_raw, t_c)):
            raise InputError("direction fusion needs finite, non-zero translations")
        t_n = self.bias.correct(t_raw)
        speed = self._update_speed(t_n)
        self.skip()
        if speed < self.min_speed_ratio * self._speed:
            self.interrupt()
            return t_n
        u_n, u_c = _unit(t_n), _unit(t_c)
        if not self.usable:
            self._remember(u_n)
            return t_n
        before = self._variances_before(1.0)
        apart = self.none_agree((u_n, None, u_c), before)
        self._calm = before if apart else None
        if apart:  # classical VO is the suspect, as `MotionFusion.classical_outlier` holds
            weights = np.array([1.0, 0.0, 0.0])
        elif self.split_unmeasured:
            weights = np.array([0.5, 0.0, 0.5])
        else:
            weights, _ = self.weights(1.0, True, refined=False)
        fused = _weighted(weights, (u_n, None, u_c))
        if not np.linalg.norm(fused) > 1e-9:
            self._remember(u_n)
            return t_n
        self.last_weights = tuple(float(w) for w in weights)
        self.bias.update(t_raw, None, t_c, self.last_weights[1:])
        self._remember(_unit(fused))
        return self._last_direction * speed

    def _update_speed(self, t_network: np.ndarray) -> float:
        """The network translation's length, added to the running mean speed."""
        speed = float(np.linalg.norm(t_network))
        self._speed_count += 1
        self._speed += max(1.0 / self.window, 1.0 / self._speed_count) * (speed - self._speed)
        return speed

"""The motion odometry publishes, from the pose network's, the refined and classical VO's.

``pose_source`` picks it: the pose network's motion; the network's refined by direct photometric
alignment against a keyframe (`keyframes.py`), whose inverse Hessian then sets the covariance;
the refined rotation with the network's translation (covariance from the noise model); or the
network's and the refined rotation fused by their variances (`rotation_fusion.py`; the network's
first scaled by its running gain and less its running offset from the other two,
`network_bias.py`), with ORB + essential-matrix VO's rotation as a third estimate that makes the
variances measurable (``fuse_classical``; where the refinement fails, the network's and the
classical rotation are fused by the variances measured on the other frames, and without a
classical one the network's is published with its gain and offsets; where classical VO
measures its rotation's closure over two frames, that sets the classical variance,
`RotationFusion.add_closure`, and its fit over both frames pulls the classical rotation towards
what it says after the last fused rotation, `averaged_step`); the rotation's covariance is
then the fused rotation's measured variance. With the classical estimate the three
translation directions are fused the same way (``fuse_translation``, `direction_fusion.py`), the
network's first less its running offset from the other two. The translation's length is the
network's, rescaled by the ratio of refined to network lengths over the last frames
(``anchor_length``, `length_anchor.py`), so that the trajectory's scale follows the depth's;
from frame to frame its change is fused with the refined and the classical VO's change of length
the same way (``fuse_length``, `length_fusion.py`). Two cases publish the refined translation,
aligned with the keyframe, whose errors do not add up from frame to frame: while all three
directions scatter by tens of degrees (a camera at 30 Hz) and the network's, chained over a
window of frames, disagrees with the refined displacement (`window_direction.py`: a network
whose learnt motion does not fit the camera), and a stop (a refined length far below its mean
while the network's drops too, or for three frames in a row), whose refined motion is published
whole (between views of a still scene the pose network creeps on). A turn the network did not
learn (a robot turning on the spot) leaves the network's rotation out of the fusion
(`MotionFusion.network_rotation_rejected`); a classical rotation far from both others while they
agree, from a fit that claims an unusual variance (a mismatch: ORB on repeated texture), leaves
classical VO's rotation and direction out of their fusions and variances
(`rotation_fusion.MISMATCH_RATIO`). Classical VO is given the network's motion and the angle
beyond which a direction lies beyond chance from it (`classical_prior`), by which it tells the
camera's motion from that of something crossing the view where it sees two.

Motions are (4, 4) ``T_prev_cur`` in the camera optical frame, translation in the depth
network's units.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sfm_ros.core.classical_vo import FAR_OFF_DEG, MotionPrior, OrbMotion
from sfm_ros.core.direction_fusion import (
    CHI2_2DOF_999,
    DirectionFusion,
    plausible_turn,
    squared_angle,
)
from sfm_ros.core.errors import InputError
from sfm_ros.core.keyframes import TrackResult
from sfm_ros.core.length_anchor import LengthAnchor
from sfm_ros.core.length_fusion import LengthFusion
from sfm_ros.core.lie import so3_exp, so3_log
from sfm_ros.core.rotation_fusion import RotationFusion
from sfm_ros.core.window_direction import WindowDirection

POSE_SOURCES = ("network", "refined", "refined_rotation", "fused")
CHI2_3DOF_999 = 16.27
"""99.9th percentile of the chi-square distribution with three degrees of freedom."""


def averaged_step(
    R_step: np.ndarray,
    step_variance: float,
    R_last: np.ndarray,
    last_variance: float,
    R_over_two: np.ndarray,
    over_two_variance: float,
) -> np.ndarray:
    """A step's rotation R_prev_cur (3, 3) averaged with the one a fit over two frames gives
    it after the last step, ``R_last.T @ R_over_two`` (R_two_prev and R_two_cur, (3, 3)), whose
    variance is the sum of theirs; weighted by the variances (per axis, rad^2). The step as it
    is where a variance is not a positive finite number. The last step and this one then
    chain to what the fit over both says, as far as their variances allow."""
    other_variance = last_variance + over_two_variance
    if not (0 < step_variance < math.inf and 0 < other_variance < math.inf):
        return R_step
    weight = step_variance / (step_variance + other_variance)
    return R_step @ so3_exp(weight * so3_log(R_step.T @ R_last.T @ R_over_two))


def _between(R_a: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    """(3,) axis-angle (rad) of the rotation from (3, 3) ``R_a`` to ``R_b``."""
    return so3_log(R_a.T @ R_b)


@dataclass(frozen=True)
class MotionSources:
    """One frame's motion estimates before they are fused (``T_prev_cur``, optical frame,
    network units), for the gyroscope's gate, diagnostics and benchmarks."""

    network: np.ndarray | None
    """(4, 4) the pose network's; None without a previous frame."""
    refined: np.ndarray | None = None
    """(4, 4) the refinement against the keyframe; None where it fell back or did not run."""
    classical: np.ndarray | None = None
    """(4, 4) ORB + essential matrix, unit translation (zero where it saw the camera only
    turn); None where it failed or is off."""
    classical_length_ratio: float = math.nan
    """Classical VO's length over the previous motion's (NaN: none)."""
    classical_rejected: bool = False
    """The classical motion was left out of the fusion (`MotionFusion.classical_outlier`):
    not the camera's, so nothing is to be measured against it."""


@dataclass(frozen=True)
class MotionFusionConfig:
    """Which estimates make the published motion (the node's parameters of the same names)."""

    pose_source: str = "fused"
    """network, refined, refined_rotation or fused."""
    fuse_classical: bool = True
    """fused: classical VO's motion as a third estimate of the rotation and direction."""
    fuse_translation: bool = True
    """fused with fuse_classical: fuse the translation's direction too."""
    anchor_length: bool = True
    """fused or refined_rotation: the network's length scaled to the depth's."""
    fuse_length: bool = True
    """fused with fuse_classical and anchor_length: steady the length from frame to frame."""

    def __post_init__(self) -> None:
        if self.pose_source not in POSE_SOURCES:
            raise InputError(f"pose_source must be one of {POSE_SOURCES}, got {self.pose_source!r}")


@dataclass(frozen=True)
class FusedMotion:
    """A frame's published motion and its uncertainty."""

    T_prev_cur: np.ndarray | None
    """(4, 4) motion; None without a previous frame."""
    covariance: np.ndarray | None = None
    """(6, 6) covariance of the motion (the refined one's); None = the noise model."""
    rotation_variance: float | None = None
    """The fused rotation's measured variance per axis (rad^2), in place of the noise model's."""


class MotionFusion:
    """The published motion of each frame, and what the fusion learnt about its sources.

    Args:
        config: which estimates to use.
        classical: the classical VO whose motion `fuse` is given; its ``last_*`` statistics
            (rotation variance, length ratio and its variance) describe that motion.
        max_rotation_deg: how far the refinement may turn from its start (its
            ``RefineConfig.max_rotation_deg``).
        warn: ``warn(key, message)`` for inputs the fusion skips (throttled by the caller).
    """

    def __init__(
        self,
        config: MotionFusionConfig,
        classical: OrbMotion,
        max_rotation_deg: float,
        warn: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config, self.classical, self.max_rotation_deg = config, classical, max_rotation_deg
        self._warn = warn or (lambda key, msg: logging.getLogger(__name__).warning(msg))
        self.rotation_fusion = RotationFusion()
        self.direction_fusion = DirectionFusion()
        self.length_anchor = LengthAnchor()
        self.length_fusion = LengthFusion()
        self.window_direction = WindowDirection()
        self.network_rejections = 0
        """Frames whose network rotation was left out of the fusion
        (`network_rotation_rejected`)."""
        self.stopped = False
        """The last frame was published as a stop (the tracker's ``stood_still``)."""
        self.classical_rejections = 0
        """Frames whose classical motion was left out (`classical_outlier`)."""
        self.classical_rejected = False
        """The last frame's classical motion was left out."""
        self._last_rotation: np.ndarray | None = None
        """(3, 3) the last frame's fused rotation (None after a break in the frames)."""
        self._last_variance = math.nan
        """Its variance per axis (rad^2; NaN where it was not fused)."""

    def reset_model(self) -> None:
        """Forget what was learnt about the pose network (a new model)."""
        self.rotation_fusion.reset()  # the network's variances are the old model's
        self.direction_fusion.reset()  # and the old model's direction offset
        self.length_anchor.reset()  # the ratio is between the old model's two scales
        self.length_fusion.reset()
        self.window_direction.reset()

    def restart(self) -> None:
        """A break in the frames (the pipeline's reset): the chained length, the window and
        the direction's run of moving frames start again; what was learnt about the sources
        stays."""
        self.length_fusion.restart()
        self.window_direction.restart()
        self.direction_fusion.interrupt()
        self.stopped = False
        self._last_rotation, self._last_variance = None, math.nan

    def fuse(
        self,
        T_network: np.ndarray | None,
        track: TrackResult,
        T_classical: np.ndarray | None,
        interval_s: float | None = None,
        metres_per_unit: float = 1.0,
    ) -> FusedMotion:
        """This frame's motion from the network's, the tracker's result and classical VO's
        (None where it has none). ``interval_s``: the time since the last frame (None: not
        known); ``metres_per_unit``: the depth's unit in metres as far as known (the pipeline's
        scale); by both the translation's direction is held to what a camera under
        way can turn (`direction_fusion.plausible_turn`)."""
        cfg = self.config
        diag = track.diagnostics
        self.classical_rejected = (
            T_network is not None
            and T_classical is not None
            and self.classical_outlier(T_network, track, T_classical)
        )
        self.classical_rejections += self.classical_rejected
        if self.classical_rejected and self.classical_far_off(T_network, track, T_classical):
            T_classical = None  # neither fused nor measured
        use_classical = not self.classical_rejected
        if cfg.pose_source == "fused" and T_classical is not None and use_classical:
            T_classical = self._classical_over_two(T_classical)
            self.rotation_fusion.add_closure(self.classical.last_closure_variance)
        if cfg.pose_source == "fused":
            self._add_to_window(T_network, track)
        T, covariance, rotation_variance = T_network, None, None
        self.stopped = False
        keyframe_translation = False  # T's translation is the refined one, in the depth's units
        for fusion in (self.rotation_fusion, self.direction_fusion):  # until one fuses below
            fusion.last_weights = (1.0, 0.0, 0.0)
        self.rotation_fusion.last_variance = self.rotation_fusion.network_variance
        if cfg.pose_source == "refined":
            T, covariance = track.T_prev_cur, track.covariance
        elif cfg.pose_source == "fused" and diag.reason != "ok" and T is not None:
            if T_classical is not None and use_classical:  # the refinement failed: the other two
                T, rotation_variance = self._fused_without_refined(T, T_classical)
            else:
                T = self.corrected_network(T)
        elif cfg.pose_source != "network" and T is not None and diag.reason == "ok":
            T = T.copy()  # the translation's uncertainty is the network's: the noise model's
            R_refined = track.T_prev_cur[:3, :3]
            if self._stop(T, track.T_prev_cur):  # aligned with the keyframe: no creep
                self.stopped = True
                self.direction_fusion.interrupt()
                T, covariance, keyframe_translation = track.T_prev_cur, track.covariance, True
            elif cfg.pose_source == "refined_rotation":
                T[:3, :3] = R_refined
            else:
                var = float(np.trace(track.covariance[3:, 3:])) / 3
                if var > 0 and np.isfinite(T).all():  # else the network's rotation stays
                    R_classical = None if T_classical is None else T_classical[:3, :3]
                    claim = self.classical.last_rotation_variance  # NaN: the average claim
                    witness = T_classical if use_classical else None
                    if self.network_rotation_rejected(T, track, witness):
                        self.network_rejections += 1
                        T[:3, :3] = self.rotation_fusion.fuse_without_network(
                            R_refined, var, None if witness is None else R_classical, claim
                        )
                    else:
                        T[:3, :3], _ = self.rotation_fusion.fuse(
                            T[:3, :3], R_refined, var, R_classical, claim, use_classical
                        )
                        if self.rotation_fusion.last_mismatch:  # one essential matrix: its
                            T_classical = None  # direction is as far off as its rotation
                    rotation_variance = self.rotation_fusion.last_variance
                    if cfg.fuse_translation and cfg.fuse_classical:
                        # in the depth's units, which the published length follows: on
                        # 7-Scenes the network's own lengths are 3x longer
                        refined_length = float(np.linalg.norm(track.T_prev_cur[:3, 3]))
                        distance_m = refined_length * metres_per_unit
                        T[:3, 3] = self._fused_translation(
                            T[:3, 3], track, T_classical, use_classical,
                            plausible_turn(distance_m, interval_s),
                        )  # fmt: skip
                        keyframe_translation = self._keyframe_translation()
                        if keyframe_translation:  # aligned with the keyframe: no random walk
                            T[:3, 3] = track.T_prev_cur[:3, 3]
        if self._anchors_length() and T is not None:
            T = self._anchored_length(
                T, T_network, track.T_prev_cur, diag.reason == "ok", keyframe_translation
            )
        finite = T is not None and np.isfinite(T).all()
        self._last_rotation = np.array(T[:3, :3], dtype=np.float64) if finite else None
        self._last_variance = math.nan if rotation_variance is None else rotation_variance
        return FusedMotion(T, covariance, rotation_variance)

    def _classical_over_two(self, T_classical: np.ndarray) -> np.ndarray:
        """Classical VO's motion with its rotation averaged with the one its fit over two
        frames gives it after the last fused rotation (`averaged_step`), by the classical
        variance measured (scaled by each fit's claim) and the last fused rotation's; as it
        is before the variances are measured, without that fit or without a fused rotation
        the frame before. The fused chain of two steps then leans on classical VO's fit over
        both where classical VO is the better estimate, and its error over a few frames
        (RE) shrinks (`benchmarks/RESULTS.md`)."""
        over_two, fusion = self.classical.last_over_two, self.rotation_fusion
        if over_two is None or self._last_rotation is None or not fusion.three_cornered:
            return T_classical
        variance = fusion.variances[2]
        T = T_classical.copy()
        T[:3, :3] = averaged_step(
            T[:3, :3],
            variance * fusion.claim_ratio(self.classical.last_rotation_variance),
            self._last_rotation,
            self._last_variance,
            over_two[0],
            variance * fusion.claim_ratio(over_two[1]),
        )
        return T

    def network_rotation_rejected(
        self, T_network: np.ndarray, track: TrackResult, T_classical: np.ndarray | None
    ) -> bool:
        """Whether to leave the network's rotation out of the fusion: a turn it did not learn
        (a robot turning on the spot). The refinement fit better from another start (classical
        VO's rotation, constant velocity) and ended further from the network's rotation than
        it may move from a start; once the fusion has measured the variances, further than
        chance allows (the 99.9th percentile); and classical VO's rotation lies nearer the
        refined one than the network's."""
        R_network, R_refined = T_network[:3, :3], track.T_prev_cur[:3, :3]
        delta = _between(R_network, R_refined)
        limit = math.radians(self.max_rotation_deg)
        if track.diagnostics.init_source == "network" or np.linalg.norm(delta) <= limit:
            return False
        fusion = self.rotation_fusion
        if fusion.three_cornered:  # |delta|^2 / (their difference's variance): chi-square, 3 dof
            var_network, var_refined, _ = fusion.variances
            var_delta = var_network + var_refined - 2 * fusion.shared_variance
            if delta @ delta <= CHI2_3DOF_999 * var_delta:
                return False
        if T_classical is None:  # constant velocity's start alone may settle far off
            return False
        R_classical = T_classical[:3, :3]
        return np.linalg.norm(_between(R_classical, R_refined)) < np.linalg.norm(
            _between(R_classical, R_network)
        )

    def classical_outlier(
        self, T_network: np.ndarray, track: TrackResult, T_classical: np.ndarray
    ) -> bool:
        """Whether classical VO's motion is not the camera's: MAGSAC++ keeps the motion most
        features share, and something moving across the view may have more of them. Once
        the fusions have measured their variances: its translation's direction, while the
        camera moves, lies further from the network's (as the fusions weigh it,
        `corrected_network`) and, where the refinement succeeded, from the refined one than
        chance allows (the 99.9th percentile); or, where the refinement failed, its rotation
        lies that far from the network's (in KITTI 00's turns the network's own fell 1
        degree short where its measured gain took 0.7 of that out) and further from the last
        frame's fused rotation than the network's does: a turn the network falls short of
        beyond its averaged variance keeps the angular velocity that classical VO follows
        (KITTI 00, one frame of four runs' turns: 0.78 degrees published where classical VO
        erred 0.09, `benchmarks/RESULTS.md`), while a classical rotation that followed
        something moving leaves it. (With a refined
        rotation, no: in KITTI 00's sharp turns the network's rotation falls short by up to
        2 degrees and the refined one, which starts from it, with it, while classical VO's is
        right.) Such a motion is measured (its disagreements enter the variances, as on
        every frame, so the other frames are weighted as before; not where it lies far off,
        `classical_far_off`) but not fused; its length
        ratio stays in the length's fusion (without it the refined length, which the moving
        object pulls too, carried the length: `benchmarks/RESULTS.md`)."""
        if self._direction_beyond_chance(T_network, T_classical, self._others(T_network, track)):
            return True
        rotations = self.rotation_fusion
        if track.diagnostics.reason == "ok" or not rotations.three_cornered:
            return False
        var = rotations.variances
        R_network = self.corrected_network(T_network)[:3, :3]
        R_classical = T_classical[:3, :3]
        delta = _between(R_network, R_classical)
        if float(delta @ delta) <= CHI2_3DOF_999 * (var[0] + var[2]):
            return False
        if self._last_rotation is None:
            return True
        R_last = self._last_rotation
        return np.linalg.norm(_between(R_last, R_classical)) >= np.linalg.norm(
            _between(R_last, R_network)
        )

    def classical_far_off(
        self, T_network: np.ndarray, track: TrackResult, T_classical: np.ndarray
    ) -> bool:
        """Whether classical VO's translation lies, while the camera moves, beyond both chance
        and `classical_vo.FAR_OFF_DEG` from the network's (as the fusions weigh it) and, where
        the refinement succeeded, from the refined one: no error of theirs puts it there, it
        followed something crossing the view. Such a motion is left out of the variances as
        well (measured, its disagreements inflate them until the next such motions lie within
        chance: KITTI 00 with `benchmarks/faults.py`'s crossing, the classical direction's
        sigma 0.8 -> 31 degrees over nine frames, then one 82 degrees off with its rotation
        3.4 degrees off had 0.99 of the rotation's weight, `benchmarks/RESULTS.md`)."""
        others = self._others(T_network, track)
        far_off = math.radians(FAR_OFF_DEG)
        return self._direction_beyond_chance(T_network, T_classical, others, far_off)

    def _others(self, T_network: np.ndarray, track: TrackResult) -> list[tuple[np.ndarray, int]]:
        """The motions classical VO's direction is tested against, with their indices in the
        direction fusion's variances: the network's as the fusions weigh it and, where the
        refinement succeeded, the refined one."""
        refined = [(track.T_prev_cur, 1)] if track.diagnostics.reason == "ok" else []
        return [(self.corrected_network(T_network), 0), *refined]

    def classical_start_rejected(
        self, T_network: np.ndarray | None, T_classical: np.ndarray
    ) -> bool:
        """Whether classical VO's motion is no start for the refinement where the refinement
        from the network's motion failed: once the direction's variances are measured, its
        translation's direction lies beyond chance (the 99.9th percentile) from the
        network's while the camera moves. It then follows something moving across the view,
        and the refinement started there converged on that thing's motion and kept it with its
        constant-velocity start (KITTI 00 with an object crossing 40 % of it: refined
        directions 45-119 degrees off for seven frames, `benchmarks/RESULTS.md`). A rotation
        alone (a camera turning on the spot) has no direction and stays a start, and so does
        any motion where the network gives none (None or not finite)."""
        if T_network is None or not np.isfinite(T_network).all():
            return False
        T_corrected = self.corrected_network(T_network)
        return self._direction_beyond_chance(T_network, T_classical, [(T_corrected, 0)])

    def corrected_network(self, T_network: np.ndarray) -> np.ndarray:
        """(4, 4) the network's motion as the fusions weigh it: its rotation scaled by its
        measured gain and less its offset, its translation's direction less its offset
        (`network_bias.py`); as it is where it is not finite or nothing is measured yet."""
        if not np.isfinite(T_network).all():
            return T_network
        T = np.array(T_network, dtype=np.float64)
        T[:3, :3] = self.rotation_fusion.corrected_network(T[:3, :3])[2]
        T[:3, 3] = self.direction_fusion.bias.correct(T[:3, 3])
        return T

    def _direction_beyond_chance(
        self,
        T_network: np.ndarray,
        T_classical: np.ndarray,
        others: list[tuple[np.ndarray, int]],
        at_least: float = 0.0,
    ) -> bool:
        """Whether, while the camera moves and the direction's variances are measured, the
        classical translation's direction lies beyond chance, and beyond the angle
        ``at_least`` (rad), from every ``others`` (motion, its index in the direction
        fusion's variances)."""
        if not self._directions_measured(T_network) or self.classical.last_turns_only:
            return False
        return all(  # twice the squared angle per degree of freedom: chi-square, 2 dof
            2 * squared_angle(T[:3, 3], T_classical[:3, 3])
            > max(self._chance_bound(i), at_least**2)
            for T, i in others
        )

    def _directions_measured(self, T_network: np.ndarray) -> bool:
        """Whether the direction's variances are measured and the camera moves."""
        directions = self.direction_fusion
        return directions.usable and directions.moving(T_network[:3, 3])

    def _chance_bound(self, i: int) -> float:
        """The squared angle (rad^2) between the classical translation's direction and that of
        the estimate with index ``i`` in the direction fusion's variances beyond which it lies
        beyond chance (the 99.9th percentile)."""
        var = self.direction_fusion.variances
        return CHI2_2DOF_999 * (var[i] + var[2])

    def classical_prior(self, T_network: np.ndarray | None) -> MotionPrior | None:
        """The network's motion as the fusions weigh it (`corrected_network`) and the angle from
        it beyond which a classical direction lies beyond chance: by it classical VO tells the
        camera's motion from something crossing the view where it sees two rigid motions
        (`OrbMotion._camera_fit`). None while the direction's variances are not measured or
        the camera does not move, or without a finite network motion."""
        if T_network is None or not np.isfinite(T_network).all():
            return None
        if not self._directions_measured(T_network):
            return None
        return MotionPrior(self.corrected_network(T_network), math.sqrt(self._chance_bound(0)))

    def _fused_without_refined(
        self, T_network: np.ndarray, T_classical: np.ndarray
    ) -> tuple[np.ndarray, float | None]:
        """A frame whose refinement failed: the network's motion with the classical one fused
        in by the variances measured on the other frames (rotation and, with fuse_translation,
        the direction), and the fused rotation's variance (None where the network's stands)."""
        if not np.isfinite(T_network).all():
            return T_network, None
        T = T_network.copy()
        fusion = self.rotation_fusion
        try:
            T[:3, :3] = fusion.fuse_without_refined(
                T[:3, :3], T_classical[:3, :3], self.classical.last_rotation_variance
            )
        except InputError as exc:
            self._warn("fuse_classical", f"classical motion not fused: {exc}")
            return T_network, None
        if self.config.fuse_translation and not self.classical.last_turns_only:
            try:
                T[:3, 3] = self.direction_fusion.fuse_without_refined(T[:3, 3], T_classical[:3, 3])
            except InputError as exc:  # e.g. a network translation of zero length
                self._warn("direction", f"translation direction not fused: {exc}")
        return T, (fusion.last_variance if fusion.three_cornered else None)

    def _fused_translation(
        self,
        t_network: np.ndarray,
        track: TrackResult,
        T_classical: np.ndarray | None,
        use_classical: bool = True,
        max_turn: float | None = None,
    ) -> np.ndarray:
        """The network's translation with its direction fused with the refined and the
        classical one (the network's where the inputs do not allow it; the classical one
        only measured, not fused, without ``use_classical``; ``max_turn``: the largest turn
        of the direction the camera's speed allows, `DirectionFusion.fuse`)."""
        R_refined = track.T_prev_cur[:3, :3]  # the covariance perturbs on the right
        cov_t = R_refined @ track.covariance[:3, :3] @ R_refined.T
        t_refined = track.T_prev_cur[:3, 3]
        turned = T_classical is None or self.classical.last_turns_only  # no direction
        t_classical = None if turned else T_classical[:3, 3]
        try:
            return self.direction_fusion.fuse(
                t_network, t_refined, cov_t, t_classical, use_classical, max_turn
            )
        except InputError as exc:
            self._warn("direction", f"translation direction not fused: {exc}")
            return t_network

    def _keyframe_translation(self) -> bool:
        """Whether to publish the refined translation: no frame-to-frame direction is
        measurable (the variances say so, or classical VO found a rotation alone: no parallax,
        a stop or a turn on the spot) and, chained over a window of frames, the network's
        disagrees with the refined one (`WindowDirection`)."""
        unmeasurable = self.direction_fusion.directions_unmeasurable
        return (unmeasurable or self.classical.last_turns_only) and not self.window_direction.agrees

    def _add_to_window(self, T_network: np.ndarray | None, track: TrackResult) -> None:
        """This frame's network and refined motions into the window (a gap without either)."""
        if T_network is None or track.diagnostics.reason != "ok":
            self.window_direction.restart()
            return
        with contextlib.suppress(InputError):  # a non-finite motion: the window restarts
            self.window_direction.add(T_network, track.T_prev_cur)

    def _anchors_length(self) -> bool:
        """Whether the published translation takes the length anchor's ratio."""
        cfg = self.config
        return cfg.pose_source in ("fused", "refined_rotation") and cfg.anchor_length

    def network_only(self, T_network: np.ndarray | None) -> np.ndarray | None:
        """The network's motion where the tracker could not run, its length anchored like the
        frames around it (no jump in length for one frame); the chained window starts again."""
        self.window_direction.restart()
        if not self._anchors_length() or T_network is None:
            return T_network
        return self._anchored_length(T_network, T_network, None, False)

    def _anchored_length(
        self,
        T: np.ndarray,
        T_network: np.ndarray,
        T_refined: np.ndarray | None,
        refined: bool,
        keyframe_translation: bool = False,
    ) -> np.ndarray:
        """``T`` with its translation scaled by the length anchor's refined / network ratio,
        updated with this frame's lengths (the refined one only where ``refined``), then to
        the fused length (``fuse_length``); a ``keyframe_translation`` (the refined one,
        already in the depth's units) only updates the ratio and restarts the fused length."""
        refined_length = None
        if refined and T_refined is not None:
            refined_length = float(np.linalg.norm(T_refined[:3, 3]))
        try:
            ratio = self.length_anchor.update(
                float(np.linalg.norm(T_network[:3, 3])), refined_length
            )
        except InputError as exc:
            self._warn("length", f"translation length not anchored: {exc}")
            ratio = self.length_anchor.ratio
        if keyframe_translation:
            self.length_fusion.restart()
            return T
        T = T.copy()
        T[:3, 3] *= ratio
        if self._fuses_length():
            T[:3, 3] *= self._fused_length(float(np.linalg.norm(T[:3, 3])), refined_length)
        return T

    def _stop(self, T_network: np.ndarray, T_refined: np.ndarray) -> bool:
        """Whether the network's and the refined motion say the camera stands still
        (`LengthAnchor.stop`; with ``anchor_length``, whose means it compares with): between
        two views of a still scene the pose network creeps on and ORB + E finds no motion."""
        lengths = (float(np.linalg.norm(T[:3, 3])) for T in (T_network, T_refined))
        return self._anchors_length() and self.length_anchor.stop(*lengths)

    def _fuses_length(self) -> bool:
        cfg = self.config
        return cfg.pose_source == "fused" and cfg.fuse_classical and cfg.fuse_length

    def _fused_length(self, length: float, refined_length: float | None) -> float:
        """Factor on an anchored translation of ``length`` that gives the fused length."""
        classical = self.classical
        try:
            fused = self.length_fusion.fuse(
                length,
                refined_length,
                classical.last_length_ratio,
                classical.last_length_ratio_variance,
            )
        except InputError as exc:
            self._warn("length", f"translation length not fused: {exc}")
            return 1.0
        return fused / length if length > 0 else 1.0

    def diagnostics(self) -> dict[str, str]:
        """Key/values for ``/diagnostics``: the weights, variances and offsets measured."""
        return {
            "network rotation rejected (frames)": str(self.network_rejections),
            "classical VO motion rejected (frames)": str(self.classical_rejections),
            "classical VO motion from a second rigid motion in view (frames)": str(
                self.classical.second_motions
            ),
            "translation direction held on course (frames)": str(self.direction_fusion.held_course),
            **self.rotation_diagnostics(),
            **self.length_diagnostics(),
        }

    def rotation_diagnostics(self) -> dict[str, str]:
        fusion = self.rotation_fusion
        if fusion.frames == 0:  # none since the start or the last model swap
            return {}
        network, shared, fused = (
            math.degrees(math.sqrt(v))
            for v in (fusion.network_variance, fusion.shared_variance, fusion.last_variance)
        )
        offset = math.degrees(float(np.linalg.norm(fusion.bias.bias)))
        sources, classical = "two", {}
        if fusion.three_cornered:
            sources = "three estimates"
            if fusion.classical_variance_measured:
                sources += ", classical VO's by its closure"
            sigma = math.degrees(math.sqrt(fusion.variances[2]))
            classical = {"classical VO rotation sigma (deg)": f"{sigma:.3g}"}
        return {
            "rotation weight of the refinement": f"{fusion.last_weights[1]:.2f}",
            "rotation weight of the classical VO": f"{fusion.last_weights[2]:.2f}",
            "classical VO rotation mismatches left out (frames)": str(fusion.mismatches),
            "rotation variances from": sources,
            "network rotation sigma (deg)": f"{network:.3g}",
            **classical,
            "rotation sigma the network shares with the refinement (deg)": f"{shared:.3g}",
            "network rotation offset removed (deg)": f"{offset:.3g}",
            "network rotation gain (x, y, z)": ", ".join(f"{g:.2f}" for g in fusion.gain.gain),
            "fused rotation sigma (deg, odometry covariance)": f"{fused:.3g}",
            **self.direction_diagnostics(),
        }

    def direction_diagnostics(self) -> dict[str, str]:
        fusion = self.direction_fusion
        if not fusion.three_cornered:  # the network's translation is kept until then
            return {}
        network = math.degrees(math.sqrt(fusion.variances[0]))
        offset = math.degrees(math.asin(min(1.0, float(np.linalg.norm(fusion.bias.bias)))))
        limit = math.degrees(fusion.max_sigma)
        window = self.window_direction
        chained = f"{window.angle_deg:.0f} deg from the refined over {window.frames} frames"
        if fusion.usable:
            source = "fused"
        elif self._keyframe_translation():
            source = f"the refined translation (sigmas above {limit:.0f} deg; network {chained})"
        else:
            source = f"the network's (sigmas above {limit:.0f} deg; network {chained})"
        return {
            "translation direction": source,
            "translation direction weight of the refinement": f"{fusion.last_weights[1]:.2f}",
            "translation direction weight of the classical VO": f"{fusion.last_weights[2]:.2f}",
            "network translation direction sigma (deg)": f"{network:.3g}",
            "network translation direction offset removed (deg)": f"{offset:.3g}",
        }

    def length_diagnostics(self) -> dict[str, str]:
        anchor = self.length_anchor
        if not (self.config.anchor_length and anchor.frames):
            return {}
        out = {"translation length ratio (refined / network)": f"{anchor.ratio:.3g}"}
        fusion = self.length_fusion
        if self._fuses_length() and fusion.three_cornered:
            weights = fusion.last_weights
            out["translation length change weight of the refinement"] = f"{weights[1]:.2f}"
            out["translation length change weight of the classical VO"] = f"{weights[2]:.2f}"
            out["translation length weight of the network's (Kalman gain)"] = (
                f"{fusion.last_pull:.2f}"
            )
        return out

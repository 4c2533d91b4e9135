"""The translation's length from frame to frame: the network's (anchored to the depth, see
`length_anchor.py`), steadied by the refinement's and classical VO's changes of length.

Measured against ground truth on KITTI (`benchmarks/RESULTS.md`), the network's length changes
from one frame to the next by 8-11 % (rms of the log ratio) while the car's speed hardly
changes, and it wanders (+-35 % over about a second on KITTI 06); that is most of the 5-frame
ATE there, which a constant length would cut by 40 %. Two more estimates of how much longer a motion
is than the one before: the refined translations' (aligned with the keyframe's depth), and
classical VO's relative scale from the points both pairs triangulate in their shared frame
(`classical_vo.length_ratio`): 3-8 % on full-size KITTI frames, 9-32 % on small synthetic ones,
tens of percent where a handheld camera hardly moves between frames.

The three frame-to-frame log ratios are averaged by inverse variance. The variances are
estimated online from how much they disagree (a three-cornered hat, `three_cornered.py`, as the
rotation and the translation's direction are fused), but not among these three: the network's
and the refined length err together (both follow the depth network's scale, which changes with
the scene; on KITTI 06 both wave by +-35 % over about 15 frames, correlation 0.35 of their
steps), and a hat over them charges that shared error to the classical estimate, which then got
a weight of 0.12 where its steps err by 3 % against the network's 11 %. The fourth corner is
the steady-speed assumption: a step of zero, whose error (the true change of speed) is
independent of every camera's error. Two hats, network / steady / classical and refined /
steady / classical, give each estimate's variance free of the shared error, each over the
frames with its three steps (the network's hat does not wait for a refined step: on KITTI 06 the
refinement falls back on 7 of the first 11 frames, and the length stayed the network's for 12
frames, over half of the clip's 5-frame ATE; the refined step is weighed once its own hat has
its frames); the steady assumption itself is not averaged in: it would
steady a car at constant speed further (KITTI 06's 5-frame ATE 0.045 -> 0.033 on the clean run)
but lags wherever the speed changes (the synthetic field's Sim(3) ATE 0.35 -> 0.64,
`benchmarks/RESULTS.md`). The classical claim (the squared standard error of its median) is
2-70x too small depending on the camera (`benchmarks/length_ratio_calibration.py`), so only its
ratio to the average claim weighs a frame. The published length chains these steps and is pulled
towards the network's own, so that beyond some frames it keeps the network's (the depth's) scale
and the chain cannot drift away. How far is a Kalman filter's gain: the chain is a random walk
whose steps have the fused step's variance, the network's log length measures it, and that
measurement's error variance is the running mean of the squared innovations (the network's log
length less the chain's prediction) less the prediction's variance, at least a quarter of the
network's step variance. The network's length errs slowly (the depth's scale wanders with the
scene), so consecutive measurements are not independent: for an AR(1) error of level variance L and
correlation rho the step variance is 2 L (1 - rho), which gives rho from the network's step
variance (the hat's, free of the chain's errors) and L, and the measurement variance counts (1 +
rho) / (1 - rho) times (at most `MAX_CORRELATION`), the information such an error leaves per frame.
A step only the network gives (no classical ratio: a fault, a gap) opens the chain's variance to a
measurement's: the network's step jumps at faults (KITTI 00 with `benchmarks/faults.py`: +0.35 to
+0.5 in log), and the chain returns to the network's scale over the next frames instead of keeping
the jump. The gain is at most ``pull``. On KITTI, whose refined classical ratios err by 1 % a frame
while the network's length wanders by 10 % (rho 0.78-0.88, median over the clip), it settles at
0.01-0.03 (0.03-0.09 with every frame counted), which a fixed pull could not: 0.05 everywhere let
the synthetic street's whole-trajectory errors grow by up to 50 %, where the network's length, on
the world it learnt, earns a gain of 0.6-0.8 (its error jitters from frame to frame: rho 0). That
gain, uncapped, cut the synthetic clips' whole-trajectory errors by up to 14 % but raised their
5-frame ATE by up to 11 % (the network's frame-to-frame jitter passes), so it is capped at 0.2, the
fixed pull it replaced (`benchmarks/RESULTS.md`). Until ``min_classical`` frames with a
classical step have been seen the length is the network's, and on frames without a classical step
the step is.

A length ratio is only defined while the camera moves: frames whose network length is below
``min_speed_ratio`` times its running mean (a stop, a pure rotation) keep the network's length
and restart the chain; classical ratios beyond ``max_ratio`` either way are not used (a pair
that went wrong; a vehicle does not double its speed from one frame to the next).
"""

from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.three_cornered import ThreeCorneredHat

MAX_CORRELATION = 0.95
"""The largest frame-to-frame correlation of the network length's error counted (its
measurement variance at most 39x the level's)."""


class LengthFusion:
    """Fused translation length of each frame (the network's units).

    Args:
        pull: the most weight of the network's log length in a frame's (the Kalman gain's
            cap; the weight until the variances are measured).
        max_ratio: classical ratios beyond this factor either way are not used.
        min_speed_ratio: frames whose network length is below this fraction of its running
            mean keep it and restart the chain.
        window, min_ratio, min_classical: `ThreeCorneredHat`'s arguments (variances of log
            ratios).
    """

    def __init__(
        self,
        pull: float = 0.2,
        max_ratio: float = 2.0,
        min_speed_ratio: float = 0.25,
        window: float = 30.0,
        min_ratio: float = 0.1,
        min_classical: int = 5,
    ) -> None:
        if not (0 < pull <= 1 and max_ratio > 1 and 0 <= min_speed_ratio < 1):
            raise InputError(
                "pull must be in (0, 1], max_ratio > 1 and min_speed_ratio in [0, 1), got "
                f"{pull}, {max_ratio}, {min_speed_ratio}"
            )
        self.pull, self.max_ratio = float(pull), float(max_ratio)
        self.min_speed_ratio, self.window = float(min_speed_ratio), float(window)
        self.network_hat = ThreeCorneredHat(window, min_ratio, min_classical)
        """Variances of the network's step, the steady-speed step (0) and the classical one."""
        self.refined_hat = ThreeCorneredHat(window, min_ratio, min_classical)
        """Variances of the refined step, the steady-speed step and the classical one."""
        self.reset()

    @property
    def three_cornered(self) -> bool:
        """Whether the variances are measured (the classical ratio is in use)."""
        return self.network_hat.three_cornered

    def reset(self) -> None:
        """Forget everything (a new model or camera)."""
        self.network_hat.reset()
        self.refined_hat.reset()
        self.restart()
        self._speed, self._seen = 0.0, 0
        self._innovation, self._innovations = 0.0, 0  # running mean squared innovation
        self.last_weights = (1.0, 0.0, 0.0)
        """Weights of the network's, the refined and the classical ratio in the last step."""
        self.last_pull = self.pull
        """Weight of the network's log length in the last frame's (the Kalman gain)."""

    def restart(self) -> None:
        """Forget the previous frame (a gap in the stream): the next length is the network's."""
        self._log_length: float | None = None
        self._variance = math.nan  # of the log length (the Kalman filter's)
        self._previous: tuple[float, float | None] | None = None  # log network, log refined

    def fuse(
        self,
        network_length: float,
        refined_length: float | None,
        classical_ratio: float,
        classical_variance: float,
    ) -> float:
        """This frame's length.

        Args:
            network_length: the network's (anchored) translation length, >= 0.
            refined_length: the refined translation's length, or None where the refinement
                fell back.
            classical_ratio: classical VO's length over the previous frame's (NaN: none).
            classical_variance: its claimed variance in log space (NaN: the average claim).

        A non-finite or negative length raises InputError and leaves the state as it was.
        """
        lengths = [network_length] + ([] if refined_length is None else [refined_length])
        if not all(math.isfinite(x) and x >= 0 for x in lengths):
            raise InputError(f"translation lengths must be finite and >= 0, got {lengths}")
        self._seen += 1
        self._speed += max(1 / self.window, 1 / self._seen) * (network_length - self._speed)
        self.last_weights = (1.0, 0.0, 0.0)
        if network_length <= self.min_speed_ratio * self._speed or network_length == 0:
            self.restart()
            return network_length
        log_network = math.log(network_length)
        log_refined = math.log(refined_length) if refined_length else None
        previous, self._previous = self._previous, (log_network, log_refined)
        if previous is None or self._log_length is None:
            self._log_length = log_network
            return network_length
        steps = np.array([log_network - previous[0], 0.0, 0.0])
        refined = log_refined is not None and previous[1] is not None
        classical = (
            math.isfinite(classical_ratio)
            and 1 / self.max_ratio <= classical_ratio <= self.max_ratio
        )
        if refined:
            steps[1] = log_refined - previous[1]
        if classical:
            steps[2] = math.log(classical_ratio)
        if classical:  # each step there is against the steady speed (0) and the classical
            hats = [(self.network_hat, 0)] + ([(self.refined_hat, 1)] if refined else [])
            for hat, i in hats:
                d_steady, d_classical = steps[i] ** 2, (steps[i] - steps[2]) ** 2
                hat.update(d_steady, 1.0, d_classical, steps[2] ** 2, classical_variance)
        step, pull = steps[0], self.pull
        if self.three_cornered:
            weights, step_variance = self._weights(refined, classical, classical_variance)
            self.last_weights = tuple(float(w) for w in weights)
            step = float(weights @ steps)
            innovation = log_network - (self._log_length + step)
            pull = self._gain(step_variance, innovation, network_only=not classical)
        self.last_pull = pull
        self._log_length = (1 - pull) * (self._log_length + step) + pull * log_network
        return math.exp(self._log_length)

    def _weights(
        self, refined: bool, classical: bool, classical_variance: float
    ) -> tuple[np.ndarray, float]:
        """(3,) inverse-variance weights of the network's, the refined and the classical step
        (0 for a step there is none of), and the weighted step's variance."""
        var_net, _, var_cls = self.network_hat.variances
        inverse = np.array([1 / var_net, 0.0, 0.0])
        if classical:
            inverse[2] = 1 / (var_cls * self.network_hat.claim_ratio(classical_variance))
        if refined and classical and self.refined_hat.three_cornered:
            inverse[1] = 1 / self.refined_hat.variances[0]
        total = float(inverse.sum())
        return inverse / total, 1 / total

    def _gain(self, step_variance: float, innovation: float, network_only: bool) -> float:
        """The Kalman gain of this frame's network log length (at most ``pull``), from the
        chained step's variance and the innovation (network less prediction), which is then
        added to the running mean; a ``network_only`` step (no classical ratio) opens the
        chain's variance to a measurement's."""
        var_net = self.network_hat.variances[0]  # of the network's step
        prior = (var_net if math.isnan(self._variance) else self._variance) + step_variance
        measured = var_net
        if self._innovations:
            level = max(self._innovation - prior, var_net / 4)
            rho = min(max(1 - var_net / (2 * level), 0.0), MAX_CORRELATION)
            measured = level * (1 + rho) / (1 - rho)
            if network_only:
                prior = max(prior, measured)
        gain = min(prior / (prior + measured), self.pull)
        self._variance = (1 - gain) * prior
        self._innovations += 1
        rate = max(1 / self.window, 1 / self._innovations)
        self._innovation += rate * (innovation**2 - self._innovation)
        return gain

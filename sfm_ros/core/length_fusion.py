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

The three frame-to-frame log ratios are averaged by inverse variance, the variances estimated
online from how much they disagree (`three_cornered.py`, as the rotation and the translation's
direction are fused). The classical claim (the squared standard error of its median) is 2-70x
too small depending on the camera (`benchmarks/length_ratio_calibration.py`), so only its ratio
to the average claim weighs a frame. Where the network's and the refined ratio err together
(both follow the networks), the classical estimate looks worse than it is and the fusion leans
on it less than it could. The published length chains these
steps and is pulled towards the network's own by ``pull`` per frame: beyond a few frames it
keeps the network's (the depth's) scale, and the chain cannot drift away. A longer memory
steadied the length no better and let its scale wander: at 0.05 instead of 0.2, the synthetic
street's 5-frame ATE was the same and its whole-trajectory errors about 30 % higher
(`benchmarks/RESULTS.md`). Until the classical estimate has been seen on ``min_classical``
frames, and on frames without it, the length is the network's (the refined ratio alone has no
measured variance).

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


class LengthFusion(ThreeCorneredHat):
    """Fused translation length of each frame (the network's units).

    Args:
        pull: weight of the network's log length in each frame's (1 / frames of memory).
        max_ratio: classical ratios beyond this factor either way are not used.
        min_speed_ratio: frames whose network length is below this fraction of its running
            mean keep it and restart the chain.
        **hat: `ThreeCorneredHat`'s arguments (variances of log ratios).
    """

    def __init__(
        self,
        pull: float = 0.2,
        max_ratio: float = 2.0,
        min_speed_ratio: float = 0.25,
        **hat: float | int,
    ) -> None:
        if not (0 < pull <= 1 and max_ratio > 1 and 0 <= min_speed_ratio < 1):
            raise InputError(
                "pull must be in (0, 1], max_ratio > 1 and min_speed_ratio in [0, 1), got "
                f"{pull}, {max_ratio}, {min_speed_ratio}"
            )
        self.pull, self.max_ratio = float(pull), float(max_ratio)
        self.min_speed_ratio = float(min_speed_ratio)
        super().__init__(**hat)

    def reset(self) -> None:
        """Forget everything (a new model or camera)."""
        super().reset()
        self.restart()
        self._speed, self._seen = 0.0, 0
        self.last_weights = (1.0, 0.0, 0.0)
        """Weights of the network's, the refined and the classical ratio in the last step."""

    def restart(self) -> None:
        """Forget the previous frame (a gap in the stream): the next length is the network's."""
        self._log_length: float | None = None
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
        if refined:
            d_nr, d_nc, d_rc = ((steps[a] - steps[b]) ** 2 for a, b in ((0, 1), (0, 2), (1, 2)))
            if classical:
                self.update(d_nr, 1.0, d_nc, d_rc, classical_variance)
            else:
                self.update(d_nr, 1.0)
        step = steps[0]
        if classical and self.three_cornered:
            weights, _ = self.weights(1.0, True, classical_variance, refined)
            self.last_weights = tuple(float(w) for w in weights)
            step = float(weights @ steps)
        self._log_length = (1 - self.pull) * (self._log_length + step) + self.pull * log_network
        return math.exp(self._log_length)

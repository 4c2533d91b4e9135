"""The translation's length anchored to the depth: the pose network's length, rescaled by how
much longer the refined translations have been over the last frames.

Measured per frame against ground truth (`benchmarks/RESULTS.md`), the two lengths err in
opposite ways. The pose network's changes little from one frame to the next (3-5 % of log
length) but its scale wanders slowly with the scene, by up to a factor of 1.6 over KITTI 00's
turns, and that wander is most of the trajectory's error. The refinement's length, aligned with
the keyframe's depth map, jumps from frame to frame (13-19 %) but wanders less. Their ratio,
averaged over the last frames (an exponential mean of each length, weights ``smoothing``, so
that longer steps count more), is a slow correction that keeps the network's smoothness and
takes the depth's scale: the published translation is then in the depth's units, which the
depth-based scale source (``camera_height``) assumes.

Only frames whose refinement succeeded and whose network and refined translations are at
least ``min_speed_ratio`` of their means update it (a stop's lengths are noise); a single
refined length counts at most ``max_ratio`` times what the ratio so far predicts, either way
(the ratio itself is not bounded: the two networks' scales may differ by any factor on a new
camera).
"""

from __future__ import annotations

import math

from sfm_ros.core.errors import InputError


class LengthAnchor:
    """Ratio of refined to network translation lengths over the last frames.

    Args:
        smoothing: weight of a new frame in the exponential means (about 1 / frames);
            a running mean until the frames since the reset make it smaller.
        min_speed_ratio: frames whose network length is below this fraction of its mean do not
            update the ratio.
        max_ratio: bound on one frame's refined length over the one the ratio so far predicts
            (and its inverse).
        network_stop_ratio: with a refined length below ``min_speed_ratio`` of its mean, a
            network length below this fraction of its mean makes a stop (`stop`).
        stop_frames: or that many frames in a row with such a refined length (`stop`).
    """

    def __init__(
        self,
        smoothing: float = 0.1,
        min_speed_ratio: float = 0.25,
        max_ratio: float = 4.0,
        network_stop_ratio: float = 0.5,
        stop_frames: int = 3,
    ) -> None:
        if not (0 < smoothing <= 1 and 0 <= min_speed_ratio < 1 and max_ratio > 1) or not (
            0 <= network_stop_ratio <= 1 and stop_frames >= 1
        ):
            raise InputError(
                "smoothing must be in (0, 1], min_speed_ratio in [0, 1), max_ratio > 1, "
                "network_stop_ratio in [0, 1] and stop_frames >= 1, got "
                f"{smoothing}, {min_speed_ratio}, {max_ratio}, {network_stop_ratio}, {stop_frames}"
            )
        self.smoothing, self.min_speed_ratio = float(smoothing), float(min_speed_ratio)
        self.max_ratio, self.network_stop_ratio = float(max_ratio), float(network_stop_ratio)
        self.stop_frames = int(stop_frames)
        self.reset()

    def reset(self) -> None:
        """Forget the means (a new model or camera): the ratio is 1 until the next update."""
        self._network = self._refined = 0.0
        self._low = 0  # frames in a row, up to the last update, with a low refined length
        self.frames = 0
        """Frames that updated the ratio since the reset."""

    @property
    def ratio(self) -> float:
        """Refined over network length, 1.0 before the first update."""
        return self._refined / self._network if self.frames else 1.0

    def stop(self, network_length: float, refined_length: float) -> bool:
        """Whether the camera stands still: the refined length is below ``min_speed_ratio``
        of the refined lengths' mean, and either the network's is below
        ``network_stop_ratio`` of its own or the refined length has been that low for
        ``stop_frames`` frames in a row, this one included. Aligned with the keyframe, the
        refinement sees a still scene as such, where the pose network slows down but creeps
        on (at 13-20 % of its speed on KITTI) or does not slow down at all (on the phone
        video down the alley it keeps its speed). One low refined length is not enough: at
        30 Hz single refined lengths scatter from 0.04 to 4 times their median while the
        camera moves."""
        return self._refined_low(refined_length) and (
            network_length < self.network_stop_ratio * self._network
            or self._low + 1 >= self.stop_frames
        )

    def _refined_low(self, refined_length: float) -> bool:
        return self.frames > 0 and refined_length < self.min_speed_ratio * self._refined

    def update(self, network_length: float, refined_length: float | None) -> float:
        """Add one frame's lengths (any units, the same for every frame) and return the ratio.

        Args:
            network_length: length of the network's translation.
            refined_length: length of the refined translation, or None where the refinement
                fell back.

        Non-finite or negative lengths raise InputError and leave the state unchanged.
        """
        lengths = [network_length] + ([] if refined_length is None else [refined_length])
        if not all(math.isfinite(x) and x >= 0 for x in lengths):
            raise InputError(f"translation lengths must be finite and >= 0, got {lengths}")
        stop = refined_length is not None and self.stop(network_length, refined_length)
        low = refined_length is not None and self._refined_low(refined_length)
        self._low = self._low + 1 if low else 0
        if refined_length is None or network_length <= 0:
            return self.ratio
        if self.frames and (network_length < self.min_speed_ratio * self._network or stop):
            return self.ratio
        if self.frames:  # within max_ratio of the ratio so far, either way
            expected = self.ratio * network_length
            refined_length = min(
                max(refined_length, expected / self.max_ratio), self.max_ratio * expected
            )
        self.frames += 1
        gain = max(self.smoothing, 1.0 / self.frames)
        self._network += gain * (network_length - self._network)
        self._refined += gain * (refined_length - self._refined)
        return self.ratio

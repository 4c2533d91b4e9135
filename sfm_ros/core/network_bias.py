"""The pose network's systematic errors, measured against geometry: the steady offset of its
translation's direction and of its rotation, and the gain of its rotation.

A pose network trained elsewhere (synthetic data, another camera) errs on a new camera by an
offset that changes slowly from frame to frame. On KITTI 06 the packaged model's direction is
2.1 degrees off (median), nearly all of it the same vertical offset; its rotation error keeps
0.5-0.98 of itself from one frame to the next (lag-1 correlation) on all five benchmark clips.
The fusions (`direction_fusion.py`, `rotation_fusion.py`) cannot remove such an offset: they
weigh the network by its whole error and average the offset in.

The offset of the network's estimate from the geometric one (the refined and the classical
estimate, weighed as the fusion weighed them) is tracked as a per-axis median over the last
``window`` frames and removed from the network's estimate before it is fused. An axis's
offset is applied only where it is significant against its own scatter (`SIGNIFICANCE`), so
that geometry noisier than the network (a classical direction on a turning synthetic field,
24 degrees rms) does not move it. Measured with the node's pipeline (`benchmarks/RESULTS.md`):
KITTI 06's published direction 1.53 -> 1.08 degrees (median) and 5-frame ATE 0.053 -> 0.047,
the synthetic clips unchanged. The rotation's offset took KITTI 06's rotation error RE
0.00253 -> 0.00226 (the synthetic street's 0.00222 -> 0.00138, 7-Scenes' 0.00661 -> 0.00639;
KITTI 00 and the field within their run-to-run spread).

The rotation's gain (`RotationGain`): a pose network turns by what it learnt a turn looks like
in pixels. On another camera (another field of view) or in sharper turns than it saw, it falls
short by a steady factor: the packaged model's yaw on KITTI 00 is 0.74 of the truth (0.98
correlated), and on axes it does not see it says noise. The per-axis slope of the geometric
rotation on the network's rotation over the last frames, applied before the offset, takes both
out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp, so3_log

MAD_TO_SIGMA = 1.4826
"""A normal distribution's standard deviation over its median absolute deviation."""
MEDIAN_EFFICIENCY = 1.2533
"""The standard error of a normal sample's median over that of its mean (sqrt(pi / 2))."""
SIGNIFICANCE = 3.0
"""An axis's offset is applied only beyond this many standard errors, and shrunk by
``1 - (SIGNIFICANCE * se / b)^2`` (positive part): simulated with geometry five times noisier
than the network's direction and a fifth of its directions wild, 2 standard errors still moved
an unbiased network's direction (worst of 8 seeds +0.09 degrees median), 3 did not."""


def _unit(t: np.ndarray) -> np.ndarray | None:
    """(3,) unit vector along ``t``; None if ``t`` is zero or not finite."""
    t = np.asarray(t, dtype=np.float64)
    norm = float(np.linalg.norm(t))
    return t / norm if np.isfinite(norm) and norm > 0 else None


def _window(
    window: int, min_frames: int, significance: float, least: int = 1
) -> tuple[int, int, float]:
    """The settings of a running window, checked: InputError unless ``window`` >= ``least``,
    ``min_frames`` in [``least``, ``window``] and ``significance`` >= 0."""
    if window < least or not least <= min_frames <= window or not significance >= 0:
        raise InputError(
            f"window must be >= {least}, min_frames in [{least}, window] and significance >= 0, "
            f"got {window}, {min_frames}, {significance}"
        )
    return int(window), int(min_frames), float(significance)


def _weighted_geometric(
    to_vector: Callable[[np.ndarray], np.ndarray],
    R_refined: np.ndarray | None,
    R_classical: np.ndarray | None,
    weights: tuple[float, float],
) -> np.ndarray | None:
    """The refined and classical (3, 3) rotations as (3,) vectors (``to_vector``), averaged
    with ``weights``; None where no finite one has weight."""
    parts = [
        (w, to_vector(np.asarray(R, dtype=np.float64)))
        for R, w in ((R_refined, weights[0]), (R_classical, weights[1]))
        if R is not None and np.isfinite(w) and w > 0
    ]
    parts = [(w, a) for w, a in parts if np.isfinite(a).all()]
    total = sum(w for w, _ in parts)
    return sum(w * a for w, a in parts) / total if parts and total > 0 else None


class SteadyOffset:
    """Per-axis running median of (3,) offsets, shrunk by its standard error.

    Args:
        window: frames the median is taken over.
        min_frames: frames needed before any offset is applied.
        significance: standard errors an axis's offset must exceed (`SIGNIFICANCE`; 0: the
            plain median).
    """

    def __init__(
        self, window: int = 30, min_frames: int = 5, significance: float = SIGNIFICANCE
    ) -> None:
        self.window, self.min_frames, self.significance = _window(window, min_frames, significance)
        self.reset()

    def reset(self) -> None:
        """Forget the offsets (a new model or camera)."""
        self._offsets: deque[np.ndarray] = deque(maxlen=self.window)

    def add(self, offset: np.ndarray) -> None:
        """Add one frame's (3,) offset."""
        self._offsets.append(np.asarray(offset, dtype=np.float64))

    @property
    def bias(self) -> np.ndarray:
        """(3,) median offset, shrunk by its standard error; zeros until ``min_frames``
        offsets were seen."""
        if len(self._offsets) < self.min_frames:
            return np.zeros(3)
        offsets = np.stack(self._offsets)
        median = np.median(offsets, axis=0)
        mad = np.median(np.abs(offsets - median), axis=0) * MAD_TO_SIGMA
        se2 = (MEDIAN_EFFICIENCY * mad) ** 2 / len(offsets)
        with np.errstate(invalid="ignore", divide="ignore"):
            shrink = np.where(median**2 > 0, 1 - self.significance**2 * se2 / median**2, 0.0)
        return median * np.clip(shrink, 0.0, 1.0)


class DirectionBias(SteadyOffset):
    """Running offset of the network's unit translation direction (optical frame) from the
    geometric one (`SteadyOffset`'s arguments)."""

    def correct(self, t_network: np.ndarray) -> np.ndarray:
        """``t_network`` (3,) with its direction moved by minus the offset, its length kept;
        returned as it is when it is zero or not finite, or there is no offset."""
        u, bias = _unit(t_network), self.bias
        if u is None or not bias.any():
            return np.asarray(t_network, dtype=np.float64)
        corrected = _unit(u - bias)
        if corrected is None:
            return np.asarray(t_network, dtype=np.float64)
        return corrected * float(np.linalg.norm(t_network))

    def update(
        self,
        t_network: np.ndarray,
        t_refined: np.ndarray | None,
        t_classical: np.ndarray | None,
        weights: tuple[float, float],
    ) -> None:
        """Add this frame's offset: the network's uncorrected direction minus the refined and
        classical directions averaged with ``weights`` (the fusion's, refined and classical);
        nothing is added where no geometric direction has weight."""
        u = _unit(t_network)
        parts = [
            (w, _unit(t))
            for t, w in ((t_refined, weights[0]), (t_classical, weights[1]))
            if t is not None and w > 0
        ]
        parts = [(w, v) for w, v in parts if v is not None and np.isfinite(w)]
        if u is None or not parts:
            return
        reference = _unit(sum(w * v for w, v in parts))
        if reference is not None:
            self.add(u - reference)


class RotationBias(SteadyOffset):
    """Running offset of the network's rotation from the geometric one, in the tangent space at
    the network's rotation (axis-angle, radians; `SteadyOffset`'s arguments)."""

    def correct(self, R_network: np.ndarray) -> np.ndarray:
        """(3, 3) ``R_network`` turned by the offset; returned as it is when there is none."""
        R = np.asarray(R_network, dtype=np.float64)
        bias = self.bias
        return R @ so3_exp(bias) if bias.any() else R

    def update(
        self,
        R_network: np.ndarray,
        R_refined: np.ndarray | None,
        R_classical: np.ndarray | None,
        weights: tuple[float, float],
    ) -> None:
        """Add this frame's offset: the axis-angle from the network's uncorrected (3, 3)
        rotation to the refined and classical ones, averaged with ``weights`` (the fusion's,
        refined and classical); nothing is added where no geometric rotation has weight."""
        R_n = np.asarray(R_network, dtype=np.float64)
        offset = _weighted_geometric(lambda R: so3_log(R_n.T @ R), R_refined, R_classical, weights)
        if offset is not None:
            self.add(offset)


MAX_GAIN = 2.0
"""The largest rotation gain applied: a network that sees half of the turn. A limit of 4 was
reached on 7-Scenes' roll, which the packaged network hardly sees, with no gain in accuracy."""


class RotationGain:
    """Per-axis gain of the network's rotation against the geometric one (axis-angle): the
    least-squares slope of the geometric rotation on the network's over the last ``window``
    frames, about their means (a steady offset, or a steady turn, is not taken for a gain:
    `RotationBias` removes what stays after the gain), shrunk towards 1 as `SteadyOffset`
    shrinks its offset towards 0 (``1 - (significance * se / (slope - 1))^2``, positive part),
    the slope limited to [0, `MAX_GAIN`] before it is shrunk: on an axis the network hardly
    moves, a slope that passes the test by chance is huge, and would otherwise jump to a limit.
    The gain scales the network's whole rotation. A gain under 1 is the best linear estimate of
    a rotation the network only partly sees (0: an axis where it says noise).

    Args:
        window: frames the slope is fitted over.
        min_frames: frames needed before any gain is applied.
        significance: standard errors the slope must differ from 1 by.
    """

    def __init__(
        self, window: int = 30, min_frames: int = 10, significance: float = SIGNIFICANCE
    ) -> None:
        self.window, self.min_frames, self.significance = _window(
            window, min_frames, significance, least=3
        )
        self.reset()

    def reset(self) -> None:
        """Forget the gains (a new model or camera)."""
        self._pairs: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.window)

    @property
    def gain(self) -> np.ndarray:
        """(3,) gains per axis; ones until ``min_frames`` frames were seen, and on an axis
        whose network rotation did not vary."""
        gain = np.ones(3)
        if len(self._pairs) < self.min_frames:
            return gain
        network, geometric = (np.stack(x) for x in zip(*self._pairs, strict=True))
        network, geometric = network - network.mean(axis=0), geometric - geometric.mean(axis=0)
        sxx = np.sum(network**2, axis=0)
        for axis in np.flatnonzero(sxx > 0):
            x, y = network[:, axis], geometric[:, axis]
            slope = float(x @ y / sxx[axis])
            residual = y - slope * x
            se2 = float(residual @ residual) / (len(x) - 2) / sxx[axis]
            if slope != 1 and np.isfinite(se2):
                shrink = max(0.0, 1 - self.significance**2 * se2 / (slope - 1) ** 2)
                gain[axis] = 1 + (min(max(slope, 0.0), MAX_GAIN) - 1) * shrink
        return gain

    def correct(self, R_network: np.ndarray) -> np.ndarray:
        """(3, 3) ``R_network`` with its axis-angle scaled by the gains."""
        R = np.asarray(R_network, dtype=np.float64)
        gain = self.gain
        return R if (gain == 1).all() else so3_exp(gain * so3_log(R))

    def update(
        self,
        R_network: np.ndarray,
        R_refined: np.ndarray | None,
        R_classical: np.ndarray | None,
        weights: tuple[float, float],
    ) -> None:
        """Add this frame: the network's uncorrected (3, 3) rotation and the refined and
        classical ones averaged with ``weights`` (the fusion's, refined and classical), as
        axis-angles; nothing is added where no geometric rotation has weight."""
        network = so3_log(np.asarray(R_network, dtype=np.float64))
        geometric = _weighted_geometric(so3_log, R_refined, R_classical, weights)
        if geometric is not None and np.isfinite(network).all():
            self._pairs.append((network, geometric))

"""Whether the pose network's translation direction holds over a window of frames.

At a high frame rate with little motion per frame (a camera at 30 Hz), no frame-to-frame
direction is measurable: the network's, the refined and the classical one disagree by tens of
degrees (`direction_fusion.py` then says `directions_unmeasurable`). That does not say whose
direction is wrong. Over a window of frames the camera moves far enough for the geometry to
tell: the refined motions, aligned with a keyframe, chain into a displacement whose error does
not grow with the window, and it is compared with the network's motions chained over the same
frames. Measured over 15 frames (`benchmarks/RESULTS.md`): on 7-Scenes (handheld, the network
trained on driving) the two disagree by 97 degrees (median; the network's is 107 degrees off
the truth, the refined one 34), on a phone video driving slowly down an alley by 8, and on
KITTI and synthetic streets by 1-2.

`WindowDirection.agrees` is False while the median angle of the last windows is above
``max_angle_deg``: then the refined translation is the better one to publish.
"""

from __future__ import annotations

import math
from collections import deque
from functools import reduce

import numpy as np

from sfm_ros.core.errors import InputError


class WindowDirection:
    """Angle between the network's and the refined displacement over the last ``frames``.

    Args:
        frames: motions chained into one window's displacement.
        windows: the median is over the angles of this many latest windows (one a frame).
        max_angle_deg: the network's direction agrees while that median is at most this.
    """

    def __init__(self, frames: int = 15, windows: int = 15, max_angle_deg: float = 30.0):
        if frames < 1 or windows < 1 or not 0 < max_angle_deg < 180:
            raise InputError(
                f"frames and windows must be >= 1 and max_angle_deg in (0, 180), got {frames}, "
                f"{windows}, {max_angle_deg}"
            )
        self.frames, self.max_angle = int(frames), math.radians(max_angle_deg)
        self._motions: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.frames)
        self._angles: deque[float] = deque(maxlen=int(windows))

    def reset(self) -> None:
        """Forget the motions and the angles (a new model or camera)."""
        self._motions.clear()
        self._angles.clear()

    def restart(self) -> None:
        """Forget the motions (a gap: a window must not span it); the angles stay."""
        self._motions.clear()

    @property
    def angle_deg(self) -> float:
        """Median angle (degrees) of the last windows; NaN before the first full window."""
        return math.degrees(float(np.median(self._angles))) if self._angles else math.nan

    @property
    def agrees(self) -> bool:
        """Whether the network's direction holds over the windows (True until measured)."""
        return not self._angles or float(np.median(self._angles)) <= self.max_angle

    def add(self, T_network: np.ndarray, T_refined: np.ndarray | None) -> None:
        """Add one frame's (4, 4) motions; a frame without a refined motion (None) restarts
        the window. Bad motions (not (4, 4), not finite) raise InputError and restart it."""
        if T_refined is None:
            self.restart()
            return
        T_n, T_r = (np.asarray(T, dtype=np.float64) for T in (T_network, T_refined))
        if T_n.shape != (4, 4) or T_r.shape != (4, 4):
            self.restart()
            raise InputError(f"motions must be (4, 4), got {T_n.shape} and {T_r.shape}")
        if not (np.isfinite(T_n).all() and np.isfinite(T_r).all()):
            self.restart()
            raise InputError("window direction needs finite motions")
        self._motions.append((T_n, T_r))
        if len(self._motions) < self.frames:
            return
        t_n, t_r = (_displacement([m[k] for m in self._motions]) for k in (0, 1))
        norms = np.linalg.norm(t_n) * np.linalg.norm(t_r)
        if norms > 0:
            self._angles.append(math.atan2(np.linalg.norm(np.cross(t_n, t_r)), t_n @ t_r))


def _displacement(motions: list[np.ndarray]) -> np.ndarray:
    """(3,) translation of the chained (4, 4) motions."""
    return reduce(np.matmul, motions)[:3, 3]

"""Exponential smoothing of the camera's translational velocity: the inertia of a vehicle.

A monocular pose network estimates each frame-to-frame motion on its own, and the length of its
translations wanders (by about 10 % on KITTI, 5 % from one frame to the next), although a
car's speed barely changes within a tenth of a second. Smoothing the translational velocity over
a time constant removes much of that; rotation is left as measured (smoothing it lags every
turn). Scale-free: it works in network units as in metres.

Not for handheld cameras or drones, whose speed changes within a few frames: there the lag
costs more than the jitter (see `benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import math

import numpy as np

from sfm_ros.core.errors import InputError


class VelocitySmoother:
    """Smooths the translation of `T_prev_cur` (4, 4) motions in the camera optical frame.

    Each motion becomes a velocity ``v = t / dt`` (per second); the estimate follows
    ``v_hat += g (v - v_hat)`` with ``g = max(1 - exp(-dt / time_constant_s), 1 / n)``, n the
    motions since the last reset: a running mean until the time constant takes over, so the
    start is not tied to the first (least reliable) motion. The output keeps the measured
    rotation and moves ``v_hat * dt``.

    Args:
        time_constant_s: seconds; 0 turns the smoothing off (motions pass unchanged).
    """

    def __init__(self, time_constant_s: float) -> None:
        if not (time_constant_s >= 0 and math.isfinite(time_constant_s)):
            raise InputError(f"time_constant_s must be finite and >= 0, got {time_constant_s}")
        self.time_constant_s = float(time_constant_s)
        self.reset()

    def reset(self) -> None:
        """Forget the velocity (a new chain starts: a gap, a jump in time, a new camera)."""
        self._velocity: np.ndarray | None = None  # (3,) per second, camera optical frame
        self._count = 0

    def update(self, T_prev_cur: np.ndarray, dt_s: float) -> np.ndarray:
        """The motion since the previous frame, `dt_s` seconds ago, with its translation
        smoothed: (4, 4) float64. Raises InputError on a non-finite motion or ``dt_s <= 0``
        (the state is then unchanged)."""
        T = np.array(T_prev_cur, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"T_prev_cur must be a finite (4, 4) transform, got {T.shape}")
        if not (dt_s > 0 and math.isfinite(dt_s)):
            raise InputError(f"the time between frames must be > 0 s, got {dt_s}")
        if self.time_constant_s == 0:
            return T
        measured = T[:3, 3] / dt_s
        self._count += 1
        if self._velocity is None:
            self._velocity = measured
        else:
            gain = max(-math.expm1(-dt_s / self.time_constant_s), 1.0 / self._count)
            self._velocity = self._velocity + gain * (measured - self._velocity)
        T[:3, 3] = self._velocity * dt_s
        return T

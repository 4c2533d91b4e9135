"""Whether a frame's published rotation is the gyroscope's, and why not (`/diagnostics`).

`GyroRotation` (`gyro.py`) integrates the Imu's rate and measures how well it agrees with the
camera. The gate decides per frame: the Imu's frame must be known, with its camera <- Imu
transform; the samples must cover the frame interval; the camera's rotation must have a
measured variance to be compared with (the refined or the fused one, not the network's alone);
and the two must have agreed over `GyroRotation.min_frames` frames. Then the gyro's rotation,
its bias removed, replaces the camera's, and its variance the covariance's rotation block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sfm_ros.core.gyro import GyroRotation
from sfm_ros.core.motion_fusion import MotionSources
from sfm_ros.core.rotation_fusion import RotationFusion

USED = "used for the rotation"


@dataclass(frozen=True)
class GatedMotion:
    """A frame's motion with the gyro's rotation in it."""

    T_prev_cur: np.ndarray
    """(4, 4) the camera's translation, the gyro's rotation (bias removed)."""
    covariance: np.ndarray | None
    """(6, 6) with the rotation block the gyro's variance and no cross terms (or None)."""
    rotation_variance: float
    """The gyro's per-axis rotation variance (rad^2)."""


def _classical(sources: MotionSources) -> np.ndarray | None:
    """The frame's classical motion, None where there is none or it was left out of the
    fusion (not the camera's)."""
    return None if sources.classical_rejected else sources.classical


class GyroGate:
    """The gyroscope of one Imu stream and the per-frame decision to use it.

    Args:
        warn: ``warn(key, message)``, throttled by the caller.
    """

    def __init__(self, warn: Callable[[str, str], None]) -> None:
        self.gyro = GyroRotation()
        self.imu_frame_id: str | None = None
        """frame_id of the Imu messages received (None before the first)."""
        self.state = "no Imu received"
        """Whose the last frame's rotation is and why."""
        self._warn = warn

    @property
    def used(self) -> bool:
        """Whether the last frame's rotation is the gyroscope's."""
        return self.state == USED

    def add(self, stamp_ns: int, frame_id: str, omega_rad_s: np.ndarray) -> None:
        """One angular velocity sample (Imu frame); a new frame_id forgets the transform."""
        if self.imu_frame_id not in (None, frame_id):
            self._warn(
                "imu:frame", f"Imu frame_id changed from '{self.imu_frame_id}' to '{frame_id}'"
            )
            self.gyro.forget_extrinsics()
        self.imu_frame_id = frame_id
        self.gyro.add(stamp_ns, omega_rad_s)

    def rotations(
        self, last_stamp: int | None, stamp_ns: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The gyro's (3, 3) rotation over the frame interval with its bias (None where the
        samples do not cover it), and without it where the gyro is in use (classical VO fits its
        translation with that one), else None."""
        if last_stamp is None:
            return None, None
        R_raw = self.gyro.raw_rotation(last_stamp, stamp_ns)
        if R_raw is None or not self.gyro.consistent:
            return R_raw, None
        return R_raw, self.gyro.corrected(R_raw, (stamp_ns - last_stamp) * 1e-9)

    def apply(
        self,
        T_prev_cur: np.ndarray | None,
        covariance: np.ndarray | None,
        rotation_variance: float | None,
        R_raw: np.ndarray | None,
        dt_s: float | None,
        sources: MotionSources | None,
        rotation_fusion: RotationFusion,
    ) -> GatedMotion | None:
        """The frame's motion with the gyro's rotation (``R_raw``: bias not removed) in place
        of the camera's, or None where the gyro is not used (`state` says why). Compares the
        two and measures the gyro's bias on the way.

        Args:
            dt_s: the frame interval (None at the first frame).
            sources: the frame's estimates before fusion (None: not recorded).
            rotation_fusion: the fusion's rotation variances (the network's, where no other
                variance is given; which geometric rotation is the steadier bias reference).
        """
        gyro, T, cov = self.gyro, T_prev_cur, covariance
        if self.imu_frame_id is None:
            return None
        if gyro.R_cam_imu is None:
            self.state = f"not used: no camera <- '{self.imu_frame_id}' transform"
            return None
        self.state = "not used: no camera motion"
        if dt_s is None or T is None or not np.isfinite(T).all():
            return None
        if R_raw is None:
            self.state = "not used: the Imu samples do not cover the frame interval"
            return None
        variance = rotation_variance
        if variance is None and cov is not None:
            variance = float(np.trace(cov[3:, 3:])) / 3
        if variance is None and rotation_fusion.frames:  # the network's motion stands
            variance = rotation_fusion.network_variance
        if variance is not None:
            classical = None if sources is None else _classical(sources)
            if sources is None or sources.refined is not None or classical is not None:
                gyro.compare(R_raw, T[:3, :3], variance, dt_s)  # not against the network's alone
            self._measure_bias(R_raw, dt_s, sources, rotation_fusion)
        elif gyro.frames_compared == 0:  # nothing to check it against (pose_source network)
            self.state = "not used: the camera rotation's variance is not measured"
            return None
        if gyro.frames_compared < gyro.min_frames:
            self.state = (
                f"compared with the camera ({gyro.frames_compared} of {gyro.min_frames} frames)"
            )
            return None
        if not gyro.consistent:
            self.state = "not used: it disagrees with the camera's rotation"
            self._warn(
                "gyro",
                f"gyroscope not used: it disagrees with the camera's rotation by "
                f"{gyro.disagreement_deg:.3g} deg rms a frame; check the camera <- "
                f"'{self.imu_frame_id}' transform, the Imu's units (rad/s) and stamps",
            )
            return None
        T = T.copy()
        T[:3, :3] = gyro.corrected(R_raw, dt_s)
        if cov is not None:  # the rotation block is the gyro's now
            cov = cov.copy()
            cov[3:, :], cov[:, 3:] = 0.0, 0.0
            cov[3:, 3:] = gyro.variance * np.eye(3)
        self.state = USED
        return GatedMotion(T, cov, gyro.variance)

    def _measure_bias(
        self,
        R_raw: np.ndarray,
        dt_s: float,
        sources: MotionSources | None,
        rotation_fusion: RotationFusion,
    ) -> None:
        """The gyro's offset from this frame's geometric rotation: classical VO's where the
        rotation fusion measures it the more precise of the two, else the refined one."""
        if sources is None:
            return
        _, refined_variance, classical_variance = rotation_fusion.variances
        order = (sources.refined, _classical(sources))
        if classical_variance <= refined_variance:
            order = order[::-1]
        reference = next((T for T in order if T is not None), None)
        if reference is not None:
            self.gyro.measure_bias(R_raw, reference[:3, :3], dt_s)

    def diagnostics(self) -> dict[str, str]:
        """`/diagnostics` entries: the state, and once compared the disagreement and bias."""
        gyro = self.gyro
        out = {"gyroscope": self.state}
        if gyro.frames_compared:
            bias = ", ".join(f"{b:.3g}" for b in np.degrees(gyro.bias_rad_s))
            out["gyroscope disagreement with the camera (deg rms)"] = f"{gyro.disagreement_deg:.3g}"
            out["gyroscope bias removed (deg/s)"] = bias
        return out

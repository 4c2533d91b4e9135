"""The rotation between two camera frames from a gyroscope (``sensor_msgs/Imu``'s angular
velocity), checked against the camera's own rotation.

Most robots carry an IMU. Integrated over a frame interval its rate gyroscope measures the
rotation far better than vision does (a consumer MEMS gyro's noise, 0.01 deg/s/sqrt(Hz), is
0.003 degrees over 0.1 s; the node's visual rotation on KITTI errs by 0.09 degrees a frame),
but only once three things are right: the camera <- IMU rotation (TF), the gyro's bias (a
consumer gyro's is 0.1-1 deg/s, i.e. 0.01-0.1 degrees a frame, a steady drift), and the time
stamps. So:
- the samples (IMU frame) are integrated between the two image stamps, the rate interpolated
  linearly between samples; a frame whose interval the samples do not cover (a gap longer than
  ``max_gap_s``, samples not yet arrived) gets no gyro rotation;
- the bias (optical frame, rad/s) is the steady offset of the gyro's rotation from a
  geometric one (`SteadyOffset`: the running median over ``bias_window`` frames, not shrunk:
  a gyro's bias is there), removed before the rotation is used. What that reference errs
  steadily is taken for bias and comes back in the gyro's rotation, so it is the geometric
  rotation with the smaller steady error: classical VO's where the rotation fusion measures
  it the more precise (on KITTI and synthetic streets its steady error was 0.02-0.16 deg/s,
  the refined rotation's 0.2-0.7), else the refined one (a turning synthetic field: 0.12
  against classical VO's 0.3). Not the published rotation: the pose network's steady error
  would be taken for bias (KITTI 06: 0.04 degrees a frame of yaw, r_err 4.3 -> 4.6 deg/100 m);
- the gyro rotation replaces the camera's only while the two agree: the running mean squared
  angle between them (per axis, over about ``window`` frames) must stay within ``GATE``^2
  times the camera rotation's own variance plus `RELATIVE`^2 times the rotation's mean
  square plus `MIN_DISAGREEMENT`^2. A wrong transform, rates in degrees or a time offset show
  up in the first turn and hand the rotation back to the camera (`disagreement_deg` says by
  how much).
The rotation's variance is the measured disagreement less the camera's variance, floored at a
tenth of the disagreement (as `three_cornered.py` floors its variances).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_exp, so3_log
from sfm_ros.core.network_bias import SteadyOffset

GATE = 3.0
"""The gyro's rotation is used while it disagrees with the camera's by at most this many of
the camera rotation's standard deviations (rms over the window)."""
MIN_DISAGREEMENT = math.radians(0.05)
"""Disagreement per axis (rad) always tolerated: the camera's variance can be estimated low."""
RELATIVE = 0.1
"""Disagreement tolerated relative to the rotation itself (rms over the window): in a turn
the camera errs more than its variance says (the synthetic field's 2-3 degree turns: 0.12-0.18
degrees rms where 3 sigma was 0.1), while a transform off by 90 degrees disagrees by 1.4 times
the rotation and rates in degrees by 56 times; one off by less than about 6 degrees passes."""
MIN_RATIO = 0.1
"""The gyro rotation's variance is at least this fraction of its disagreement."""


class GyroRotation:
    """Frame-to-frame rotations (optical frame) from gyro samples, bias-corrected and checked.

    Args:
        max_gap_s: longest gap between samples (and between the interval's ends and the
            nearest sample) that is integrated over.
        buffer_s: samples older than this before the newest are dropped.
        bias_window, bias_min_frames: `SteadyOffset`'s window and minimum for the bias.
        window: frames the disagreement with the camera is averaged over (exponential).
        min_frames: frames compared with the camera before the gyro's rotation is used.
    """

    def __init__(
        self,
        max_gap_s: float = 0.05,
        buffer_s: float = 2.0,
        bias_window: int = 600,
        bias_min_frames: int = 10,
        window: float = 30.0,
        min_frames: int = 10,
    ) -> None:
        if not (max_gap_s > 0 and buffer_s > max_gap_s and window >= 1 and min_frames >= 1):
            raise InputError(
                "need max_gap_s > 0, buffer_s > max_gap_s, window >= 1 and min_frames >= 1, "
                f"got {max_gap_s}, {buffer_s}, {window}, {min_frames}"
            )
        self.max_gap_ns, self.buffer_ns = int(max_gap_s * 1e9), int(buffer_s * 1e9)
        self.window, self.min_frames = float(window), int(min_frames)
        self.bias_offset = SteadyOffset(bias_window, bias_min_frames, significance=0.0)
        """Running gyro bias in the optical frame (rad/s)."""
        self.R_cam_imu: np.ndarray | None = None
        self._samples: deque[tuple[int, np.ndarray]] = deque()
        self.reset()

    def reset(self) -> None:
        """Forget the bias and the comparison with the camera (a new camera or transform);
        the samples stay."""
        self.bias_offset.reset()
        self._disagreement = self._visual_variance = self._rotation = 0.0
        self._compared = 0

    @property
    def frames_compared(self) -> int:
        """Frames compared with the camera since the last reset."""
        return self._compared

    def forget_extrinsics(self) -> None:
        """Drop the transform (another IMU frame) and what was measured with it."""
        self.R_cam_imu = None
        self.reset()

    def set_extrinsics(self, R_cam_imu: np.ndarray) -> None:
        """The (3, 3) rotation from the IMU's frame to the camera's optical frame (TF
        ``camera <- imu``); a changed one resets the bias and the comparison."""
        R = np.asarray(R_cam_imu, dtype=np.float64)
        if (
            R.shape != (3, 3)
            or not np.isfinite(R).all()
            or not np.allclose(R @ R.T, np.eye(3), atol=1e-6)
        ):
            raise InputError(f"R_cam_imu must be a (3, 3) rotation, got {R.tolist()}")
        if self.R_cam_imu is None or not np.allclose(R, self.R_cam_imu, atol=1e-9):
            self.reset()
        self.R_cam_imu = R

    def add(self, stamp_ns: int, omega_rad_s: np.ndarray) -> None:
        """Add one sample: angular velocity (3,) in rad/s, IMU frame. A sample not after the
        newest (a replayed or reordered message) is ignored; a non-finite one raises
        InputError."""
        omega = np.asarray(omega_rad_s, dtype=np.float64).reshape(-1)
        if omega.shape != (3,) or not np.isfinite(omega).all():
            raise InputError(f"angular velocity must be 3 finite values, got {omega.tolist()}")
        samples = self._samples
        if samples and stamp_ns <= samples[-1][0]:
            return
        samples.append((int(stamp_ns), omega))
        while samples[0][0] < stamp_ns - self.buffer_ns:
            samples.popleft()

    @property
    def bias_rad_s(self) -> np.ndarray:
        """(3,) the gyro's bias as removed (optical frame, rad/s)."""
        return self.bias_offset.bias

    def raw_rotation(self, t0_ns: int, t1_ns: int) -> np.ndarray | None:
        """(3, 3) ``R_cam0_cam1`` integrated from the samples over [t0, t1] without the bias
        removed; None without a transform or where the samples do not cover the interval."""
        if self.R_cam_imu is None or not t1_ns > t0_ns or not self._samples:
            return None
        stamps = np.fromiter((s for s, _ in self._samples), dtype=np.int64)
        lo = np.searchsorted(stamps, t0_ns - self.max_gap_ns, side="left")
        hi = np.searchsorted(stamps, t1_ns + self.max_gap_ns, side="right")
        if hi - lo < 1:
            return None
        near = stamps[lo:hi]
        if near[0] > t0_ns + self.max_gap_ns or near[-1] < t1_ns - self.max_gap_ns:
            return None
        if len(near) > 1 and np.diff(near).max() > self.max_gap_ns:
            return None  # a hole in the samples
        knots = np.concatenate([[t0_ns], near[(near > t0_ns) & (near < t1_ns)], [t1_ns]])
        rates = np.stack([w for _, w in list(self._samples)[lo:hi]])
        t = (near - t0_ns) * 1e-9
        mid = (knots[:-1] + knots[1:]) / 2 - t0_ns
        omega = np.stack([np.interp(mid * 1e-9, t, rates[:, k]) for k in range(3)], axis=1)
        steps = so3_exp(omega * (np.diff(knots) * 1e-9)[:, None])
        R_imu = np.eye(3)
        for R in steps:
            R_imu = R_imu @ R
        return self.R_cam_imu @ R_imu @ self.R_cam_imu.T

    def corrected(self, R_raw: np.ndarray, dt_s: float) -> np.ndarray:
        """(3, 3) ``R_raw`` over ``dt_s`` seconds with the bias removed."""
        return R_raw @ so3_exp(-self.bias_rad_s * dt_s)

    def compare(
        self, R_raw: np.ndarray, R_camera: np.ndarray, camera_variance: float, dt_s: float
    ) -> None:
        """Add one frame to the disagreement: the gyro's uncorrected rotation, the camera's
        published one (both (3, 3) ``R_cam0_cam1``) and its variance per axis (rad^2) over
        ``dt_s`` seconds. Non-finite inputs are not added."""
        if not (dt_s > 0 and 0 < camera_variance < math.inf):
            return
        R_gyro = self.corrected(R_raw, dt_s)
        residual, rotation = so3_log(R_gyro.T @ R_camera), so3_log(R_gyro)
        if not (np.isfinite(residual).all() and np.isfinite(rotation).all()):
            return
        self._compared += 1
        rate = max(1.0 / self.window, 1.0 / self._compared)
        self._disagreement += rate * (float(residual @ residual) / 3 - self._disagreement)
        self._visual_variance += rate * (camera_variance - self._visual_variance)
        self._rotation += rate * (float(rotation @ rotation) / 3 - self._rotation)

    def measure_bias(self, R_raw: np.ndarray, R_reference: np.ndarray, dt_s: float) -> None:
        """Add one frame to the bias: the gyro's uncorrected rotation against a geometric one
        of the same interval (both (3, 3) ``R_cam0_cam1``; not the published rotation: what
        the pose network errs steadily would be taken for bias)."""
        offset = -so3_log(np.asarray(R_raw).T @ np.asarray(R_reference)) / dt_s
        if dt_s > 0 and np.isfinite(offset).all():
            self.bias_offset.add(offset)

    @property
    def consistent(self) -> bool:
        """Whether the gyro has been compared on ``min_frames`` frames and agrees with the
        camera (module docstring)."""
        limit = GATE**2 * self._visual_variance + RELATIVE**2 * self._rotation + MIN_DISAGREEMENT**2
        return self._compared >= self.min_frames and self._disagreement <= limit

    @property
    def variance(self) -> float:
        """The gyro rotation's variance per axis (rad^2): its disagreement with the camera
        less the camera's variance, at least `MIN_RATIO` of the disagreement."""
        return max(self._disagreement - self._visual_variance, MIN_RATIO * self._disagreement)

    @property
    def disagreement_deg(self) -> float:
        """Rms angle per axis (degrees) between the corrected gyro and the camera rotation."""
        return math.degrees(math.sqrt(self._disagreement))

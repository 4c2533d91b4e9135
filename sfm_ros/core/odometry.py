"""Chain frame-to-frame camera motion into a continuous odometry pose with honest covariances.

`OdometryIntegrator` takes `T_prev_cur` (4, 4) in the camera optical frame (what
`DepthPoseEstimator.step` returns), moves it to the base frame rigidly attached to the camera
(`T_base_cam`, conjugation), chains it into `T_odom_base` and keeps a twist and two covariances.

Covariances follow REP 103 / nav_msgs ordering (x, y, z, rot x, rot y, rot z):

- **Pose** (in the odom frame): first-order propagation of a random walk. Each step adds
  translation noise of std ``sigma_t = trans_rel * |d| + trans_abs`` (metres, per axis, in the
  base frame) and rotation noise of std ``sigma_r = rot_rel * |angle| + rot_per_m * |d| + rot_abs``
  (radians, per axis). Heading uncertainty also leaks into position through the lever arm of
  each step, so position variance grows with distance travelled and with rotation.
- **Twist** (in the child frame): that step's noise divided by ``dt``.
- **Unknown scale** (``metric=False``): translation is in network units, so the translation and
  linear-velocity variances get `UNOBSERVABLE_VARIANCE` added. Rotation stays observable.
  Nothing is ever zero or -1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import se3_adjoint, se3_inverse, se3_log, skew, so3_log

UNOBSERVABLE_VARIANCE = 1e3
"""Variance (m^2, (m/s)^2 or rad^2) reported for components the estimate does not determine."""
INITIAL_VARIANCE = 1e-6
"""Variance of the odometry origin (1 mm, 1 mrad std): the start pose is known by definition."""


def _check_transform(T: np.ndarray, name: str) -> None:
    """Raise InputError unless `T` is a (4, 4) array of finite numbers, naming what is wrong."""
    if T.shape != (4, 4):
        raise InputError(f"{name} must be a (4, 4) transform, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise InputError(f"{name} holds NaN or inf values; a transform must be finite")


def conjugate_motion(T_prev_cur_cam: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Camera motion -> motion of the rigidly attached base frame.

    Returns ``T_baseprev_basecur = T_base_cam @ T_prev_cur_cam @ inv(T_base_cam)`` (4, 4).
    """
    return T_base_cam @ np.asarray(T_prev_cur_cam, dtype=np.float64) @ se3_inverse(T_base_cam)


@dataclass
class OdometryNoise:
    """Per-step noise model (standard deviations, per axis)."""

    trans_rel: float = 0.05
    """Translation std per metre moved in the step (5 % of the step length)."""
    trans_abs: float = 0.002
    """Translation std added every step (m), so that standing still still accumulates noise."""
    rot_rel: float = 0.05
    """Rotation std per radian turned in the step."""
    rot_per_m: float = 0.002
    """Rotation std per metre moved (rad / m): heading drifts while driving straight."""
    rot_abs: float = 0.0005
    """Rotation std added every step (rad)."""

    def step_stds(self, distance: float, angle: float) -> tuple[float, float]:
        """(translation std m, rotation std rad) of one step of ``distance`` m and ``angle`` rad."""
        sigma_t = self.trans_rel * distance + self.trans_abs
        sigma_r = self.rot_rel * angle + self.rot_per_m * distance + self.rot_abs
        return sigma_t, sigma_r


@dataclass
class OdometryState:
    """Odometry after one frame.

    Attributes:
        stamp_ns: frame time.
        T_odom_base: (4, 4) pose of the base frame in the odom frame.
        twist_linear: (3,) m/s in the base (child) frame.
        twist_angular: (3,) rad/s in the base (child) frame.
        pose_cov: (6, 6) over (x, y, z, rot x, rot y, rot z) in the odom frame.
        twist_cov: (6, 6) over (vx, vy, vz, wx, wy, wz) in the base frame.
        distance: path length travelled since the odometry started (m, or network units).
    """

    stamp_ns: int
    T_odom_base: np.ndarray
    twist_linear: np.ndarray
    twist_angular: np.ndarray
    pose_cov: np.ndarray
    twist_cov: np.ndarray
    distance: float


class OdometryIntegrator:
    """Chains optical-frame camera motions into ``T_odom_base`` (starting at identity).

    Args:
        T_base_cam: (4, 4) static ``base <- camera optical`` extrinsic; None = identity (the
            odometry is then expressed in the camera's optical convention).
        noise: per-step noise model.
        metric: whether translations are in metres (a scale source is active); when False the
            translation and linear-velocity covariances are `UNOBSERVABLE_VARIANCE`-large.
    """

    def __init__(
        self,
        T_base_cam: np.ndarray | None = None,
        noise: OdometryNoise | None = None,
        metric: bool = False,
    ) -> None:
        self.noise = noise or OdometryNoise()
        self.metric = metric
        self.set_extrinsics(T_base_cam)
        self.T_odom_base = np.eye(4)
        self._P = np.eye(6) * INITIAL_VARIANCE  # pose covariance, odom frame
        self.distance = 0.0
        self.reset()

    def set_extrinsics(self, T_base_cam: np.ndarray | None) -> None:
        """Set the ``base <- camera optical`` transform (4, 4); None = identity."""
        T = np.eye(4) if T_base_cam is None else np.asarray(T_base_cam, dtype=np.float64)
        _check_transform(T, "T_base_cam")
        if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6):
            raise InputError("T_base_cam rotation block is not orthonormal")
        self.T_base_cam = T

    def reset(self) -> None:
        """Drop the motion history (last stamp, twist) but keep the pose and its covariance.

        The published odom -> base transform must stay continuous (REP 105): after a reset
        the chain continues from where it was; only the next twist is unknown.
        """
        self._last_stamp_ns: int | None = None
        self._twist = (np.zeros(3), np.zeros(3))
        self._twist_cov = np.eye(6) * UNOBSERVABLE_VARIANCE

    def update(
        self,
        T_prev_cur_cam: np.ndarray | None,
        stamp_ns: int,
        step_cov_cam: np.ndarray | None = None,
        rotation_variance: float | None = None,
    ) -> OdometryState:
        """Add the camera motion since the previous frame (None for the first frame of a chain).

        Args:
            step_cov_cam: (6, 6) covariance of the motion's twist (v, w) as a right
                perturbation ``T_prev_cur_cam @ exp(xi)`` in the current camera frame (what
                pose refinement gives, in the same units as the translation); None = the
                per-step `OdometryNoise` model. The noise model's constant terms are added
                either way, so no step is ever certain.
            rotation_variance: with the noise model, the step's rotation variance per axis
                (rad^2, e.g. what a rotation fusion measured) in place of the model's.
        """
        if rotation_variance is not None and not 0 <= rotation_variance < math.inf:
            raise InputError(f"rotation_variance must be finite and >= 0, got {rotation_variance}")
        dt = None if self._last_stamp_ns is None else (stamp_ns - self._last_stamp_ns) * 1e-9
        self._last_stamp_ns = int(stamp_ns)
        if T_prev_cur_cam is None:
            self._twist = (np.zeros(3), np.zeros(3))
            self._twist_cov = np.eye(6) * UNOBSERVABLE_VARIANCE
            return self.state()
        T_cam = np.asarray(T_prev_cur_cam, dtype=np.float64)
        _check_transform(T_cam, "T_prev_cur")
        dT = conjugate_motion(T_cam, self.T_base_cam)
        d = dT[:3, 3]
        step_len = float(np.linalg.norm(d))
        R = self.T_odom_base[:3, :3]
        R_new = R @ dT[:3, :3]
        G = np.zeros((6, 6))
        if step_cov_cam is None:
            sigma_t, sigma_r = self.noise.step_stds(
                step_len, float(np.linalg.norm(so3_log(dT[:3, :3])))
            )
            if rotation_variance is not None:
                sigma_r = math.sqrt(rotation_variance + self.noise.rot_abs**2)
            Q = np.diag([sigma_t**2] * 3 + [sigma_r**2] * 3)
            G[:3, :3], G[3:, 3:] = R, R_new  # translation noise in the previous base frame
        else:
            Q = self._base_covariance(step_cov_cam)
            G[:3, :3] = G[3:, 3:] = R_new  # right perturbation: current base frame

        # First-order propagation with left perturbations in the odom frame:
        # p' = p + R d, R' = R dR  =>  F = [[I, -[R d]x], [0, I]], noise mapped by G.
        F = np.eye(6)
        F[:3, 3:] = -skew(R @ d)
        self.T_odom_base = self.T_odom_base @ dT
        self._P = F @ self._P @ F.T + G @ Q @ G.T
        self._P = (self._P + self._P.T) / 2.0
        self.distance += step_len

        if dt is not None and dt > 0:
            xi = se3_log(dT)
            self._twist = (xi[:3] / dt, xi[3:] / dt)
            self._twist_cov = Q / dt**2
        else:
            self._twist = (np.zeros(3), np.zeros(3))
            self._twist_cov = np.eye(6) * UNOBSERVABLE_VARIANCE
        return self.state()

    def _base_covariance(self, step_cov_cam: np.ndarray) -> np.ndarray:
        """Camera-frame step covariance -> base frame, plus the noise model's constant terms."""
        cov = np.asarray(step_cov_cam, dtype=np.float64)
        if cov.shape != (6, 6) or not np.all(np.isfinite(cov)):
            raise InputError(f"step_cov_cam must be a finite (6, 6) matrix, got {cov.shape}")
        A = se3_adjoint(self.T_base_cam)
        floor = np.diag([self.noise.trans_abs**2] * 3 + [self.noise.rot_abs**2] * 3)
        return A @ ((cov + cov.T) / 2) @ A.T + floor

    def state(self) -> OdometryState:
        """Current pose, twist and covariances (translation inflated when not metric)."""
        pose_cov, twist_cov = self._P.copy(), self._twist_cov.copy()
        if not self.metric:
            idx = np.arange(3)
            pose_cov[idx, idx] += UNOBSERVABLE_VARIANCE
            twist_cov[idx, idx] += UNOBSERVABLE_VARIANCE
        return OdometryState(
            stamp_ns=-1 if self._last_stamp_ns is None else self._last_stamp_ns,
            T_odom_base=self.T_odom_base.copy(),
            twist_linear=self._twist[0].copy(),
            twist_angular=self._twist[1].copy(),
            pose_cov=pose_cov,
            twist_cov=twist_cov,
            distance=self.distance,
        )

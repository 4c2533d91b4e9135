"""A gyroscope on a camera's trajectory: angular velocity samples for `core/gyro.py`."""

from __future__ import annotations

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import so3_log

NOISE_DENSITY_RAD_S = float(np.radians(0.014))
"""White noise of a consumer MEMS gyro (a BMI088's 0.014 deg/s/sqrt(Hz)), rad/s/sqrt(Hz)."""
BIAS_RAD_S = float(np.radians(0.5))
"""Magnitude of the constant bias simulated by default (0.5 deg/s, an uncalibrated MEMS gyro)."""


def random_bias(rng: np.random.Generator, magnitude_rad_s: float = BIAS_RAD_S) -> np.ndarray:
    """(3,) constant gyro bias of ``magnitude_rad_s`` in a direction drawn from ``rng``."""
    direction = rng.normal(size=3)
    return magnitude_rad_s * direction / np.linalg.norm(direction)


def gyro_samples(
    T_world_cam: np.ndarray,
    stamps_ns: np.ndarray,
    rate_hz: float = 200.0,
    R_cam_imu: np.ndarray | None = None,
    bias_rad_s: np.ndarray | None = None,
    noise_density: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Angular velocity a gyro rigidly mounted on the camera reads between its frames.

    The camera turns at a constant rate between consecutive frames (``T_world_cam`` (N, 4, 4)
    at ``stamps_ns`` (N,)); the IMU's frame is ``R_cam_imu`` (3, 3) from the optical frame
    (identity: the same). Each sample adds ``bias_rad_s`` (3,) and white noise of
    ``noise_density`` rad/s/sqrt(Hz).

    Returns:
        (M,) int64 sample stamps (ns) from the first frame to the last, and (M, 3) rates
        (rad/s, IMU frame).
    """
    T = np.asarray(T_world_cam, dtype=np.float64)
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    if T.ndim != 3 or T.shape[1:] != (4, 4) or len(T) != len(stamps) or len(T) < 2:
        raise InputError("need (N, 4, 4) poses and N >= 2 stamps")
    if not (np.diff(stamps) > 0).all() or not rate_hz > 0:
        raise InputError("stamps must increase and rate_hz be positive")
    R_cam_imu = np.eye(3) if R_cam_imu is None else np.asarray(R_cam_imu, dtype=np.float64)
    rng = rng or np.random.default_rng(0)
    rates_cam = np.stack(
        [
            so3_log(T[i, :3, :3].T @ T[i + 1, :3, :3]) / ((stamps[i + 1] - stamps[i]) * 1e-9)
            for i in range(len(T) - 1)
        ]
    )
    times = np.arange(stamps[0], stamps[-1], int(round(1e9 / rate_hz)), dtype=np.int64)
    interval = np.searchsorted(stamps, times, side="right") - 1
    rates = rates_cam[interval] @ R_cam_imu  # R_cam_imu.T @ w for each row
    if bias_rad_s is not None:
        rates = rates + np.asarray(bias_rad_s, dtype=np.float64)
    if noise_density > 0:
        rates = rates + rng.normal(0.0, noise_density * np.sqrt(rate_hz), rates.shape)
    return times, rates

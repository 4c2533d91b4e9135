"""Frame-to-frame rotation from a gyroscope: integration, coverage, bias, the check against
the camera and the gate that publishes it."""

import math

import numpy as np
import pytest

from sfm_ros.core.errors import InputError
from sfm_ros.core.gyro import GyroRotation
from sfm_ros.core.gyro_gate import GyroGate
from sfm_ros.core.lie import so3_exp, so3_log
from sfm_ros.core.motion_fusion import MotionSources
from sfm_ros.core.rotation_fusion import RotationFusion

NS = 1_000_000_000
R_CAM_IMU = so3_exp(np.array([0.3, -1.2, 0.5]))  # a tilted IMU


def _rate(t: np.ndarray) -> np.ndarray:
    """(N, 3) true angular velocity (rad/s, IMU frame) of a turning, rocking platform."""
    return np.stack([0.2 * np.sin(3 * t), 0.5 + 0.3 * np.cos(2 * t), 0.1 * np.sin(5 * t)], axis=1)


def _true_rotation(t0: float, t1: float, steps: int = 2000) -> np.ndarray:
    """R_imu0_imu1 by fine midpoint integration of `_rate`."""
    edges = np.linspace(t0, t1, steps + 1)
    R = np.eye(3)
    for w, h in zip(_rate((edges[:-1] + edges[1:]) / 2), np.diff(edges), strict=True):
        R = R @ so3_exp(w * h)
    return R


def _angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    return math.degrees(float(np.linalg.norm(so3_log(R_a.T @ R_b))))


def _feed(gyro: GyroRotation, start: float, end: float, bias=(0.0, 0.0, 0.0)) -> None:
    """200 Hz samples (with a constant ``bias``, rad/s) over [start, end)."""
    for t in np.arange(start, end, 1 / 200):
        gyro.add(int(round(t * NS)), _rate(np.array([t]))[0] + np.asarray(bias))


def _fed(seconds: float = 1.0) -> GyroRotation:
    gyro = GyroRotation()
    gyro.set_extrinsics(R_CAM_IMU)
    _feed(gyro, 0.0, seconds)
    return gyro


def test_integrated_rotation_matches_the_true_one_in_the_camera_frame():
    gyro = _fed()
    t0, t1 = 0.213, 0.313  # image stamps between samples
    R = gyro.raw_rotation(int(t0 * NS), int(t1 * NS))
    expected = R_CAM_IMU @ _true_rotation(t0, t1) @ R_CAM_IMU.T
    assert _angle_deg(R, expected) < 1e-3
    assert _angle_deg(R, np.eye(3)) > 2.0  # the interval does turn


def test_no_rotation_where_the_samples_do_not_cover_the_interval():
    gyro = _fed(seconds=0.5)
    assert gyro.raw_rotation(int(0.45 * NS), int(0.6 * NS)) is None  # not arrived yet
    assert gyro.raw_rotation(int(0.3 * NS), int(0.2 * NS)) is None  # backwards
    holey = GyroRotation()
    holey.set_extrinsics(np.eye(3))
    for t in (0.0, 0.01, 0.02, 0.2, 0.21):  # 180 ms without a sample
        holey.add(int(t * NS), np.zeros(3))
    assert holey.raw_rotation(int(0.01 * NS), int(0.15 * NS)) is None
    assert holey.raw_rotation(int(0.0 * NS), int(0.02 * NS)) is not None
    no_transform = GyroRotation()
    no_transform.add(0, np.zeros(3))
    no_transform.add(NS // 100, np.zeros(3))
    assert no_transform.raw_rotation(0, NS // 100) is None


def test_bad_samples_and_transforms_are_refused_or_ignored():
    gyro = _fed(seconds=0.2)
    with pytest.raises(InputError):
        gyro.add(NS, np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(InputError):
        gyro.set_extrinsics(2 * np.eye(3))
    before = gyro.raw_rotation(int(0.05 * NS), int(0.15 * NS))
    gyro.add(int(0.1 * NS), np.array([100.0, 0.0, 0.0]))  # out of order: ignored
    assert _angle_deg(gyro.raw_rotation(int(0.05 * NS), int(0.15 * NS)), before) == 0.0


def _run(gyro: GyroRotation, R_cam_true_imu: np.ndarray, frames: int, bias=(0.0, 0.0, 0.0)):
    """Feed samples and compare ``frames`` 10 Hz frames with a camera whose rotation errs by
    0.05 degrees per axis; returns the last frame's (corrected gyro, camera, truth, raw)."""
    rng = np.random.default_rng(0)
    sigma = math.radians(0.05)
    _feed(gyro, 0.0, 0.02, bias)
    for i in range(frames):
        t0, t1 = 0.1 * i + 0.005, 0.1 * (i + 1) + 0.005
        _feed(gyro, 0.1 * i + 0.02, 0.1 * (i + 1) + 0.02, bias)
        truth = R_cam_true_imu @ _true_rotation(t0, t1, 200) @ R_cam_true_imu.T
        camera = truth @ so3_exp(rng.normal(0.0, sigma, 3))
        raw = gyro.raw_rotation(int(t0 * NS), int(t1 * NS))
        gyro.compare(raw, camera, sigma**2, t1 - t0)
        gyro.measure_bias(raw, camera, t1 - t0)
    return gyro.corrected(raw, t1 - t0), camera, truth, raw


def test_the_bias_is_measured_against_the_camera_and_removed():
    bias_imu = np.radians([0.5, -0.3, 0.8])  # deg/s: a consumer gyro's
    gyro = GyroRotation()
    gyro.set_extrinsics(R_CAM_IMU)
    corrected, camera, truth, raw = _run(gyro, R_CAM_IMU, 100, bias_imu)
    # the camera's 0.05 degrees a frame are 0.5 deg/s of noise: a standard error of 0.06 deg/s
    np.testing.assert_allclose(gyro.bias_rad_s, R_CAM_IMU @ bias_imu, atol=math.radians(0.15))
    assert gyro.consistent
    assert _angle_deg(corrected, truth) < 0.02  # the uncorrected one is 0.1 degrees off
    assert _angle_deg(raw, truth) > 0.08
    assert 0 < gyro.variance < math.radians(0.05) ** 2


def test_a_wrong_transform_is_caught_in_a_turn():
    gyro = GyroRotation()
    gyro.set_extrinsics(R_CAM_IMU @ so3_exp(np.array([math.pi / 2, 0.0, 0.0])))  # 90 deg off
    _run(gyro, R_CAM_IMU, 30)
    assert not gyro.consistent
    assert gyro.disagreement_deg > 1.0
    right = GyroRotation()
    right.set_extrinsics(R_CAM_IMU)
    _run(right, R_CAM_IMU, 30)
    assert right.consistent
    assert right.frames_compared == 30


def test_the_gate_says_why_until_the_gyro_has_agreed_then_gives_its_rotation():
    """`GyroGate` on a camera whose rotations are the truth to 0.05 degrees: no Imu, no
    transform, then compared for `min_frames` frames, then the gyro's rotation is published with
    its variance in the covariance's rotation block; a new Imu frame_id forgets the transform."""
    warnings = []
    gate = GyroGate(lambda key, msg: warnings.append(key))
    fusion = RotationFusion()
    T, cov = np.eye(4), np.eye(6) * 1e-4
    assert gate.apply(T, cov, None, np.eye(3), 0.1, None, fusion) is None
    assert gate.state == "no Imu received" and not gate.used
    for t in np.arange(0.0, 1.5, 1 / 200):
        gate.add(int(round(t * NS)), "imu_link", _rate(np.array([t]))[0])
    assert gate.apply(T, cov, None, np.eye(3), 0.1, None, fusion) is None
    assert gate.state == "not used: no camera <- 'imu_link' transform"
    gate.gyro.set_extrinsics(R_CAM_IMU)
    rng = np.random.default_rng(0)
    for k in range(gate.gyro.min_frames):  # the last one is the first published
        t0, t1 = 0.1 * (k + 1), 0.1 * (k + 2)
        R_raw, R_prior = gate.rotations(int(t0 * NS), int(t1 * NS))
        assert (R_prior is not None) == gate.gyro.consistent
        camera = (
            R_CAM_IMU
            @ _true_rotation(t0, t1)
            @ R_CAM_IMU.T
            @ so3_exp(rng.normal(0, math.radians(0.05), 3))
        )
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = camera, (0.0, 0.0, 1.0)
        sources = MotionSources(T, refined=T)
        gated = gate.apply(T, cov, math.radians(0.05) ** 2, R_raw, 0.1, sources, fusion)
        if k < gate.gyro.min_frames - 1:
            assert gated is None and gate.state.startswith("compared with the camera")
    assert gate.used and gated is not None
    assert _angle_deg(gated.T_prev_cur[:3, :3], R_raw) < 0.1  # the gyro's (bias about 0)
    np.testing.assert_array_equal(gated.T_prev_cur[:3, 3], T[:3, 3])
    np.testing.assert_allclose(gated.covariance[3:, 3:], gated.rotation_variance * np.eye(3))
    assert not gated.covariance[:3, 3:].any() and gate.diagnostics()["gyroscope"] == gate.state
    gate.add(int(9.0 * NS), "other_imu", np.zeros(3))
    assert gate.gyro.R_cam_imu is None and warnings == ["imu:frame"]


def test_a_classical_motion_left_out_of_the_fusion_is_not_measured_against():
    """Where the refinement failed and the classical motion was left out of the fusion (it
    followed something moving across the view), the published rotation is the network's
    alone: the gyro is not compared with it, nor its bias measured against the classical
    one. Kept, the classical motion serves both."""
    gate, fusion = GyroGate(lambda key, msg: None), RotationFusion()
    for t in np.arange(0.0, 2.5, 1 / 200):
        gate.add(int(round(t * NS)), "imu_link", _rate(np.array([t]))[0])
    gate.gyro.set_extrinsics(R_CAM_IMU)
    T, wrong = np.eye(4), np.eye(4)
    wrong[:3, :3] = so3_exp(np.radians([0.0, 8.0, 0.0]))  # the object's motion
    kept = MotionSources(T, classical=wrong)
    rejected = MotionSources(T, classical=wrong, classical_rejected=True)
    for sources in (rejected, kept):
        for k in range(20):
            R_raw, _ = gate.rotations(int(0.1 * (k + 1) * NS), int(0.1 * (k + 2) * NS))
            gate.apply(T, None, 1e-6, R_raw, 0.1, sources, fusion)
        if sources is rejected:
            assert gate.gyro.frames_compared == 0 and not gate.gyro.bias_rad_s.any()
    assert gate.gyro.frames_compared > 0 and np.degrees(np.abs(gate.gyro.bias_rad_s)).max() > 50

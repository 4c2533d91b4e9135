"""Odometry chaining: frame conventions, twist, covariances, continuity across resets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core.errors import InputError
from sfm_ros.core.frames import T_BODY_OPTICAL, camera_motion_to_base
from sfm_ros.core.inference import EstimatorOutput
from sfm_ros.core.lie import se3_inverse, se3_log
from sfm_ros.core.odometry import (
    UNOBSERVABLE_VARIANCE,
    OdometryIntegrator,
    conjugate_motion,
)
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.frame_pipeline import DepthOdometryPipeline

DT_NS = 100_000_000


def optical_motion(forward: float = 1.0, yaw_left: float = 0.0) -> np.ndarray:
    """Camera motion T_prev_cur in the optical frame: forward along z, turning left.

    Turning left is a rotation about the body z (up) axis, i.e. about optical -y.
    """
    c, s = np.cos(yaw_left), np.sin(yaw_left)
    T = np.eye(4)
    T[:3, :3] = [[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]]  # rotation by yaw about -y
    T[2, 3] = forward
    return T


def run(integrator: OdometryIntegrator, motions: list[np.ndarray], t0: int = 0):
    states = [integrator.update(None, t0)]
    for i, T in enumerate(motions, start=1):
        states.append(integrator.update(T, t0 + i * DT_NS))
    return states


def test_forward_optical_z_is_plus_x_in_odom():
    odo = OdometryIntegrator(T_BODY_OPTICAL, metric=True)
    state = run(odo, [optical_motion(1.0)] * 5)[-1]
    np.testing.assert_allclose(state.T_odom_base[:3, 3], [5.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(state.T_odom_base[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(state.twist_linear, [10.0, 0.0, 0.0], atol=1e-9)
    assert state.distance == pytest.approx(5.0)


def test_left_turn_is_positive_yaw_and_twist_uses_dt():
    odo = OdometryIntegrator(T_BODY_OPTICAL, metric=True)
    odo.update(None, 0)
    state = odo.update(optical_motion(0.5, yaw_left=0.1), 200_000_000)  # dt = 0.2 s
    np.testing.assert_allclose(state.twist_angular, [0.0, 0.0, 0.5], atol=1e-9)
    # A constant body twist over dt reproduces the motion exactly.
    xi = np.zeros((4, 4))
    v, w = state.twist_linear * 0.2, state.twist_angular * 0.2
    xi[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
    xi[:3, 3] = v
    T_exp = torch.linalg.matrix_exp(torch.from_numpy(xi)).numpy()
    np.testing.assert_allclose(T_exp, state.T_odom_base, atol=1e-9)
    state = odo.update(optical_motion(0.5, yaw_left=0.1), 400_000_000)
    assert state.T_odom_base[1, 3] > 0  # after turning left, forward motion goes to +y


def test_conjugation_matches_ros_frames():
    rng = np.random.default_rng(0)
    for _ in range(3):
        T = optical_motion(rng.uniform(0, 2), rng.uniform(-0.3, 0.3))
        T[:3, 3] += rng.normal(size=3)
        T_base_cam = optical_motion(0.3, 0.2) @ T_BODY_OPTICAL
        np.testing.assert_allclose(
            conjugate_motion(T, T_base_cam), camera_motion_to_base(T, T_base_cam), atol=1e-12
        )


def test_se3_log_near_pi():
    T = optical_motion(1.0, np.pi - 1e-6)
    w = se3_log(T)[3:]
    assert np.linalg.norm(w) == pytest.approx(np.pi - 1e-6, abs=1e-6)
    assert abs(w[1]) == pytest.approx(np.linalg.norm(w))


def test_covariances_positive_growing_and_honest():
    odo = OdometryIntegrator(T_BODY_OPTICAL, metric=True)
    states = run(odo, [optical_motion(1.0, 0.05)] * 8)
    pos_var = [np.trace(s.pose_cov[:3, :3]) for s in states]
    yaw_var = [s.pose_cov[5, 5] for s in states]
    assert np.all(np.diff(pos_var) > 0) and np.all(np.diff(yaw_var) > 0)
    for s in states:
        for cov in (s.pose_cov, s.twist_cov):
            np.testing.assert_allclose(cov, cov.T, atol=1e-15)
            assert np.all(np.linalg.eigvalsh(cov) > 0)
    # Longer steps accumulate more uncertainty than short ones over the same number of steps.
    short = run(OdometryIntegrator(T_BODY_OPTICAL, metric=True), [optical_motion(0.1)] * 8)[-1]
    assert np.trace(short.pose_cov[:3, :3]) < pos_var[-1]
    # Heading error grows lateral (y) uncertainty faster than along-track (x) when driving straight.
    straight = run(OdometryIntegrator(T_BODY_OPTICAL, metric=True), [optical_motion(1.0)] * 20)
    assert straight[-1].pose_cov[1, 1] > straight[-1].pose_cov[0, 0]


def test_unknown_scale_inflates_translation_only():
    odo = OdometryIntegrator(T_BODY_OPTICAL, metric=False)
    state = run(odo, [optical_motion(1.0)] * 3)[-1]
    assert np.all(np.diag(state.pose_cov)[:3] >= UNOBSERVABLE_VARIANCE)
    assert np.all(np.diag(state.twist_cov)[:3] >= UNOBSERVABLE_VARIANCE)
    assert np.all(np.diag(state.pose_cov)[3:] < 1.0)
    assert np.all(np.diag(state.twist_cov)[3:] < 1.0)


def test_reset_keeps_pose_continuous():
    odo = OdometryIntegrator(T_BODY_OPTICAL, metric=True)
    before = run(odo, [optical_motion(1.0, 0.1)] * 3)[-1]
    odo.reset()
    after = odo.update(None, 10 * DT_NS)  # first frame of a new chain
    np.testing.assert_array_equal(after.T_odom_base, before.T_odom_base)
    np.testing.assert_array_equal(after.pose_cov, before.pose_cov)
    np.testing.assert_array_equal(after.twist_linear, np.zeros(3))
    assert np.all(np.diag(after.twist_cov) >= UNOBSERVABLE_VARIANCE)
    nxt = odo.update(optical_motion(1.0), 11 * DT_NS)
    np.testing.assert_allclose(nxt.T_odom_base, before.T_odom_base @ T_BODY_OPTICAL
                               @ optical_motion(1.0) @ T_BODY_OPTICAL.T, atol=1e-12)  # fmt: skip


def test_bad_inputs_raise():
    odo = OdometryIntegrator()
    with pytest.raises(InputError, match="T_prev_cur holds NaN or inf values"):
        odo.update(np.full((4, 4), np.nan), 0)
    with pytest.raises(InputError, match=r"T_base_cam must be a \(4, 4\) transform, got shape"):
        OdometryIntegrator(np.eye(3))
    with pytest.raises(InputError, match="orthonormal"):
        OdometryIntegrator(np.diag([2.0, 1.0, 1.0, 1.0]))


class _TrueStreet:
    """Estimator stand-in: the true depth and motion of a synthetic street, in network units."""

    def __init__(self, seq, units: float) -> None:
        self.seq, self.units, self.prev = seq, units, None

    def step(self, image, K, stamp_ns, with_flow=False) -> EstimatorOutput:
        i = int(np.flatnonzero(self.seq.stamps_ns == stamp_ns)[0])
        depth = np.where(self.seq.depth_m[i] > 0, self.seq.depth_m[i] * self.units, np.nan)
        T = None
        if self.prev is not None:
            T = se3_inverse(self.seq.T_world_cam[self.prev]) @ self.seq.T_world_cam[i]
            T[:3, 3] *= self.units
        self.prev = i
        return EstimatorOutput(depth.astype(np.float32), T, stamp_ns, 0)

    def reset(self) -> None:
        self.prev = None


def test_odometry_stays_unscaled_until_the_scale_has_evidence():
    """One ground-plane fit must not turn the odometry metric and shrink its covariance;
    consistent ones from the following frames do."""
    seq = render_sequence("street", 4, seed=2, height=32, width=96)
    types = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
    # the stand-in's depth is exact: published as it is (a plane sweep at 96 px wide would
    # add its noise to the ground-plane fits this test is not about)
    cfg = PipelineConfig.from_mapping(
        {
            "scale_source": "camera_height",
            "camera_height_m": seq.camera_height_m,
            "depth_source": "network",
        }
    )
    pipe = DepthOdometryPipeline(cfg, types, _TrueStreet(seq, units=0.37))
    pipe.on_camera_info(cv.camera_info_msg(types, seq.K, 96, 32, cv.header(types, 0, "cam")))
    results = []
    for image, stamp in zip(seq.images, seq.stamps_ns, strict=True):
        hdr = cv.header(types, int(stamp), "cam")
        results.append(pipe.process(cv.numpy_to_image(types, image, "rgb8", hdr)))
    first = results[0]  # one ground-plane estimate: the scale is still unknown
    cov = np.asarray(first.messages["odom"].pose.covariance).reshape(6, 6)
    assert not first.metric and cov[0, 0] >= UNOBSERVABLE_VARIANCE
    last = results[-1]
    cov = np.asarray(last.messages["odom"].pose.covariance).reshape(6, 6)
    assert last.metric and cov[0, 0] < 1.0 and last.scale * 0.37 == pytest.approx(1.0, rel=0.05)


def test_step_covariance_from_refinement_is_used_in_the_base_frame():
    """A refinement's camera-frame covariance drives the odometry's, mapped to the body frame."""
    step = optical_motion(0.5, 0.0)  # 0.5 forward along optical z
    sure = np.diag([1e-6, 1e-6, 4e-2, 1e-8, 1e-8, 1e-8])  # uncertain along optical z only
    odo = OdometryIntegrator(T_BODY_OPTICAL, metric=True)
    odo.update(None, 0)
    state = odo.update(step, 100_000_000, step_cov_cam=sure)
    # optical z is body x: the pose covariance is large along odom x, small along y and z
    assert state.pose_cov[0, 0] > 3e-2 and state.pose_cov[1, 1] < 1e-4
    assert state.twist_cov[0, 0] == pytest.approx(4e-2 / 0.1**2, rel=1e-3)
    looser = OdometryIntegrator(T_BODY_OPTICAL, metric=True)
    looser.update(None, 0)
    wide = looser.update(step, 100_000_000, step_cov_cam=sure * 100)
    assert np.all(np.diag(wide.pose_cov) > np.diag(state.pose_cov))
    with pytest.raises(InputError, match="step_cov_cam"):
        odo.update(step, 200_000_000, step_cov_cam=np.full((6, 6), np.nan))


def test_a_measured_rotation_variance_replaces_the_noise_models():
    """A fusion's measured rotation variance sets the step's rotation noise; the translation
    keeps the noise model's."""
    step = optical_motion(0.5, 0.02)
    model, measured = (OdometryIntegrator(T_BODY_OPTICAL, metric=True) for _ in range(2))
    for odo in (model, measured):
        odo.update(None, 0)
    by_model = model.update(step, 100_000_000)
    state = measured.update(step, 100_000_000, rotation_variance=4e-6)
    rot_abs = measured.noise.rot_abs
    np.testing.assert_allclose(np.diag(state.twist_cov)[3:], (4e-6 + rot_abs**2) / 0.1**2)
    np.testing.assert_allclose(np.diag(state.twist_cov)[:3], np.diag(by_model.twist_cov)[:3])
    assert np.all(np.diag(state.pose_cov)[3:] < np.diag(by_model.pose_cov)[3:])
    for bad in (np.nan, np.inf, -1e-6):
        with pytest.raises(InputError, match="rotation_variance"):
            measured.update(step, 200_000_000, rotation_variance=bad)
    assert measured.state().stamp_ns == 100_000_000  # refused input left the state alone

"""The published motion from the network's, the refined and the classical estimates."""

import math

import numpy as np
import pytest

from sfm_ros.core.classical_vo import OrbMotion
from sfm_ros.core.errors import InputError
from sfm_ros.core.keyframes import TrackDiagnostics, TrackResult
from sfm_ros.core.lie import so3_exp, so3_log
from sfm_ros.core.metrics import chain_relative_poses, evaluate_snippets_rotation
from sfm_ros.core.motion_fusion import MotionFusion, MotionFusionConfig, averaged_step

YAW = np.array([0.0, 1.0, 0.0])  # about the optical y axis (down): a turn of a level camera


def _motion(angle_deg: float, t: tuple[float, float, float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = so3_exp(math.radians(angle_deg) * YAW)
    T[:3, 3] = t
    return T


def _track(T: np.ndarray, init_source: str = "network", reason: str = "ok") -> TrackResult:
    shape = (4, 6)
    diagnostics = TrackDiagnostics(reason, init_source, 5, 0.1, 0.05, 900, False, 0, 0.9, {})
    covariance = np.diag([1e-4] * 3 + [1e-6] * 3)
    return TrackResult(
        T, covariance, np.ones(shape, np.float32), np.ones(shape, np.float32),
        np.ones(shape, np.float32), diagnostics,
    )  # fmt: skip


def _fusion(pose_source: str, **config) -> MotionFusion:
    config = {"anchor_length": False, **config}
    return MotionFusion(MotionFusionConfig(pose_source, **config), OrbMotion(), 1.0)


def _degrees(R_a: np.ndarray, R_b: np.ndarray) -> float:
    return math.degrees(float(np.linalg.norm(so3_log(R_a.T @ R_b))))


def test_each_pose_source_publishes_its_motion():
    T_network, T_refined = _motion(0.0, (0.0, 0.0, 1.0)), _motion(0.5, (0.05, 0.0, 0.9))
    track = _track(T_refined)
    network = _fusion("network").fuse(T_network, track, None)
    np.testing.assert_array_equal(network.T_prev_cur, T_network)
    assert network.covariance is None and network.rotation_variance is None
    refined = _fusion("refined").fuse(T_network, track, None)
    np.testing.assert_array_equal(refined.T_prev_cur, T_refined)
    np.testing.assert_array_equal(refined.covariance, track.covariance)
    rotation = _fusion("refined_rotation").fuse(T_network, track, None).T_prev_cur
    np.testing.assert_array_equal(rotation[:3, :3], T_refined[:3, :3])
    np.testing.assert_array_equal(rotation[:3, 3], T_network[:3, 3])
    fused = _fusion("fused", fuse_classical=False).fuse(T_network, track, None)
    between = _degrees(T_network[:3, :3], fused.T_prev_cur[:3, :3])
    assert 0 < between < 0.5 and fused.rotation_variance is not None  # a weighted mean


def _measured(fusion: MotionFusion, frames: int = 40) -> MotionFusion:
    """``fusion`` after frames whose three estimates scatter by 0.05 degrees around the truth,
    so that it has measured their variances."""
    rng = np.random.default_rng(0)
    for _ in range(frames):
        network, refined, classical = (
            _motion(a, (0.0, 0.0, 1.0)) for a in rng.normal(scale=0.05, size=3)
        )
        fusion.fuse(network, _track(refined), classical)
    assert fusion.rotation_fusion.three_cornered
    return fusion


def test_a_turn_the_network_did_not_learn_is_fused_without_it():
    """The refinement fit better from classical VO's start, 3 degrees from the network's
    rotation (beyond the 1 degree a refinement may move), and classical VO agrees."""
    T_network = _motion(0.0, (0.0, 0.0, 1.0))
    T_refined, T_classical = _motion(3.0, (0.0, 0.0, 1.0)), _motion(3.05, (0.0, 0.0, 1.0))
    fusion = _measured(_fusion("fused"))
    rejected = fusion.network_rotation_rejected
    assert rejected(T_network, _track(T_refined, "classical"), T_classical)
    assert not rejected(T_network, _track(T_refined, "network"), T_classical)  # its own start
    assert not rejected(T_network, _track(T_refined, "classical"), None)  # nothing agrees
    assert not rejected(T_network, _track(T_refined, "classical"), _motion(0.2, (0, 0, 1.0)))
    within_reach = _motion(0.8, (0.0, 0.0, 1.0))
    assert not rejected(T_network, _track(within_reach, "classical"), T_classical)
    published = fusion.fuse(T_network, _track(T_refined, "classical"), T_classical)
    assert fusion.network_rejections == 1
    assert fusion.diagnostics()["network rotation rejected (frames)"] == "1"
    assert _degrees(T_refined[:3, :3], published.T_prev_cur[:3, :3]) < 0.1


def test_restart_keeps_what_was_learnt_and_reset_model_forgets_it():
    fusion = _fusion("fused", fuse_classical=False)
    T_network = _motion(0.0, (0.0, 0.0, 1.0))
    for angle in (0.3, -0.2, 0.4, -0.1):
        fusion.fuse(T_network, _track(_motion(angle, (0.0, 0.0, 1.0))), None)
    learnt = fusion.rotation_fusion.network_variance
    assert learnt > 0 and fusion.rotation_diagnostics()
    fusion.restart()
    assert fusion.rotation_fusion.network_variance == learnt
    fusion.reset_model()
    assert fusion.rotation_fusion.network_variance == 0 and fusion.rotation_diagnostics() == {}


def test_a_non_finite_network_motion_is_not_fused():
    T_network = np.full((4, 4), np.nan)
    published = _fusion("fused").fuse(T_network, _track(_motion(0.5, (0, 0, 1.0))), None)
    assert published.rotation_variance is None  # the network's motion, not a fusion of NaN


def test_an_unknown_pose_source_is_refused():
    with pytest.raises(InputError, match="pose_source"):
        MotionFusionConfig("gyro")


def test_averaged_step_leans_on_the_better_of_the_step_and_the_fit_over_two_frames():
    rng = np.random.default_rng(0)
    R_last, R_true = so3_exp(rng.normal(0, 0.02, 3)), so3_exp(rng.normal(0, 0.02, 3))
    R_step = R_true @ so3_exp(np.radians([1.0, -0.5, 0.3]))  # a pair's fit 1.2 degrees off
    R_over_two = R_last @ R_true  # the fit over both frames right, and so the last step
    assert _degrees(averaged_step(R_step, 1e-4, R_last, 1e-7, R_over_two, 1e-7), R_true) < 0.01
    # equal variances: halfway between the step and what the fit over two frames gives it
    R = averaged_step(R_step, 2e-6, R_last, 1e-6, R_over_two, 1e-6)
    assert _degrees(R, R_true) == pytest.approx(_degrees(R_step, R_true) / 2)
    for bad in (math.nan, math.inf):  # a variance that is no measure: the step as it is
        assert averaged_step(R_step, 1e-6, R_last, bad, R_over_two, 1e-6) is R_step
        assert averaged_step(R_step, bad, R_last, 1e-6, R_over_two, 1e-6) is R_step


def _published_over_turns(seed: int, over_two: bool, frames: int = 80) -> tuple[float, float]:
    """RE (rad, SfMLearner's 5-frame snippets) and the rms step error (degrees) of the last
    half of ``frames`` fused from three rotations scattering by 0.3 (network), 0.15 (refined)
    and 0.1 (classical) degrees per axis around turns of 0-3 degrees; with ``over_two``
    classical VO's fit over each two frames (as closely off) is given too."""
    rng = np.random.default_rng(seed)
    fusion = _fusion("fused")
    fusion.classical.last_rotation_variance = 1e-6  # every fit claims alike

    def off(T: np.ndarray, sigma_deg: float) -> np.ndarray:
        T = T.copy()
        T[:3, :3] = T[:3, :3] @ so3_exp(np.radians(rng.normal(scale=sigma_deg, size=3)))
        return T

    truth = [_motion(yaw, (0.0, 0.0, 1.0)) for yaw in rng.uniform(0.0, 3.0, frames)]
    published = []
    for i, T in enumerate(truth):
        network, refined, classical = off(T, 0.3), off(T, 0.15), off(T, 0.1)
        R_over_two = off(truth[i - 1] @ T, 0.1)[:3, :3] if i else None
        fusion.classical.last_over_two = (R_over_two, 1e-6) if over_two and i else None
        published.append(fusion.fuse(network, _track(refined), classical).T_prev_cur)
    half = frames // 2
    gt = chain_relative_poses(np.array(truth))[half:]
    steps = [_degrees(P[:3, :3], T[:3, :3]) for P, T in zip(published, truth, strict=True)]
    re = evaluate_snippets_rotation(gt, np.array(published[half:]))[0]
    return re, float(np.sqrt(np.mean(np.square(steps[half:]))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fused_chain_leans_on_classical_vos_fit_over_two_frames(seed):
    # the rotation over two frames, fitted directly, pulls each classical step towards what
    # it says after the last fused rotation: errors over a few frames (RE) shrink, and no
    # step errs more for it (19-34 % lower RE here; without the fit the fusion is as before)
    re, step_deg = _published_over_turns(seed, over_two=False)
    re_two, step_two_deg = _published_over_turns(seed, over_two=True)
    assert re_two < 0.85 * re and step_two_deg < step_deg


def _measured_with_directions(fusion: MotionFusion, frames: int = 40) -> MotionFusion:
    """``fusion`` after frames whose three estimates scatter by 0.05 degrees in rotation and
    by about 0.6 degrees in the translation's direction around the truth."""
    rng = np.random.default_rng(1)
    for _ in range(frames):
        angles, across = rng.normal(scale=0.05, size=3), rng.normal(scale=0.01, size=(3, 2))
        network, refined, classical = (
            _motion(a, (x, y, 1.0)) for a, (x, y) in zip(angles, across, strict=True)
        )
        fusion.fuse(network, _track(refined), classical)
    assert fusion.rotation_fusion.three_cornered and fusion.direction_fusion.usable
    return fusion


def test_a_classical_motion_that_followed_something_moving_is_left_out():
    # MAGSAC++ kept the motion of a truck crossing the view: sideways, or turned 2 degrees
    # where the refinement failed. Beyond chance from the others it is measured but not fused
    # (rotation and direction). A rotation the refined one does not share is fused (in a
    # sharp turn the network's and the refined rotation fall short together), and so is a
    # direction the refined one shares.
    fusion = _measured_with_directions(_fusion("fused"))
    T_network, T_refined = _motion(0.0, (0.0, 0.0, 1.0)), _motion(0.05, (0.01, 0.0, 1.0))
    sideways, turned = _motion(0.05, (1.0, 0.0, 0.1)), _motion(2.0, (0.0, 0.0, 1.0))
    outlier = fusion.classical_outlier
    assert outlier(T_network, _track(T_refined), sideways)
    assert outlier(T_network, _track(T_refined, reason="diverged"), turned)
    assert not outlier(T_network, _track(T_refined), turned)
    assert not outlier(T_network, _track(sideways), sideways)
    assert not outlier(T_network, _track(T_refined), _motion(0.08, (0.01, 0.01, 1.0)))
    published = fusion.fuse(T_network, _track(T_refined), sideways).T_prev_cur
    assert fusion.classical_rejections == 1
    assert fusion.diagnostics()["classical VO motion rejected (frames)"] == "1"
    assert fusion.direction_fusion.last_weights[2] == 0 == fusion.rotation_fusion.last_weights[2]
    direction = published[:3, 3] / np.linalg.norm(published[:3, 3])
    assert math.degrees(math.acos(direction[2])) < 1.0
    diverged = fusion.fuse(T_network, _track(T_refined, reason="diverged"), turned).T_prev_cur
    assert _degrees(diverged[:3, :3], T_network[:3, :3]) < 0.01  # the network's (no gain here)
    assert fusion.classical_rejections == 2


def test_a_classical_motion_far_off_the_others_is_not_measured_either():
    # a classical direction beyond chance from the network's and the refined one is left out
    # of the fusion but measured: its disagreements enter the variances. One 84 degrees off
    # (MAGSAC++ kept something crossing the view), beyond any error of theirs, is not
    # measured either: measured, it would inflate the classical variance until such motions
    # lie within chance
    T_network, T_refined = _motion(0.0, (0.0, 0.0, 1.0)), _motion(0.05, (0.01, 0.0, 1.0))
    for t_classical, far_off in (((1.0, 0.0, 0.1), True), ((0.1, 0.0, 1.0), False)):
        fusion = _measured_with_directions(_fusion("fused"))
        before = np.array(fusion.direction_fusion.variances)
        T_classical = _motion(0.05, t_classical)
        assert fusion.classical_far_off(T_network, _track(T_refined), T_classical) == far_off
        fusion.fuse(T_network, _track(T_refined), T_classical)
        assert fusion.classical_rejected and fusion.direction_fusion.last_weights[2] == 0
        after = np.array(fusion.direction_fusion.variances)
        assert np.array_equal(before, after) == far_off
        if not far_off:
            assert after[2] > 2 * before[2]
    # not where the refined direction is as far off: the network's alone may err so
    fusion = _measured_with_directions(_fusion("fused"))
    sideways = _motion(0.05, (1.0, 0.0, 0.1))
    assert not fusion.classical_far_off(T_network, _track(sideways), sideways)


def test_where_the_refined_and_classical_direction_turn_away_together_the_course_is_held():
    # the refinement and classical VO both follow a truck crossing the view and agree: as
    # weighted, the direction turns 56 degrees within a frame at 10 m/s, and the network's is
    # kept. A stop or a break in the frames (restart) ends the run: the next frame is free
    # to turn.
    T_network, sideways = _motion(0.0, (0.0, 0.0, 1.0)), _motion(0.0, (1.0, 0.0, 0.1))
    for restart in (False, True):
        fusion = _measured_with_directions(_fusion("fused"))
        if restart:
            fusion.restart()
        published = fusion.fuse(T_network, _track(sideways), sideways, 0.1).T_prev_cur
        held = fusion.diagnostics()["translation direction held on course (frames)"]
        direction = published[:3, 3] / np.linalg.norm(published[:3, 3])
        turned = math.degrees(math.acos(direction[2]))
        assert (turned < 1.0, held) == ((False, "0") if restart else (True, "1"))
        assert restart == (turned > 45.0)


def _measured_in_turns() -> MotionFusion:
    """A fusion after 40 frames turning 0-4 degrees, the network's yaw 30 % short (its gain,
    measured) and all three scattering by 0.05 degrees."""
    rng = np.random.default_rng(2)
    fusion = _fusion("fused")
    for yaw in rng.uniform(0.0, 4.0, size=40):
        noise = rng.normal(scale=0.05, size=3)
        network = _motion(0.7 * yaw + noise[0], (0.0, 0.0, 1.0))
        refined, classical = (_motion(yaw + n, (0.0, 0.0, 1.0)) for n in noise[1:])
        fusion.fuse(network, _track(refined), classical)
    return fusion


def test_where_the_refinement_fails_in_a_turn_classical_vo_keeps_its_angular_velocity():
    # KITTI 00's turn: the network's rotation, with its measured gain, fell 0.8 degrees short,
    # beyond the variance it averages over the other frames, on a frame whose refinement
    # diverged. Classical VO's, near the last frame's fused rotation, is the turn going on and
    # is fused; one further from it than the network's (it followed something moving) is left
    # out, as is any that far off after a break in the frames (no last rotation known)
    fusion = _measured_in_turns()
    T_turn = _motion(3.0, (0.0, 0.0, 1.0))
    fusion.fuse(_motion(2.1, (0.0, 0.0, 1.0)), _track(T_turn), T_turn)  # the frame before
    T_network, diverged = _motion(1.55, (0.0, 0.0, 1.0)), _track(T_turn, reason="diverged")
    T_classical = _motion(3.05, (0.0, 0.0, 1.0))
    assert not fusion.classical_outlier(T_network, diverged, T_classical)
    assert fusion.classical_outlier(T_network, diverged, _motion(5.0, (0.0, 0.0, 1.0)))
    published = fusion.fuse(T_network, diverged, T_classical).T_prev_cur
    assert fusion.classical_rejections == 0
    assert _degrees(published[:3, :3], T_classical[:3, :3]) < 0.1
    fusion.restart()
    assert fusion.classical_outlier(T_network, diverged, T_classical)


def test_where_the_refinement_fails_the_network_counts_with_its_measured_gain():
    # in turns the network's yaw falls short by 30 %, which the fusion measures (its gain)
    # on the frames with all three; where the refinement then fails, classical VO's rotation
    # is tested against the network's as the fusion weighs it (not rejected as an outlier,
    # but fused), and without a classical one the network's is published with its gain
    fusion = _measured_in_turns()
    T_true, T_network = _motion(3.0, (0.0, 0.0, 1.0)), _motion(2.1, (0.0, 0.0, 1.0))
    failed = _track(T_true, reason="diverged")
    assert not fusion.classical_outlier(T_network, failed, T_true)
    for T_classical in (T_true, None):
        published = fusion.fuse(T_network, failed, T_classical).T_prev_cur
        assert _degrees(published[:3, :3], T_true[:3, :3]) < 0.15
    assert fusion.classical_rejections == 0


def test_a_classical_motion_that_followed_something_moving_is_no_start_for_the_refinement():
    # where the refinement from the network's motion failed, classical VO's motion is its
    # other start, unless its direction lies beyond chance from the network's (it followed
    # an object crossing the view); a turn on the spot has no direction and stays a start
    fusion = _fusion("fused")
    T_network, sideways = _motion(0.0, (0.0, 0.0, 1.0)), _motion(3.0, (1.0, 0.0, 0.1))
    assert not fusion.classical_start_rejected(T_network, sideways)  # nothing measured yet
    fusion = _measured_with_directions(fusion)
    assert fusion.classical_start_rejected(T_network, sideways)
    assert not fusion.classical_start_rejected(T_network, _motion(3.0, (0.01, 0.0, 1.0)))
    assert not fusion.classical_start_rejected(np.eye(4), sideways)  # standing still
    assert not fusion.classical_start_rejected(None, sideways)  # no network motion
    fusion.classical.last_turns_only = True
    assert not fusion.classical_start_rejected(T_network, sideways)


def test_classical_vo_is_given_the_network_motion_and_the_angle_beyond_chance():
    # classical VO tells the camera's motion from something crossing the view by the
    # network's (as the fusions weigh it) once the direction's variances are measured, with
    # the angle from it beyond which a direction is beyond chance (what classical_outlier
    # tests afterwards)
    fusion = _fusion("fused")
    T_network = _motion(0.0, (0.0, 0.0, 1.0))
    assert fusion.classical_prior(T_network) is None  # nothing measured yet
    fusion = _measured_with_directions(fusion)
    prior = fusion.classical_prior(T_network)
    np.testing.assert_allclose(prior.T_prev_cur, fusion.corrected_network(T_network))
    assert 0.5 < math.degrees(prior.max_angle) < 10  # the directions scatter by 0.6 degrees
    track = _track(_motion(0.05, (0.01, 0.0, 1.0)))
    for degrees, outlier in ((0.8, False), (1.2, True)):
        angle = degrees * prior.max_angle  # a sideways direction just inside, just beyond
        classical = _motion(0.0, (math.sin(angle), 0.0, math.cos(angle)))
        assert fusion.classical_outlier(T_network, _track(T_network), classical) == outlier
    assert not fusion.classical_outlier(T_network, track, _motion(0.0, (0.0, 0.0, 1.0)))
    fusion.classical.second_motions = 2  # the steps it found the camera's that way
    assert (
        fusion.diagnostics()["classical VO motion from a second rigid motion in view (frames)"]
        == "2"
    )
    assert fusion.classical_prior(np.eye(4)) is None  # standing still
    assert fusion.classical_prior(None) is None
    assert fusion.classical_prior(np.full((4, 4), np.nan)) is None


def test_a_mismatched_essential_matrix_is_left_out_of_rotation_and_direction():
    # ORB on repeated texture: the classical rotation 3 degrees off while the network's and
    # the refined one agree, and its fit claims 10x the usual variance. Its direction comes from
    # the same essential matrix: neither is fused nor measured
    fusion = _fusion("fused")
    fusion.classical.last_rotation_variance = 1.0  # the claims of a usual fit
    fusion = _measured_with_directions(fusion)
    T_network, T_refined = _motion(0.0, (0.0, 0.0, 1.0)), _motion(0.02, (0.01, 0.0, 1.0))
    mismatched = _motion(3.0, (0.3, 0.0, 1.0))
    directions = fusion.direction_fusion.variances
    fusion.classical.last_rotation_variance = 10.0
    published = fusion.fuse(T_network, _track(T_refined), mismatched).T_prev_cur
    assert fusion.rotation_fusion.last_mismatch
    assert fusion.diagnostics()["classical VO rotation mismatches left out (frames)"] == "1"
    assert fusion.rotation_fusion.last_weights[2] == 0 == fusion.direction_fusion.last_weights[2]
    assert fusion.direction_fusion.variances == directions  # not measured either
    assert _degrees(published[:3, :3], T_network[:3, :3]) < 0.05
    direction = published[:3, 3] / np.linalg.norm(published[:3, 3])
    assert math.degrees(math.acos(direction[2])) < 1.0  # 16.7 degrees for the mismatch's
    # the same rotation from a fit as good as usual (a sharp turn both others fall short of)
    fusion.classical.last_rotation_variance = 1.0
    fusion.fuse(T_network, _track(T_refined), _motion(3.0, (0.0, 0.0, 1.0)))
    assert not fusion.rotation_fusion.last_mismatch and fusion.rotation_fusion.last_weights[2] > 0


def test_a_pair_classical_vo_finds_only_turned_publishes_the_keyframe_aligned_translation():
    # over the last windows the network's displacement went sideways while the refined one
    # went ahead (a network whose learnt motion does not fit the camera, or one creeping on
    # through a stop); classical VO then finds a rotation alone between two frames (GRIC: no
    # parallax, a stop or a turn on the spot), so no frame-to-frame direction is measurable:
    # the refined translation, aligned with the keyframe, is published, as where the
    # directions' variances say so (7-Scenes stopped 20 frames: 25.9 steps travelled with the
    # fused direction, 1.3 with this: `benchmarks/RESULTS.md`)
    fusion = _measured_with_directions(_fusion("fused"))
    T_sideways, T_ahead = _motion(0.0, (1.0, 0.0, 0.0)), _motion(0.0, (0.0, 0.0, 1.0))
    for _ in range(30):
        fusion.fuse(T_sideways, _track(T_ahead), T_ahead)
    assert not fusion.window_direction.agrees and fusion.direction_fusion.usable
    T_network, T_refined = _motion(0.1, (0.5, 0.0, 0.0)), _motion(0.1, (0.0, 0.001, 0.002))
    T_turned = _motion(0.1, (0.0, 0.0, 0.0))
    for turns_only in (False, True):
        fusion.classical.last_turns_only = turns_only
        t = fusion.fuse(T_network, _track(T_refined), T_turned).T_prev_cur[:3, 3]
        if turns_only:
            np.testing.assert_array_equal(t, T_refined[:3, 3])
        else:
            assert np.linalg.norm(t) > 0.4  # the network's length

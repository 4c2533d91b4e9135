"""Translation directions fused by the variances their disagreements give."""

import math

import numpy as np
import pytest

from sfm_ros.core import direction_fusion
from sfm_ros.core.direction_fusion import DirectionFusion, direction_variance
from sfm_ros.core.errors import InputError


def _perturb(rng: np.random.Generator, u: np.ndarray, sigma: float) -> np.ndarray:
    """``u`` turned by a random small angle of std ``sigma`` (rad) per degree of freedom."""
    v = u + sigma * rng.standard_normal(3)
    v -= (v - u) @ u * u  # the step across u only
    return v / np.linalg.norm(v)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return math.atan2(np.linalg.norm(np.cross(a, b)), a @ b)


def _directions(rng: np.random.Generator) -> np.ndarray:
    u = np.array([0.1, 0.0, 1.0]) + 0.2 * rng.standard_normal(3)
    return u / np.linalg.norm(u)


def test_direction_variance_is_the_angle_variance_across_the_translation():
    rng = np.random.default_rng(0)
    t = np.array([0.3, -0.2, 2.0])
    A = rng.standard_normal((3, 3))
    cov = 1e-3 * (A @ A.T + np.outer(t, t))  # much of it along t: that moves no direction
    samples = t + rng.multivariate_normal(np.zeros(3), cov, size=20000)
    angles = [_angle(t, s) for s in samples]
    assert direction_variance(t, cov) == pytest.approx(np.mean(np.square(angles)) / 2, rel=0.05)
    assert direction_variance(t, np.outer(t, t)) == pytest.approx(0.0, abs=1e-12)


def test_three_directions_are_weighted_by_their_measured_variances():
    # the refinement claims the right variance up to an unknown factor (x4 here), the network
    # errs 3 degrees per degree of freedom, the refinement 1, the classical estimate 4 and is
    # missing on every third frame; lengths stay the network's
    rng = np.random.default_rng(1)
    sig_n, sig_r, sig_c = np.radians([3.0, 1.0, 4.0])
    fusion, errors = DirectionFusion(window=200), {"network": [], "refined": [], "fused": []}
    for i in range(400):
        u = _directions(rng)
        t_n = 2.5 * _perturb(rng, u, sig_n)
        t_r = 0.7 * _perturb(rng, u, sig_r)
        t_c = None if i % 3 == 0 else _perturb(rng, u, sig_c)
        cov = 4 * sig_r**2 * 0.7**2 * np.eye(3)
        t = fusion.fuse(t_n, t_r, cov, t_c)
        assert np.linalg.norm(t) == pytest.approx(2.5)
        for name, v in (("network", t_n), ("refined", t_r), ("fused", t)):
            errors[name].append(_angle(u, v))
    assert fusion.three_cornered and not fusion.directions_unmeasurable
    variances = fusion.variances
    for got, sigma in zip(variances, (sig_n, sig_r, sig_c), strict=True):
        assert got == pytest.approx(sigma**2, rel=0.3)
    rms = {k: np.sqrt(np.mean(np.square(v[50:]))) for k, v in errors.items()}
    assert rms["fused"] < 0.95 * rms["refined"] < 0.95 * rms["network"]
    assert fusion.last_weights[1] > fusion.last_weights[0]


def _shared_error_run(
    sigma_classical_deg: float, measure_shared: bool = True
) -> tuple[float, float, DirectionFusion]:
    """RMS angle errors (rad, after 50 frames) of the fused and the classical direction where
    the network's and the refined direction share a slowly wandering error of 2 degrees per
    degree of freedom (their own errors 0.5 and 1 degree), and the fusion."""
    rng, fusion, shared, errors = np.random.default_rng(3), DirectionFusion(), np.zeros(3), []
    with pytest.MonkeyPatch.context() as patch:
        if not measure_shared:
            patch.setattr(DirectionFusion, "shared_variance", property(lambda self: 0.0))
        for _ in range(300):
            u = _directions(rng)
            shared = 0.9 * shared + np.radians(2.0) * math.sqrt(1 - 0.81) * rng.normal(size=3)
            u_shared = _unit(u + shared - (shared @ u) * u)
            t_n = 2.0 * _perturb(rng, u_shared, np.radians(0.5))
            t_r = _perturb(rng, u_shared, np.radians(1.0))
            t_c = _perturb(rng, u, np.radians(sigma_classical_deg))
            t = fusion.fuse(t_n, t_r, np.radians(1.0) ** 2 * np.eye(3), t_c)
            errors.append((_angle(u, t), _angle(u, t_c)))
    fused, classical = np.sqrt(np.mean(np.square(errors[50:]), axis=0))
    return fused, classical, fusion


def test_an_error_the_network_and_the_refined_direction_share_is_measured():
    # both directions lean on the same network: they share an error (KITTI 06: a covariance
    # 8x the classical variance) which the plain three-cornered hat would charge to classical
    # VO's direction, here 0.5 degrees
    fused, classical, fusion = _shared_error_run(0.5)
    assert fusion.shared_variance > 2 * fusion.variances[2]
    assert fused < 1.4 * classical
    assert _shared_error_run(0.5, measure_shared=False)[0] > 2 * fused  # 2.7x


def test_a_shared_error_is_not_credited_where_the_classical_direction_is_the_worse():
    # classical VO's direction errs 6 degrees (ORB on grass): worse than the other two taken
    # together even with their shared error, so crediting it would only move weight to it
    _, _, fusion = _shared_error_run(6.0)
    assert fusion.shared_variance == 0.0
    assert fusion.last_weights[2] < 0.1
    assert DirectionFusion().variances == (0.0, 0.0, math.inf)  # nothing measured yet


def test_before_the_variances_are_measured_the_two_agreeing_directions_are_averaged():
    # without a classical direction the network's translation is kept; with one, until five
    # classical frames make the variances measurable (the 7th frame), the mean of the two
    # directions that agree best, so a network direction 10 degrees off is left out; then
    # they are fused
    rng = np.random.default_rng(2)
    fusion = DirectionFusion(min_classical=5)
    cov = 1e-4 * np.eye(3)
    for i in range(8):
        u = _directions(rng)
        t_r, t_c = _perturb(rng, u, 0.01), _perturb(rng, u, 0.01)
        t_n = 1.5 * _unit(np.cross(u, [0.0, 1.0, 0.0]) * 0.18 + u)  # about 10 degrees off
        t = fusion.fuse(t_n, t_r, cov, None if i < 2 else t_c)  # classical from the 3rd frame
        assert np.linalg.norm(t) == pytest.approx(1.5)  # the network's length
        if i < 2:
            np.testing.assert_array_equal(t, t_n)
            assert fusion.last_weights == (1.0, 0.0, 0.0)
        elif i < 6:
            assert fusion.last_weights == (0.0, 0.5, 0.5)
            np.testing.assert_allclose(_unit(t), _unit(_unit(t_r) + _unit(t_c)), atol=1e-12)
            assert _angle(t, u) < np.radians(3.0)
        else:
            assert fusion.three_cornered
        assert not fusion.directions_unmeasurable  # not measured yet, then measured


def test_before_the_variances_are_measured_a_far_refined_direction_leaves_the_other_two_mean():
    # KITTI 06's first frames: the refined direction errs 10 degrees, the network's 2 on the
    # same side and the classical one 0.5 on the other. The network's is the closest to the
    # other two (taken alone it would be kept, 2 degrees off); the mean of the agreeing pair
    # errs 0.75
    def yawed(deg: float) -> np.ndarray:
        a = np.radians(deg)
        return np.array([np.sin(a), 0.0, np.cos(a)])

    truth, fusion, cov = yawed(0.0), DirectionFusion(min_classical=5), 1e-4 * np.eye(3)
    for _ in range(4):
        t = fusion.fuse(2.0 * yawed(2.0), yawed(10.0), cov, yawed(-0.5))
        assert not fusion.three_cornered and fusion.last_weights == (0.5, 0.0, 0.5)
        assert np.degrees(_angle(t, truth)) == pytest.approx(0.75, abs=1e-6)
        assert np.linalg.norm(t) == pytest.approx(2.0)


def test_until_the_network_slow_error_is_measured_a_noisy_refined_direction_splits_nothing():
    # KITTI 06's frames 7-14: the variances are measured, but the refined direction errs far
    # more than the other two (here 6 and 14 degrees, on the network's side) and the network's
    # slow error is not measured yet. The hat's split of the network-classical disagreement
    # is then the difference of the refined one's two disagreements, noise: it gave the
    # network, 2 degrees off, 0.97 of the weight. The two that agree are averaged instead, as
    # before the variances are measured, and a frame without the refined direction averages
    # the other two; once the slow error is measured, the variances weigh them
    def yawed(deg: float) -> np.ndarray:
        a = np.radians(deg)
        return np.array([np.sin(a), 0.0, np.cos(a)])

    truth, fusion, cov = yawed(0.0), DirectionFusion(min_classical=5), 1e-4 * np.eye(3)
    t_network, t_classical = 2.0 * yawed(2.0), yawed(-0.5)
    for i in range(4):
        fusion.fuse(t_network, yawed(14.0 if i % 2 else 6.0), cov, t_classical)
    assert not fusion.split_unmeasured  # not three-cornered yet
    t = fusion.fuse(t_network, yawed(6.0), cov, t_classical)
    assert fusion.three_cornered and fusion.split_unmeasured
    assert fusion.last_weights == (0.5, 0.0, 0.5)
    assert np.degrees(_angle(t, truth)) == pytest.approx(0.75, abs=1e-6)
    t = fusion.fuse_without_refined(t_network, t_classical)
    assert fusion.last_weights == (0.5, 0.0, 0.5) and np.degrees(_angle(t, truth)) <= 0.75
    for i in range(6):
        fusion.fuse(t_network, yawed(14.0 if i % 2 else 6.0), cov, t_classical)
    assert not fusion.split_unmeasured and fusion.last_weights[2] > 0.8


def _across(u: np.ndarray, error: np.ndarray) -> np.ndarray:
    """``u`` moved by the part of the (3,) ``error`` across it, as a unit vector."""
    v = u + error - error @ u * u
    return v / np.linalg.norm(v)


def _slow_error_run(
    seed: int, sigmas_deg: tuple[float, float, float], slow: int, frames: int = 150
) -> tuple[DirectionFusion, dict[str, float]]:
    """A fusion over ``frames`` frames whose network, refined and classical directions err by
    ``sigmas_deg`` per degree of freedom, white but for estimate ``slow`` (0, 1, 2), whose
    error stays over frames (0.95 of it carried to the next); and the rms errors (degrees) of
    each and of the fused direction after the first 50 frames."""
    rng, (sig_n, sig_r, sig_c) = np.random.default_rng(seed), np.radians(sigmas_deg)
    fusion, carried, errors = DirectionFusion(), np.zeros(3), {k: [] for k in "nrcf"}
    for i in range(frames):
        u = _directions(rng)
        sig = (sig_n, sig_r, sig_c)
        carried = 0.95 * carried + math.sqrt(1 - 0.95**2) * sig[slow] * rng.standard_normal(3)
        t_n, t_r, t_c = (
            _across(u, carried if k == slow else sig[k] * rng.standard_normal(3)) for k in range(3)
        )
        t = fusion.fuse(2.0 * t_n, t_r, sig_r**2 * np.eye(3), t_c)
        if i >= 50:
            for key, v in zip("nrcf", (t_n, t_r, t_c, t), strict=True):
                errors[key].append(_angle(u, v))
    return fusion, {k: math.degrees(math.sqrt(np.mean(np.square(v)))) for k, v in errors.items()}


@pytest.mark.parametrize("seed", range(6))
def test_a_far_noisier_refined_direction_leaves_the_network_slow_error_measured(seed):
    # KITTI: the refined direction errs 5 degrees (white), the network's 0.6 with an error that
    # stays over frames, classical VO's 0.25 (white). The hat splits the network-classical
    # disagreement by the refined one's two disagreements, whose difference is noise here (it
    # gave the network the smaller variance on seeds 0 and 3: fused 0.48 and 0.40 degrees
    # against the classical 0.32 and 0.35); the network's slow error, measured from its
    # disagreements with the classical direction two frames apart, floors its variance
    fusion, rms = _slow_error_run(seed, (0.6, 5.0, 0.25), slow=0)
    assert rms["f"] < 1.1 * rms["c"] and rms["c"] < rms["n"]
    # what the network's offset correction (`DirectionBias`) leaves of its 0.6 degrees
    assert 0.25 < math.degrees(math.sqrt(fusion.slow_network_variance)) < 0.9


def test_the_network_slow_error_is_left_to_the_hat_where_the_refined_direction_is_precise(
    monkeypatch,
):
    # the refined direction errs 0.3 degrees, the network's 0.4 (white), classical VO's 1.0 and
    # it stays over frames (ORB on repeated texture): the slow error measured between the
    # network and the classical direction is the classical one's, and the hat, well posed
    # here, keeps the network's variance
    variances = {}
    for ratio in (direction_fusion.NOISY_REFINED_RATIO, math.inf, 0.0):
        monkeypatch.setattr(direction_fusion, "NOISY_REFINED_RATIO", ratio)
        fusion, _ = _slow_error_run(0, (0.4, 0.3, 1.0), slow=2)
        variances[ratio] = fusion.variances
    gated, plain, floored = variances.values()
    assert gated == plain
    # without the condition the floor would have moved variance from classical to the network
    assert floored[0] > plain[0] and floored[2] < plain[2]


def test_a_stop_keeps_the_network_translation_and_the_variances():
    rng = np.random.default_rng(3)
    fusion, cov = DirectionFusion(), 1e-4 * np.eye(3)
    for _ in range(40):
        u = _directions(rng)
        fusion.fuse(_perturb(rng, u, 0.03), _perturb(rng, u, 0.01), cov, _perturb(rng, u, 0.05))
    before = fusion.variances
    for _ in range(10):  # standing still: tiny translations in random directions
        t_n, t_r, t_c = 1e-3 * rng.standard_normal((3, 3))
        np.testing.assert_array_equal(fusion.fuse(t_n, t_r, cov, t_c), t_n)
    assert fusion.variances == before


def test_directions_that_all_scatter_by_tens_of_degrees_keep_the_network_translation():
    # small translations at a high frame rate: no direction is known within max_sigma, and
    # the small-angle model behind the weights does not hold (the estimated sigmas, about 35-45
    # degrees here, scatter too: a frame or two may pass early on); the fusion says so, for
    # a caller with a keyframe-aligned translation to publish that instead
    rng = np.random.default_rng(4)
    fusion, cov = DirectionFusion(max_sigma=np.radians(20)), np.radians(80) ** 2 * np.eye(3)
    kept = []
    for _ in range(60):
        u = _directions(rng)
        t_n, t_r, t_c = (_perturb(rng, u, np.radians(80)) for _ in range(3))
        kept.append(np.array_equal(fusion.fuse(t_n, t_r, cov, t_c), t_n))
    assert sum(kept) >= 55 and all(kept[-30:])
    assert fusion.three_cornered and not fusion.usable and fusion.directions_unmeasurable
    assert min(fusion.variances) > np.radians(20) ** 2
    assert fusion.last_weights == (1.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "t_network, t_refined, cov, t_classical",
    [
        ([np.nan, 0, 1], [0, 0, 1], np.eye(3), None),
        ([0, 0, 1], [0, 0, 0], np.eye(3), None),
        ([0, 0, 1], [0, 0, 1], np.zeros((3, 3)), None),
        ([0, 0, 1], [0, 0, 1], np.eye(3), [np.inf, 0, 1]),
        ([0, 0, 1], [0, 0, 1], np.eye(2), None),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(t_network, t_refined, cov, t_classical):
    fusion = DirectionFusion()
    fusion.fuse(np.array([0.0, 0.0, 1.0]), np.array([0.01, 0.0, 1.0]), 1e-4 * np.eye(3))
    state = dict(vars(fusion))
    with pytest.raises(InputError):
        fusion.fuse(
            np.array(t_network, float), np.array(t_refined, float), cov,
            None if t_classical is None else np.array(t_classical, float),
        )  # fmt: skip
    assert vars(fusion) == state


def test_without_the_refined_direction_the_other_two_are_weighed_by_the_measured_variances():
    rng = np.random.default_rng(4)
    fusion = DirectionFusion()
    u_kept = _directions(rng)
    assert np.array_equal(fusion.fuse_without_refined(2 * u_kept, u_kept), 2 * u_kept)  # no
    for _ in range(60):  # variances yet: the network's translation
        u = _directions(rng)
        t_n, t_r, t_c = (_perturb(rng, u, s) for s in np.radians([3.0, 6.0, 1.0]))
        fusion.fuse(2.0 * t_n, t_r, np.radians(6.0) ** 2 * np.eye(3), t_c)
    var_n, _, var_c = before = fusion.variances
    u = _directions(rng)
    t_n, t_c = 2.0 * _perturb(rng, u, np.radians(3.0)), _perturb(rng, u, np.radians(1.0))
    t = fusion.fuse_without_refined(t_n, t_c)
    w_c = (1 / var_c) / (1 / var_n + 1 / var_c)
    expected = (1 - w_c) * t_n / 2.0 + w_c * t_c
    np.testing.assert_allclose(t, 2.0 * expected / np.linalg.norm(expected), atol=1e-12)
    assert fusion.last_weights == pytest.approx((1 - w_c, 0.0, w_c))
    assert w_c > 0.6 and fusion.variances == before
    with pytest.raises(InputError):
        fusion.fuse_without_refined(np.zeros(3), t_c)


def _pulled_run(
    pulled: int, leave_out: bool, classical_used: bool = False
) -> tuple[list[float], list[float]]:
    """Angle errors (degrees) of the fused direction on 40 frames of a vehicle's slowly turning
    direction of travel (the network's errs 2 degrees per degree of freedom, the refined one
    0.5, the classical one 1), then on 8 frames where something moving pulls estimate
    ``pulled`` (0 the network's, 1 the refined one) 25 degrees aside and the classical one 90
    (left out, as `MotionFusion.classical_outlier` leaves it, unless ``classical_used``: its
    variance grown too large for that test); with ``leave_out`` False,
    `DirectionFusion.near_last` switched off."""
    rng, fusion = np.random.default_rng(7), DirectionFusion()
    sigmas = np.radians([2.0, 0.5, 1.0])
    aside = np.array(
        [[math.cos(0.44), 0, math.sin(0.44)], [0, 1, 0], [-math.sin(0.44), 0, math.cos(0.44)]]
    )
    normal, crossing = [], []
    with pytest.MonkeyPatch.context() as patch:
        if not leave_out:
            patch.setattr(DirectionFusion, "near_last", lambda *args: -1)
        for i in range(48):
            u = _unit(np.array([0.1 * math.sin(i / 8), 0.02, 1.0]))
            t = [_perturb(rng, u, s) for s in sigmas]
            moved = i >= 40
            if moved:
                t[pulled] = aside @ t[pulled]
                t[2] = _unit(np.cross(u, [0.0, 1.0, 0.0]))  # the object's motion
            # a refinement pulled by a textured object claims to fit it well
            cov = sigmas[1] ** 2 * np.eye(3) / (16 if moved and pulled == 1 else 1)
            use_classical = classical_used or not moved
            fused = fusion.fuse(2.0 * t[0], t[1], cov, t[2], use_classical=use_classical)
            (crossing if moved else normal).append(math.degrees(_angle(u, fused)))
    return normal, crossing


@pytest.mark.parametrize(("pulled", "classical_used"), [(1, False), (0, False), (1, True)])
def test_where_no_two_directions_agree_the_one_nearest_the_last_is_kept(pulled, classical_used):
    normal, crossing = _pulled_run(pulled, True, classical_used)
    normal_before, crossing_before = _pulled_run(pulled, False, classical_used)
    assert normal == normal_before  # within chance the rule does nothing
    kept_sigma = 2.0 if pulled == 1 else 0.5  # degrees per degree of freedom
    assert max(crossing) < 4 * kept_sigma
    if pulled == 1:  # the hat trusts the refined direction: without the rule it is pulled
        assert max(crossing_before) > 4 * kept_sigma
        assert np.mean(crossing) < 0.5 * np.mean(crossing_before)


@pytest.mark.parametrize("pulled", [None, 2])
def test_where_the_refinement_failed_a_classical_direction_beyond_chance_is_left_out(pulled):
    """Frames whose refinement failed, after 40 with all three: where the classical direction
    is pulled 30 degrees aside (something moving), the network's is kept alone even after the
    pull has inflated the variances; otherwise both are weighted as measured."""
    rng, fusion = np.random.default_rng(11), DirectionFusion()
    sigmas = np.radians([2.0, 0.5, 1.0])
    turn = math.radians(30.0)
    aside = np.array(
        [[math.cos(turn), 0, math.sin(turn)], [0, 1, 0], [-math.sin(turn), 0, math.cos(turn)]]
    )
    errors, weights = [], []
    for i in range(46):
        u = _unit(np.array([0.1 * math.sin(i / 8), 0.02, 1.0]))
        t = [_perturb(rng, u, s) for s in sigmas]
        if i < 40:
            fusion.fuse(2.0 * t[0], t[1], sigmas[1] ** 2 * np.eye(3), t[2])
            continue
        if pulled is not None:
            t[pulled] = aside @ t[pulled]
        fused = fusion.fuse_without_refined(2.0 * t[0], t[2])
        errors.append(math.degrees(_angle(u, fused)))
        weights.append(fusion.last_weights)
    if pulled == 2:
        assert all(w == (1.0, 0.0, 0.0) for w in weights)
        assert max(errors) < 4 * math.degrees(sigmas[0])
    else:  # the classical direction, the better, carries most of the weight
        assert all(w[2] > 0.5 for w in weights)


def _followed_run(
    stop_before: bool, max_turn: float | None, network_sigma_deg: float = 2.0
) -> tuple[list[float], DirectionFusion]:
    """Angle errors (degrees) of the fused direction on 6 frames, after 40 of a vehicle's slowly
    turning direction of travel (the network's errs ``network_sigma_deg`` per degree of
    freedom, the refined one 0.5, the classical one 1), on which the refined and the classical
    direction both follow something moving: 130 degrees aside, within a degree of each other
    (the refinement claiming to fit it well). With ``stop_before``, a stop (the network's
    translation a tenth of its length) comes between. ``max_turn``: `DirectionFusion.fuse`'s."""
    rng, fusion = np.random.default_rng(5), DirectionFusion()
    sigmas = np.radians([network_sigma_deg, 0.5, 1.0])
    errors = []
    for i in range(46 + stop_before):
        u = _unit(np.array([0.1 * math.sin(i / 8), 0.02, 1.0]))
        t = [_perturb(rng, u, s) for s in sigmas]
        length, cov = 2.0, sigmas[1] ** 2 * np.eye(3)
        if stop_before and i == 40:
            length = 0.2
        elif i >= 40:
            away = _unit(np.array([math.sin(2.27), 0.0, math.cos(2.27)]))
            t[1], t[2] = _perturb(rng, away, sigmas[1]), _perturb(rng, away, sigmas[1])
            cov = cov / 16
        fused = fusion.fuse(length * t[0], t[1], cov, t[2], max_turn=max_turn)
        if i >= 40 + stop_before:
            errors.append(math.degrees(_angle(u, fused)))
    return errors, fusion


def test_a_camera_under_way_turns_its_direction_of_travel_only_so_far_within_a_frame():
    # a car at 10 m/s filmed at 10 Hz: 29 degrees at 5 g; a handheld camera moving 7 mm a
    # frame at 30 Hz (7-Scenes) any way
    turn = direction_fusion.plausible_turn(1.0, 0.1)
    assert math.degrees(turn) == pytest.approx(28.96, abs=0.01)
    speed = 1.0 / 0.1  # m/s; the acceleration that turns it so within the interval:
    assert 2 * speed * math.sin(turn / 2) / 0.1 == pytest.approx(direction_fusion.MAX_ACCELERATION)
    assert direction_fusion.plausible_turn(2.0, 0.1) < turn  # faster, less
    assert direction_fusion.plausible_turn(0.007, 1 / 30) is None
    assert direction_fusion.plausible_turn(1.0, None) is None


def test_where_the_directions_as_weighted_turn_away_from_the_last_one_stays_on_course():
    """Two estimates that follow the same moving thing agree and, weighted, outvote the
    network's direction; a car at 20 m/s does not turn its direction of travel 130 degrees
    within a frame, so the one within half of `MAX_TURN_DEG` of the last is kept. Not where
    the camera may turn so (slow, or the interval not known); after a stop (the camera may
    reverse) the rule waits for the next moving frame; nor where the one near the last does
    not know the direction within half of that turn (its sigma 8 degrees: 30 at the 99.9th
    percentile)."""
    car = direction_fusion.plausible_turn(2.0, 0.1)
    held, fusion = _followed_run(False, car)
    assert max(held) < 4 * 2.0 and fusion.held_course == len(held)
    followed, fusion = _followed_run(False, None)
    assert min(followed) > 90 and fusion.held_course == 0  # the two carry the weight
    noisy, fusion = _followed_run(False, car, network_sigma_deg=8.0)
    assert min(noisy) > 90 and fusion.held_course == 0
    after_stop, fusion = _followed_run(True, car)
    assert after_stop[0] > 90  # the first frame after the stop is free to turn
    assert max(after_stop[1:]) > 90  # and the two then are the course
    assert fusion.held_course == 0

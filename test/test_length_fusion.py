"""Frame-to-frame translation length: the network's steadied by the refined and the classical
changes of length, weighted by the variances their disagreements give."""

import math

import numpy as np
import pytest

from sfm_ros.core import length_fusion
from sfm_ros.core.errors import InputError
from sfm_ros.core.length_fusion import LengthFusion

FRAMES = 300


def lengths_with_ratio_errors(rng, true, sigma):
    """Lengths whose frame-to-frame log ratios err by ``sigma`` (independently per frame)."""
    steps = np.diff(np.log(true)) + sigma * rng.standard_normal(len(true) - 1)
    return np.exp(np.log(true[0]) + np.concatenate([[0.0], np.cumsum(steps)]))


def ratios(rng, true, sigma):
    out = true / np.roll(true, 1) * np.exp(sigma * rng.standard_normal(len(true)))
    out[0] = math.nan
    return out


def run(fusion, network, refined, classical, claims):
    return np.array(
        [fusion.fuse(*args) for args in zip(network, refined, classical, claims, strict=True)]
    )


def step_error(lengths, true):
    """rms error of the frame-to-frame log length ratios."""
    return float(np.sqrt(np.mean((np.diff(np.log(lengths)) - np.diff(np.log(true))) ** 2)))


@pytest.fixture
def motion():
    rng = np.random.default_rng(0)
    true = 1.0 + 0.3 * np.sin(np.arange(FRAMES) / 15)  # a vehicle speeding up and slowing down
    network = true * np.exp(0.1 * rng.standard_normal(FRAMES))  # 10 % from frame to frame
    refined = 2.0 * lengths_with_ratio_errors(rng, true, 0.15)  # its own units
    return rng, true, network, refined


def test_accurate_classical_ratios_steady_a_noisy_network_length(motion):
    rng, true, network, refined = motion
    fusion = LengthFusion()
    claims = np.full(FRAMES, 1e-4)
    fused = run(fusion, network, refined, ratios(rng, true, 0.02), claims)
    assert step_error(fused, true) < 0.4 * step_error(network, true)
    assert fusion.last_weights[2] > 0.7
    # the pull keeps the network's scale: no drift over the clip
    assert abs(np.log(fused[-100:] / true[-100:]).mean()) < 0.05


def test_an_error_the_network_and_the_refinement_share_is_not_charged_to_classical_vo(motion):
    # both lengths follow the depth network's scale, which waves by +-30 % over about 15
    # frames (KITTI 06); the classical ratios err by 3 %: measured against the steady speed,
    # the classical estimate gets the weight its errors earn
    rng, true, _, _ = motion
    wave = 0.3 * np.sin(np.arange(FRAMES) / 2.5)
    network = true * np.exp(wave + 0.05 * rng.standard_normal(FRAMES))
    refined = 2.0 * true * np.exp(wave + 0.1 * rng.standard_normal(FRAMES))
    fusion = LengthFusion()
    fused = run(fusion, network, refined, ratios(rng, true, 0.03), np.full(FRAMES, 1e-4))
    assert fusion.network_hat.variances[2] == pytest.approx(0.03**2, rel=0.5)
    assert fusion.last_weights[2] > 0.6
    assert step_error(fused, true) < 0.5 * step_error(network, true)


class FixedPull(LengthFusion):
    """The former fusion: a fixed weight of the network's log length."""

    def _gain(self, step_variance, innovation, network_only):
        return self.pull


def window_error(lengths, true, frames=5):
    """rms error of the log length ratios over ``frames`` frames (how far a short stretch of
    trajectory is off in length, as the 5-frame ATE sees it)."""
    log = np.log(lengths) - np.log(true)
    return float(np.sqrt(np.mean((log[frames:] - log[:-frames]) ** 2)))


def test_a_network_length_that_wanders_is_pulled_less(motion):
    # KITTI: the network's length waves by +-20 % over about 15 frames while the classical
    # ratios err by 1 %: the Kalman gain trusts the chain over the network's wander, and a
    # short stretch's length errs less than with the fixed pull
    rng, true, _, _ = motion
    network = true * np.exp(0.2 * np.sin(np.arange(FRAMES) / 2.5))
    refined = 2.0 * network * np.exp(0.1 * rng.standard_normal(FRAMES))
    classical, claims = ratios(rng, true, 0.01), np.full(FRAMES, 1e-4)
    fusion = LengthFusion()
    fused = run(fusion, network, refined, classical, claims)
    fixed = run(FixedPull(), network, refined, classical, claims)
    assert fusion.last_pull < 0.1
    assert window_error(fused, true) < 0.6 * window_error(fixed, true)
    assert abs(np.log(fused[-100:] / true[-100:]).mean()) < 0.05  # the scale kept


def test_a_network_length_error_that_stays_over_frames_counts_as_fewer_measurements(
    motion, monkeypatch
):
    # the depth's scale wanders: an AR(1) error of 15 % keeping 0.9 of itself from frame to
    # frame; its correlation, from its step variance against its level's, makes it weigh as
    # the few independent measurements it is, and the fused length keeps its scale over 2x
    # better than if each frame counted; white errors of the same size keep their pull
    rng, true, _, _ = motion
    wander = np.zeros(FRAMES)
    for i in range(1, FRAMES):
        wander[i] = 0.9 * wander[i - 1] + 0.15 * math.sqrt(1 - 0.9**2) * rng.standard_normal()
    white = 0.15 * rng.standard_normal(FRAMES)
    classical, claims = ratios(rng, true, 0.01), np.full(FRAMES, 1e-4)
    refined_error = 0.1 * rng.standard_normal(FRAMES)

    def scale_error(log_error: np.ndarray) -> tuple[float, float]:
        network = true * np.exp(log_error)
        refined = 2.0 * network * np.exp(refined_error)
        fusion = LengthFusion()
        fused = run(fusion, network, refined, classical, claims)
        return float(np.std(np.log(fused / true)[100:])), fusion.last_pull

    (wandering, pull), (_, white_pull) = scale_error(wander), scale_error(white)
    monkeypatch.setattr(length_fusion, "MAX_CORRELATION", 0.0)
    (counted_each, _), (_, white_pull_each) = scale_error(wander), scale_error(white)
    assert wandering < 0.05 and counted_each > 2 * wandering
    assert pull < white_pull and white_pull == pytest.approx(white_pull_each, rel=0.2)


class KeptClosed(LengthFusion):
    """A step only the network gives leaves the chain's variance as it is."""

    def _gain(self, step_variance, innovation, network_only):
        return super()._gain(step_variance, innovation, False)


def test_a_step_only_the_network_gives_does_not_move_the_scale_for_good(motion):
    # faults: on three frames no classical ratio is usable and the network's length jumps by
    # +0.4 in log for that frame; the chain takes the step (the next frame's classical ratio
    # does not undo it), but its variance is opened to a measurement's, so it returns to the
    # network's scale within a few frames, where the small gain of a steady chain keeps it
    rng, true, _, _ = motion
    wander = np.zeros(FRAMES)
    for i in range(1, FRAMES):
        wander[i] = 0.9 * wander[i - 1] + 0.15 * math.sqrt(1 - 0.9**2) * rng.standard_normal()
    network = true * np.exp(wander)
    classical, claims = ratios(rng, true, 0.01), np.full(FRAMES, 1e-4)
    faults = (100, 150, 200)
    for frame in faults:
        network[frame] *= math.exp(0.4)
        classical[frame] = math.nan
    refined = 2.0 * network * np.exp(0.1 * rng.standard_normal(FRAMES))

    def scale_after_faults(fusion: LengthFusion) -> float:
        fused = run(fusion, network, refined, classical, claims)
        return float(np.mean(np.log(fused / true)[210:]) - np.mean(np.log(fused / true)[50:100]))

    opened, closed = scale_after_faults(LengthFusion()), scale_after_faults(KeptClosed())
    assert abs(opened) < 0.15 and closed > 2 * abs(opened)


def test_a_good_network_length_keeps_the_largest_pull(motion):
    # the world the network learnt: its length errs by 1 %, the classical ratios by 5 %
    rng, true, _, refined = motion
    network = true * np.exp(0.01 * rng.standard_normal(FRAMES))
    fusion = LengthFusion()
    fused = run(fusion, network, refined, ratios(rng, true, 0.05), np.full(FRAMES, 1e-4))
    assert fusion.last_pull == fusion.pull
    assert step_error(fused, true) < 1.2 * step_error(network, true)


def test_classical_ratios_steady_the_length_where_the_refinement_falls_back(motion):
    # the refinement falls back on every other frame (KITTI 06's first frames): no frame has a
    # refined step, and the network's length is still steadied by the classical ratios
    rng, true, network, refined = motion
    refined = [None if i % 2 else length for i, length in enumerate(refined)]
    fusion = LengthFusion()
    fused = run(fusion, network, refined, ratios(rng, true, 0.02), np.full(FRAMES, 1e-4))
    assert not fusion.refined_hat.three_cornered and fusion.last_weights[1] == 0.0
    assert step_error(fused[:30], true[:30]) < 0.4 * step_error(network[:30], true[:30])


def test_bad_classical_ratios_with_small_claims_hardly_count(motion):
    """Its claim does not set its weight, the disagreements do: 30 % errors claimed as 1 %."""
    rng, true, network, refined = motion
    fusion = LengthFusion()
    classical = np.clip(ratios(rng, true, 0.3), 0.51, 1.99)
    fused = run(fusion, network, refined, classical, np.full(FRAMES, 1e-4))
    assert fusion.last_weights[2] < 0.2
    assert step_error(fused, true) < 1.1 * step_error(network, true)


def test_without_classical_ratios_the_length_is_the_networks(motion):
    _, _, network, refined = motion
    nan = np.full(FRAMES, math.nan)
    np.testing.assert_allclose(run(LengthFusion(), network, refined, nan, nan), network)


def test_a_stop_restarts_the_chain_and_wrong_ratios_are_ignored():
    fusion = LengthFusion(min_classical=1)
    for _ in range(10):
        fusion.fuse(1.0, 1.0, 1.0, 1e-4)
    assert fusion.fuse(0.0, None, 1.0, 1e-4) == 0.0  # a stop keeps the network's length
    assert fusion.fuse(1.2, 1.0, 1.5, 1e-4) == 1.2  # and the next frame starts from it
    assert fusion.fuse(1.2, 1.0, 3.0, 1e-4) == pytest.approx(1.2)  # beyond max_ratio: unused
    assert fusion.last_weights == (1.0, 0.0, 0.0)


def test_bad_input_raises_and_leaves_the_state_alone():
    fusion = LengthFusion()
    assert fusion.fuse(1.0, None, math.nan, math.nan) == 1.0
    for bad in ((math.nan, None), (math.inf, 1.0), (-1.0, 1.0), (1.0, math.nan)):
        with pytest.raises(InputError):
            fusion.fuse(*bad, 1.0, 1e-4)
    assert fusion.fuse(1.1, None, math.nan, math.nan) == pytest.approx(1.1)
    with pytest.raises(InputError):
        LengthFusion(pull=0.0)

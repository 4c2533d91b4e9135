"""The translation length anchored to the refined (depth-consistent) lengths."""

import numpy as np
import pytest

from sfm_ros.core.errors import InputError
from sfm_ros.core.length_anchor import LengthAnchor


def test_slow_scale_wander_is_corrected_without_the_refined_jitter():
    # the network's scale wanders slowly (x0.7 .. x1.5), the refined lengths are right on
    # average but jump by 15 % from frame to frame: the anchored length is close to the truth
    # and far smoother than the refined one
    rng = np.random.default_rng(0)
    n = 300
    true = 1.0 + 0.2 * np.sin(np.arange(n) / 15)
    network = true * np.exp(0.38 * np.sin(np.arange(n) / 60) + 0.1)
    refined = true * np.exp(rng.normal(0, 0.15, n))
    anchor = LengthAnchor()
    anchored = np.array([network[i] * anchor.update(network[i], refined[i]) for i in range(n)])
    errors = {
        name: np.log(x / true)[30:] for name, x in
        (("network", network), ("refined", refined), ("anchored", anchored))
    }  # fmt: skip
    rms = {k: float(np.sqrt(np.mean(e**2))) for k, e in errors.items()}
    jitter = {k: float(np.std(np.diff(e))) for k, e in errors.items()}
    assert rms["anchored"] < 0.35 * rms["network"]
    assert rms["anchored"] < 0.1
    assert jitter["anchored"] < 0.25 * jitter["refined"]


def test_ratio_starts_at_one_and_follows_a_constant_scale():
    anchor = LengthAnchor()
    assert anchor.ratio == 1.0 and anchor.frames == 0
    assert anchor.update(2.0, None) == 1.0  # a fallback frame: nothing to learn from
    assert anchor.update(2.0, 3.0) == pytest.approx(1.5)  # the first frame sets it
    for _ in range(50):
        anchor.update(2.0, 1.0)
    assert anchor.ratio == pytest.approx(0.5, rel=0.01)


def test_a_stop_leaves_the_ratio_alone():
    # stopped, the refined length is refinement noise, the network's nearly 0
    anchor = LengthAnchor()
    for _ in range(20):
        anchor.update(1.0, 1.2)
    before = anchor.ratio
    for _ in range(200):
        anchor.update(0.01, 0.05)
    assert anchor.ratio == before
    assert anchor.update(1.0, 1.2) == pytest.approx(before)


def test_one_wild_refined_length_is_bounded():
    anchor = LengthAnchor(max_ratio=4.0)
    for _ in range(20):
        anchor.update(1.0, 1.0)
    anchor.update(1.0, 1e6)
    assert anchor.ratio == pytest.approx(1.0 + 0.1 * (4.0 - 1.0), rel=1e-9)


def test_scales_that_differ_beyond_the_bound_are_followed():
    # on a phone at 30 Hz the refined lengths were a fifth of the network's or less: the bound
    # is on one frame against the ratio so far, not on the ratio (it stuck at 1 / 4)
    anchor, rng = LengthAnchor(max_ratio=4.0), np.random.default_rng(0)
    for _ in range(100):
        anchor.update(1.0, 0.1 * np.exp(rng.normal(scale=0.15)))
    assert anchor.ratio == pytest.approx(0.1, rel=0.1)
    anchor.update(1.0, 1e6)  # and one wild frame is still bounded, now around 0.1
    assert anchor.ratio < 0.1 * (1 + 0.1 * 4.0) * 1.1


@pytest.mark.parametrize("lengths", [(np.nan, 1.0), (1.0, np.inf), (-1.0, 1.0), (1.0, -0.5)])
def test_bad_lengths_are_refused_without_changing_the_state(lengths):
    anchor = LengthAnchor()
    anchor.update(1.0, 2.0)
    with pytest.raises(InputError, match="finite"):
        anchor.update(*lengths)
    assert anchor.ratio == 2.0 and anchor.frames == 1


@pytest.mark.parametrize(
    "kwargs",
    [dict(smoothing=0.0), dict(smoothing=1.5), dict(min_speed_ratio=1.0), dict(max_ratio=1.0)],
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(InputError):
        LengthAnchor(**kwargs)


def test_a_stop_is_a_refined_length_far_below_its_mean_while_the_network_slows_down():
    anchor = LengthAnchor(min_speed_ratio=0.25, network_stop_ratio=0.5)
    assert not anchor.stop(0.0, 0.0)  # nothing to compare with yet
    for _ in range(10):
        anchor.update(2.0, 1.0)  # moving: network 2.0 and refined 1.0 a frame
    assert anchor.stop(0.3, 0.01) and anchor.stop(0.9, 0.2)  # a creeping network
    assert not anchor.stop(0.3, 0.3)  # the refinement sees motion
    assert not anchor.stop(1.1, 0.01)  # a noisy refined length while the network keeps on
    anchor.update(0.3, 0.01)  # a stop (by either length) leaves the means alone
    assert anchor.ratio == pytest.approx(0.5)
    anchor.update(0.9, 0.1)
    assert anchor.ratio == pytest.approx(0.5)
    assert anchor.stop(0.9, 0.2) and not anchor.stop(0.9, 0.3)


def test_a_network_that_keeps_its_speed_stops_after_three_low_refined_lengths():
    # a pose network that does not see the stop (on the phone video down the alley it keeps its
    # speed): three low refined lengths in a row make a stop, one amid the motion does not
    anchor = LengthAnchor(min_speed_ratio=0.25, stop_frames=3)
    for _ in range(10):
        anchor.update(2.0, 1.0)
    assert not anchor.stop(2.0, 0.05)  # one low refined length is not a stop
    anchor.update(2.0, 0.05)  # one low refined length while moving ...
    anchor.update(2.0, 1.0)  # ... and the motion goes on: the run is broken
    stops = []
    for _ in range(4):  # the camera stands still
        stops.append(anchor.stop(2.0, 0.01))
        anchor.update(2.0, 0.01)
    assert stops == [False, False, True, True]
    assert 0.35 < anchor.ratio < 0.5  # only the lengths before the stop was known count

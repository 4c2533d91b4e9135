"""`changed_fraction`: what changed in the view of a camera since it stopped."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.stop_view import changed_fraction
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.synthetic.occluder import passing_object

H, W = 128, 416


@pytest.fixture(scope="module")
def street() -> np.ndarray:
    """(2, H, W) uint8 grey: a street's first two frames (the camera drives a step)."""
    seq = render_sequence("street", 2, seed=5, height=H, width=W)
    return seq.images.mean(-1).round().astype(np.uint8)


def _grey(image: np.ndarray, noise_seed: int, gain: float = 1.0, bias: float = 0.0):
    """(1, 1, H, W) in [0, 1]: ``image`` with 2 grey levels of fresh sensor noise, then a
    brightness change (an exposure step)."""
    noise = np.random.default_rng(noise_seed).normal(0, 2.0, image.shape)
    noisy = np.clip(np.round(image + noise), 0, 255)
    return (torch.from_numpy(noisy / 255.0).float()[None, None] * gain + bias).clamp(0, 1)


def test_a_still_view_with_fresh_noise_and_an_exposure_step_has_not_changed(street):
    still = _grey(street[0], 0)
    assert changed_fraction(still, _grey(street[0], 1)) < 0.05
    assert changed_fraction(still, _grey(street[0], 2, gain=1.15, bias=-0.03)) < 0.05


@pytest.mark.parametrize("fraction", [0.2, 0.4])
def test_something_crossing_a_still_view_changes_about_the_part_it_covers(street, fraction):
    still = _grey(street[0], 0)
    for step in (4, 10):  # entering, and wholly in view
        crossed = passing_object(street[0], step, fraction=fraction, speed=0.06)
        changed = changed_fraction(still, _grey(crossed, step))
        covered = min(step * 0.06, fraction)
        assert 0.5 * covered < changed < covered + 0.15


def test_a_camera_that_moved_changes_nearly_the_whole_view(street):
    still = _grey(street[0], 0)
    # (a stop holds while less than 0.6 has changed: `KeyframeConfig.stop_changed_fraction`)
    assert changed_fraction(still, _grey(street[1], 1)) > 0.75
    shifted = F.pad(still, (2, 0, 0, 0), mode="replicate")[..., :W]  # a 2 pixel pan
    assert changed_fraction(still, shifted) > 0.8


def test_a_blank_view_has_nothing_to_tell_and_bad_shapes_raise():
    blank = torch.full((1, 1, H, W), 0.5)
    assert math.isnan(changed_fraction(blank, blank))
    with pytest.raises(InputError, match="two"):
        changed_fraction(blank, blank[..., :-1])

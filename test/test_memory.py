"""MemorySet: synthetic frames with true depth that measure forgetting while adapting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.metrics import valid_depth_mask
from sfm_ros.core.online.memory import (
    MEMORY_SEEDS,
    MemorySet,
    forgetting_reasons,
    parse_domains,
    worst_change,
)


@pytest.fixture(scope="module")
def memory() -> MemorySet:
    return MemorySet.render(["street", "corridor"], 1, 32, 96, torch.device("cpu"))


def test_memory_frames_are_rendered_per_domain_at_the_asked_size(memory):
    n = 2 * len(MEMORY_SEEDS)
    # Seen as a camera's frames: rendered larger, resized to the network's input size.
    assert memory.frames.shape == (n, 3, 32, 96) and memory.depth_m.shape == (n, 64, 192)
    assert float(memory.frames.min()) >= 0.0 and float(memory.frames.max()) <= 1.0
    assert memory.domains == ["street"] * (n // 2) + ["corridor"] * (n // 2)
    valid = valid_depth_mask(memory.depth_m)  # what `evaluate_depth` scores
    assert 0.3 < float(valid.mean()) < 1.0  # sky and far ground are not scored


def test_true_depth_at_any_scale_scores_zero_and_wrong_depth_does_not(memory):
    true_disp = 1.0 / torch.from_numpy(memory.depth_m).clamp_min(1e-3)[:, None]
    for scale in (1.0, 0.37):  # monocular depth: median scaling removes the scale
        assert all(v < 1e-6 for v in memory.abs_rel(scale * true_disp).values())
    # At the network's size, upsampled: close, but the finest structure is lost.
    small = F.interpolate(true_disp, size=(32, 96), mode="area")
    assert all(0 < v < 0.1 for v in memory.abs_rel(small).values())
    constant = memory.abs_rel(torch.ones_like(true_disp))
    flipped = memory.abs_rel(true_disp.flip(-1))
    for domain in ("street", "corridor"):
        assert constant[domain] > 0.1 and flipped[domain] > 0.05


def test_forgetting_is_refused_per_domain_beyond_the_limit():
    start = {"street": 0.15, "field": 0.20}
    assert forgetting_reasons({"street": 0.16, "field": 0.10}, start, 0.08) == []
    (reason,) = forgetting_reasons({"street": 0.17, "field": 0.10}, start, 0.08)
    assert reason.startswith("forgetting: street memory Abs Rel 0.170, +13.3%")
    (reason,) = forgetting_reasons({"street": math.nan, "field": 0.2}, start, 0.08)
    assert "street memory depth is not finite" in reason
    assert worst_change({"street": 0.165, "field": 0.19}, start) == pytest.approx(0.1)


def test_memory_domains_are_checked():
    assert parse_domains(" street, field ,") == ["street", "field"] and parse_domains("") == []
    with pytest.raises(ConfigError, match="unknown synthetic domain 'moon'"):
        parse_domains("street,moon")

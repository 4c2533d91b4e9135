"""The one-launch cost aggregation (Triton) against the step-by-step reference, on the CPU
under Triton's interpreter."""

import logging
import os

import pytest
import torch

from sfm_ros.core import multiview as mv
from sfm_ros.core.multiview import MultiViewConfig

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernel is defined: run it on the CPU
pytest.importorskip("triton")
from sfm_ros.core.scanline_kernel import aggregate  # noqa: E402

CONFIG = MultiViewConfig(jump_penalty=1.0)


def _volume(B: int, D: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Costs in [0, 1] with a few flat runs, and a grey keyframe with edges and flat areas."""
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(B, D, h, w, generator=g)
    cost[..., : h // 2, : w // 2] = 0.5  # a flat corner: ties the bins
    key = torch.rand(B, 1, h, w, generator=g) * (torch.rand(B, 1, h, w, generator=g) > 0.6)
    return cost, key


@pytest.mark.parametrize(
    ("B", "D", "h", "w", "penalties"),
    [
        (1, 16, 6, 11, (0.02, 1.0)),  # the published sweep's penalties, wider than high
        (2, 5, 9, 4, (0.05, 0.3)),  # two images, bins not a power of two, higher than wide
        (1, 3, 1, 7, (0.0, 0.0)),  # one row; no penalty at all
    ],
)
def test_the_kernel_aggregates_as_the_reference_does(B, D, h, w, penalties):
    cost, key = _volume(B, D, h, w, seed=B * 100 + h)
    cfg = MultiViewConfig(step_penalty=penalties[0], jump_penalty=penalties[1])
    reference = mv._scanline_steps(cost, key, cfg)
    got = aggregate(cost, key, cfg.step_penalty, cfg.jump_penalty, cfg.edge_contrast)
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)
    # and it aggregates: the winners differ from the pixels' own where the costs tie or are noisy
    if penalties[1] > 0:
        assert (got.argmin(1) != cost.argmin(1)).any()


def test_a_failing_kernel_is_said_once_and_the_reference_runs(monkeypatch, caplog):
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("no compiler for this GPU")

    monkeypatch.setitem(mv._KERNEL, "aggregate", broken)
    cost, key = _volume(1, 4, 5, 6, seed=1)
    with caplog.at_level(logging.WARNING):
        assert mv._on_kernel(cost, key, CONFIG) is None
        assert mv._on_kernel(cost, key, CONFIG) is None
    assert len(calls) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "the one-launch cost aggregation failed (RuntimeError: no compiler for this GPU); "
        "aggregating step by step"
    ]


def test_the_kernel_is_found_where_triton_is_installed(monkeypatch):
    monkeypatch.delitem(mv._KERNEL, "aggregate", raising=False)
    cost, key = _volume(1, 6, 4, 5, seed=2)
    torch.testing.assert_close(
        mv._on_kernel(cost, key, CONFIG), mv._scanline_steps(cost, key, CONFIG), rtol=0, atol=1e-6
    )
    assert mv._KERNEL["aggregate"] is aggregate

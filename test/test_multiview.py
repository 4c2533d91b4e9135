"""Plane-sweep multi-view depth on analytically rendered scenes (refine_scenes.py)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import refine_scenes as rs
import torch
import torch.nn.functional as F

from sfm_ros.core import multiview as mv
from sfm_ros.core.errors import InputError
from sfm_ros.core.multiview import MultiViewConfig, multiview_depth

H, W = 48, 160


def _scene(height: int, width: int) -> dict:
    """A keyframe and four source views 0.8 and 1.6 m to either side, slightly rotated."""
    poses = [np.eye(4)] + [
        rs.pose((0.3 * i, -2.0 * i, 0), (0.8 * i, -0.05 * i, 0.2 * i)) for i in (1, 2, -1, -2)
    ]
    v = rs.views(poses, height, width)
    Tw = v["T_world_cam"]
    v["T_src_key"] = torch.stack([rs.relative(Tw[i], Tw[0]) for i in range(1, 5)])[None].float()
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(
        torch.randn(1, 1, 6, 20, generator=g), size=(height, width), mode="bilinear"
    )
    v["prior"] = v["depth"][:1] * 1.2 * (1 + 0.05 * smooth)  # 20 % too far, smoothly noisy
    return v


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene() -> dict:
    return _scene(H, W)


def _abs_rel(depth: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((depth - true).abs() / true)[mask].mean())


def _scaled_abs_rel(depth: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> float:
    """Abs Rel after scaling ``depth`` by its median ratio to ``true`` (shape, not scale)."""
    return _abs_rel(depth * (true[mask] / depth[mask]).median(), true, mask)


def _textureless_interior(flat: torch.Tensor, margin: int = 8) -> torch.Tensor:
    """Flat pixels at least ``margin`` pixels away from any textured one."""
    textured = (~flat).float()
    return flat & (F.max_pool2d(textured, 2 * margin + 1, 1, margin) == 0)


def test_recovers_true_depth_from_wrong_prior(scene):
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    out = multiview_depth(
        scene["images"][:1],
        scene["prior"],
        scene["K"],
        scene["images"][None, 1:],
        scene["T_src_key"],
    )
    assert _abs_rel(scene["prior"], true, textured) > 0.15
    # the fused depth has the true shape in the prior's scale; the geometric depth the poses'
    assert _scaled_abs_rel(out.depth_m, true, textured) < 0.025
    assert float((out.depth_m / scene["prior"])[textured].median()) == pytest.approx(1, abs=0.02)
    geo_ok = textured & torch.isfinite(out.geometric_depth_m)
    assert _abs_rel(out.geometric_depth_m, true, geo_ok) < 0.05
    assert out.parallax_px[textured].median() > 4


@pytest.mark.parametrize("scale", [0.6, 1.6])
def test_a_prior_scale_beyond_the_sweep_range_is_aligned_to_the_poses(scene, scale):
    """A network's depth has a scale of its own; the poses' scale may differ by more than the
    sweep's +-30 %: aligned, the sweep still finds the shape, and the prior's scale is kept."""
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    g = torch.Generator().manual_seed(1)
    smooth = F.interpolate(torch.randn(1, 1, 6, 20, generator=g), size=(H, W), mode="bilinear")
    prior = true * scale * (1 + 0.15 * smooth)  # wrong scale, wrong shape
    args = (scene["images"][:1], prior, scene["K"], scene["images"][None, 1:], scene["T_src_key"])
    aligned = multiview_depth(*args)
    unaligned = multiview_depth(*args, MultiViewConfig(align_prior_scale=False))
    in_scale = multiview_depth(args[0], prior / scale, *args[2:])  # in the poses' scale
    error = _scaled_abs_rel(prior, true, textured)
    assert error > 0.08
    assert _scaled_abs_rel(aligned.depth_m, true, textured) < 0.7 * error
    assert _scaled_abs_rel(aligned.depth_m, true, textured) == pytest.approx(
        _scaled_abs_rel(in_scale.depth_m, true, textured), rel=0.1
    )
    assert aligned.confidence[textured].mean() > 0.8
    # without aligning, the truth lies outside most of the sweep, and the fusion mixes scales
    assert unaligned.confidence[textured].mean() < 0.3
    assert _scaled_abs_rel(unaligned.depth_m, true, textured) > error
    assert float((aligned.depth_m / prior)[textured].median()) == pytest.approx(1, abs=0.05)


@pytest.mark.parametrize("factor", [1.8, 1 / 1.8])
def test_log_spaced_bins_reach_as_far_nearer_as_farther(scene, factor):
    """A network's depth errs by factors: where the prior is 1.8x too far (or near) on the left
    third, a sweep spaced evenly in log depth over 2x either way finds the truth both ways;
    one spaced evenly in inverse depth over +-60 % (up to 2.5x farther, only 1.6x nearer) only
    when the truth is farther than the prior."""
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    columns, rows = torch.arange(W), torch.arange(H)[:, None]
    band = columns < W // 3
    prior = true * torch.where(band, factor, 1.0)
    args = (scene["images"][:1], prior, scene["K"], scene["images"][None, 1:], scene["T_src_key"])
    log = multiview_depth(*args, MultiViewConfig(inverse_depth_range=1.0, bin_spacing="log"))
    even = multiview_depth(*args, MultiViewConfig(inverse_depth_range=0.6))
    # the band's interior, away from its edge and the image's border
    inside = textured & (columns >= 6) & (columns < W // 3 - 6) & (rows >= 4) & (rows < H - 4)
    assert _abs_rel(prior, true, inside) > 0.4
    assert _abs_rel(log.depth_m, true, inside) < 0.05
    assert log.confidence[inside].mean() > 0.9
    if factor > 1:
        assert _abs_rel(even.depth_m, true, inside) > 0.5
        assert even.confidence[inside].mean() < 0.3  # the truth lies beyond the sweep's end
    else:
        assert _abs_rel(even.depth_m, true, inside) < 0.05
    # elsewhere the prior was right and stays so
    assert _abs_rel(log.depth_m, true, textured & ~band) < 0.06
    with pytest.raises(InputError, match="bin_spacing"):
        MultiViewConfig(bin_spacing="depth")
    with pytest.raises(InputError, match="inverse_depth_range"):
        MultiViewConfig(inverse_depth_range=1.0)


def test_confidence_is_low_on_textureless_and_high_on_textured(scene):
    out = multiview_depth(
        scene["images"][:1],
        scene["prior"],
        scene["K"],
        scene["images"][None, 1:],
        scene["T_src_key"],
    )
    c = out.confidence
    assert torch.isfinite(c).all() and c.min() >= 0 and c.max() <= 1
    blank = _textureless_interior(scene["flat"][:1])
    assert blank.sum() > 300
    assert c[blank].mean() < 0.02
    assert c[~scene["flat"][:1]].mean() > 0.7
    # the prior is kept where geometry has no weight (the sweep runs at full resolution here)
    keep = out.evidence.weight == 0
    assert (c[keep] == 0).all() and keep.sum() > 300
    torch.testing.assert_close(out.depth_m[keep], scene["prior"][keep])


def test_something_moving_through_the_views_is_not_trusted(scene):
    # a textured object moving down 3 pixels between views: no depth lines it up in all of them
    g = torch.Generator().manual_seed(1)
    blocks = torch.rand(1, 1, 5, 8, generator=g)  # grey blocks
    patch = F.interpolate(blocks, size=(20, 32), mode="nearest")[0]
    images = scene["images"].clone()
    top, left = 12, 64
    for k in range(len(images)):
        images[k, :, top + 3 * k : top + 3 * k + 20, left : left + 32] = patch
    moving = torch.zeros(1, 1, H, W, dtype=torch.bool)
    moving[..., top : top + 20, left : left + 32] = True
    args = (images[:1], scene["prior"], scene["K"], images[None, 1:], scene["T_src_key"])
    c = multiview_depth(*args).confidence
    unchecked = MultiViewConfig(match_cost_full=1.0, match_cost_zero=2.0)  # no match factor
    c_before = multiview_depth(*args, config=unchecked).confidence
    rest = ~scene["flat"][:1] & ~F.max_pool2d(moving.float(), 9, 1, 4).bool()
    assert c[moving].mean() < 0.7 * c_before[moving].mean()  # distinct, matching nothing
    assert (c[moving] > 0.5).float().mean() < 0.7 * (c_before[moving] > 0.5).float().mean()
    assert c[rest].mean() > 0.95 and c_before[rest].mean() - c[rest].mean() < 0.01


def test_a_lower_fusion_exponent_trusts_partial_confidence_more(scene):
    args = (scene["images"][:1], scene["prior"], scene["K"], scene["images"][None, 1:])
    linear = multiview_depth(*args, scene["T_src_key"], MultiViewConfig(fusion_exponent=1.0))
    root = multiview_depth(*args, scene["T_src_key"], MultiViewConfig(fusion_exponent=0.5))
    torch.testing.assert_close(root.confidence, linear.confidence)
    c, prior = linear.evidence.weight, scene["prior"]  # the fusion's weight, full resolution
    partial = (c > 0.05) & (c < 0.95)
    assert partial.sum() > 100
    # in inverse depth, the prior's correction grows from c to sqrt(c) of the geometric one
    correction = {k: (prior / out.depth_m - 1)[partial] for k, out in (("l", linear), ("r", root))}
    torch.testing.assert_close(correction["r"], correction["l"] / c[partial].sqrt())
    for extreme in (c == 0, c == 1):
        torch.testing.assert_close(root.depth_m[extreme], linear.depth_m[extreme])


def test_no_parallax_and_no_view_give_zero_confidence(scene):
    eye = torch.eye(4).expand(1, 2, 4, 4)
    same_place = multiview_depth(
        scene["images"][:1],
        scene["prior"],
        scene["K"],
        scene["images"][None, :1].expand(1, 2, 1, H, W),
        eye,
    )
    assert torch.all(same_place.confidence == 0)
    torch.testing.assert_close(same_place.depth_m, scene["prior"])
    behind = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0]))[None, None]  # turned around
    away = multiview_depth(
        scene["images"][:1], scene["prior"], scene["K"], scene["images"][None, 1:2], behind
    )
    assert torch.all(away.confidence == 0) and torch.all(torch.isnan(away.geometric_depth_m))
    assert torch.all(away.parallax_px == 0)


def test_reduced_resolution_sweep_and_list_inputs():
    v = _scene(96, 320)
    true, textured = v["depth"][:1], ~v["flat"][:1]
    out = multiview_depth(
        v["images"][:1],
        v["prior"][0, 0],  # (H, W) prior and (3, 3) K are accepted
        v["K"],
        [v["images"][i : i + 1] for i in range(1, 5)],
        list(v["T_src_key"].unbind(1)),
        MultiViewConfig(sweep_pixels=8000),  # 96x320 -> a 48x160 sweep
    )
    assert out.depth_m.shape == (1, 1, 96, 320)
    assert _scaled_abs_rel(out.depth_m, true, textured) < 0.05


def test_invalid_prior_pixels(scene):
    prior = scene["prior"].clone()
    prior[..., :, : W // 2] = math.nan
    out = multiview_depth(
        scene["images"][:1], prior, scene["K"], scene["images"][None, 1:], scene["T_src_key"]
    )
    assert torch.isfinite(out.confidence).all()
    right = torch.zeros_like(prior, dtype=torch.bool)
    right[..., W // 2 :] = True
    assert torch.isfinite(out.depth_m[right]).all()
    left = ~right
    weighted = out.evidence.weight > 0  # geometry's weight (the sweep at full resolution here)
    assert torch.isfinite(out.depth_m[left & weighted]).all()
    assert torch.isnan(out.depth_m[left & ~weighted]).all()
    assert (out.confidence[left & ~weighted] == 0).all()


def test_bad_arguments_raise_input_error(scene):
    args = (scene["images"][:1], scene["prior"], scene["K"])
    with pytest.raises(InputError):
        multiview_depth(*args, [], [])
    with pytest.raises(InputError):
        multiview_depth(*args, scene["images"][None, 1:], scene["T_src_key"][:, :2])
    with pytest.raises(InputError):
        multiview_depth(*args, scene["images"][None, 1:, :, :10], scene["T_src_key"])
    with pytest.raises(InputError):
        MultiViewConfig(num_bins=2)
    with pytest.raises(InputError):
        MultiViewConfig(match_cost_full=0.3, match_cost_zero=0.1)
    for exponent in (0.0, -1.0, math.nan, math.inf):  # 0 ** 0 = 1: no-confidence pixels weighted
        with pytest.raises(InputError, match="fusion_exponent"):
            MultiViewConfig(fusion_exponent=exponent)


def test_a_region_wrong_in_the_prior_is_corrected_where_it_has_no_texture(scene):
    """A network errs over whole regions: where the prior is 25 % too far on the right half,
    the textureless pixels there take the correction geometry makes to the textured pixels
    around them, and the left half, where the prior is right, keeps it."""
    true, flat = scene["depth"][:1], scene["flat"][:1]
    wrong = torch.zeros_like(flat)
    wrong[..., W // 2 :] = True
    prior = torch.where(wrong, true * 1.25, true)
    args = (scene["images"][:1], prior, scene["K"], scene["images"][None, 1:], scene["T_src_key"])
    kept = multiview_depth(*args)
    filled = multiview_depth(*args, MultiViewConfig(fill_radius=0.1))
    torch.testing.assert_close(filled.confidence, kept.confidence)
    blank = flat & wrong
    assert blank.sum() > 500 and not (flat & ~wrong).any()
    assert _abs_rel(kept.depth_m, true, blank) > 0.2
    assert _abs_rel(filled.depth_m, true, blank) < 0.5 * _abs_rel(kept.depth_m, true, blank)
    left = ~wrong & (torch.arange(W) < W // 2 - 8)  # clear of the window at the boundary
    assert _abs_rel(filled.depth_m, true, left) < 0.02
    assert _abs_rel(filled.depth_m, true, ~flat) < _abs_rel(kept.depth_m, true, ~flat)
    # without confident pixels anywhere (no parallax), the prior stands
    eye = torch.eye(4).expand(1, 4, 4, 4)
    still = multiview_depth(*args[:4], eye, MultiViewConfig(fill_radius=0.1))
    torch.testing.assert_close(still.depth_m, prior)
    for radius, support in ((-0.1, 0.02), (0.1, 0.0)):
        with pytest.raises(InputError, match="fill_radius"):
            MultiViewConfig(fill_radius=radius, fill_support=support)


def test_prior_confidence_is_low_where_geometry_contradicts_the_prior(scene):
    # the prior is right except on the right quarter, 20 % too far there: geometry is sure of
    # both parts (the fused depth's confidence), but confirms the prior on the first only
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    wrong = torch.zeros_like(textured)
    wrong[..., 3 * W // 4 + 4 :] = True  # 4 px inside, clear of the patch at the boundary
    prior = torch.where(wrong, true * 1.2, true)
    out = multiview_depth(
        scene["images"][:1], prior, scene["K"], scene["images"][None, 1:], scene["T_src_key"]
    )
    right = textured & ~wrong & (torch.arange(W) < 3 * W // 4 - 4)
    assert out.confidence[right].mean() > 0.7 and out.confidence[textured & wrong].mean() > 0.7
    assert out.prior_confidence[right].mean() > 0.6
    assert out.prior_confidence[textured & wrong].median() < 0.2  # exp(-2) x 0.8 in theory
    assert torch.all(out.prior_confidence <= out.confidence)
    with pytest.raises(InputError, match="agreement_sigma"):
        MultiViewConfig(agreement_sigma=0.0)


def _frame_0(scene) -> tuple:
    """`multiview_depth`'s first five arguments for view 0 with the prior and four sources."""
    images = scene["images"]
    return images[:1], scene["prior"], scene["K"], images[None, 1:], scene["T_src_key"]


def _carried_from_view_1(scene, prior_1: torch.Tensor):
    """The evidence view 1 measures (sources: views 0 and 2) and T_1_0 (view 0 -> view 1)."""
    Tw = scene["T_world_cam"]
    T_src = torch.stack([rs.relative(Tw[i], Tw[1]) for i in (0, 2)])[None].float()
    images = scene["images"][None, [0, 2]]
    first = multiview_depth(scene["images"][1:2], prior_1, scene["K"], images, T_src)
    return first.evidence, rs.relative(Tw[1], Tw[0])[None].float()


def test_depth_measured_in_the_last_frame_is_carried_over_where_this_one_has_no_parallax(scene):
    """The camera stops: the frame's own sources show no parallax, its sweep measures nothing
    and the prior (20 % too far) would stand; the depth the last frame measured, 0.8 m away,
    is carried over through the motion between them instead."""
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    previous, T_prev_key = _carried_from_view_1(scene, scene["depth"][1:2] * 1.2)
    still = torch.eye(4).expand(1, 2, 4, 4)
    args = (
        scene["images"][:1],
        scene["prior"],
        scene["K"],
        scene["images"][None, :1].expand(1, 2, -1, -1, -1),
        still,
    )
    alone = multiview_depth(*args)
    carried = multiview_depth(*args, None, previous, T_prev_key)
    assert float(alone.confidence.max()) == 0
    assert _abs_rel(alone.depth_m, true, textured) > 0.15
    reached = textured & (carried.confidence > 0)
    assert reached.float().mean() > 0.5 * textured.float().mean()  # view 1 sees most of it
    # weighted 0.8 x the last frame's weight, the carried depth takes most of the prior's error
    assert _abs_rel(carried.depth_m, true, reached) < 0.4 * _abs_rel(alone.depth_m, true, reached)
    # the carried weight shrinks by carry_over; none is carried with carry_over 0
    assert float(carried.evidence.weight.max()) <= 0.8 + 1e-6
    off = multiview_depth(*args, MultiViewConfig(carry_over=0.0), previous, T_prev_key)
    torch.testing.assert_close(off.depth_m, alone.depth_m)
    with pytest.raises(InputError, match="T_prev_key"):
        multiview_depth(*args, None, previous, None)


def test_carried_depth_is_brought_to_the_frames_scale_and_dropped_where_it_clashes(scene):
    """The last frame's depth and motion in a scale 1.5x this frame's are rescaled before the
    depth is averaged in; on the right quarter, 2x too far beyond that (a moving object), it is
    dropped where this frame measures depth of its own."""
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    previous, T_prev_key = _carried_from_view_1(scene, scene["depth"][1:2] * 1.2)
    args = _frame_0(scene)
    wide = MultiViewConfig(inverse_depth_range=0.6)  # a wide sweep: 2x is inside
    alone = multiview_depth(*args, wide)
    moved = torch.zeros_like(previous.inverse_depth, dtype=torch.bool)
    moved[..., 3 * W // 4 :] = True
    scaled = previous.inverse_depth / 1.5
    wrong = replace(previous, inverse_depth=torch.where(moved, scaled / 2, scaled))
    T_prev_key = T_prev_key.clone()
    T_prev_key[:, :3, 3] *= 1.5  # the last frame's poses and depth in a scale of their own
    carried = multiview_depth(*args, wide, wrong, T_prev_key)
    ungated = multiview_depth(*args, replace(wide, carry_gate=100.0), wrong, T_prev_key)
    rest = textured & (torch.arange(W) < 3 * W // 4 - 8)
    right = textured & (torch.arange(W) >= 3 * W // 4 + 8)
    error = {
        k: _scaled_abs_rel(out.depth_m, true, rest) for k, out in (("a", alone), ("c", carried))
    }
    assert error["c"] < 0.95 * error["a"]  # rescaled, the last frame's depth adds to this one's
    alone_right = _scaled_abs_rel(alone.depth_m, true, right)
    assert _scaled_abs_rel(carried.depth_m, true, right) < 1.1 * alone_right
    assert _scaled_abs_rel(ungated.depth_m, true, right) > 1.5 * alone_right


@pytest.mark.parametrize(
    "sweep",
    [
        MultiViewConfig(inverse_depth_range=0.6, fill_radius=0.04),
        MultiViewConfig(inverse_depth_range=1.0, bin_spacing="log", fill_radius=0.04),
    ],
)
def test_carried_depth_this_frame_could_not_measure_is_dropped(scene, sweep):
    """Where the last frame's depth is 4x too far on blank surfaces (no texture here either, so
    no estimate of this frame's to gate it), this frame's sweep (+-60 %, or 2x either way) could
    not have found it: it is not carried over, and the published depth stays finite and as good
    as alone."""
    previous, T_prev_key = _carried_from_view_1(scene, scene["depth"][1:2] * 1.2)
    far = scene["flat"][1:2]
    wrong = replace(
        previous,
        inverse_depth=torch.where(far, 1 / (scene["depth"][1:2] * 4), previous.inverse_depth),
        weight=torch.where(far, 1.0, previous.weight),
    )
    args = (*_frame_0(scene), sweep)
    carried = multiview_depth(*args, wrong, T_prev_key)
    alone = multiview_depth(*args)
    assert torch.isfinite(carried.depth_m).all() and torch.isfinite(carried.confidence).all()
    true, flat = scene["depth"][:1], scene["flat"][:1]
    assert _scaled_abs_rel(carried.depth_m, true, flat) < 1.05 * _scaled_abs_rel(
        alone.depth_m, true, flat
    )


def _reference_aggregation(cost: np.ndarray, grey: np.ndarray, cfg: MultiViewConfig) -> np.ndarray:
    """SGM's recursion written out pixel by pixel on (D, h, w) costs and an (h, w) image."""
    D, h, w = cost.shape
    total = np.zeros_like(cost)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        L = np.zeros_like(cost)
        rows = range(h) if dy >= 0 else range(h - 1, -1, -1)
        cols = range(w) if dx >= 0 else range(w - 1, -1, -1)
        for y in rows:
            for x in cols:
                qy, qx = y - dy, x - dx
                if not (0 <= qy < h and 0 <= qx < w):
                    L[:, y, x] = cost[:, y, x]
                    continue
                prev, contrast = L[:, qy, qx], abs(grey[y, x] - grey[qy, qx])
                p2 = cfg.step_penalty + (cfg.jump_penalty - cfg.step_penalty) / (
                    1 + contrast / cfg.edge_contrast
                )
                for d in range(D):
                    near = [prev[k] + cfg.step_penalty for k in (d - 1, d + 1) if 0 <= k < D]
                    L[d, y, x] = cost[d, y, x] + min(prev[d], *near, prev.min() + p2) - prev.min()
        total += L
    return total / 4


def test_semi_global_aggregation_follows_the_sgm_recursion():
    g = torch.Generator().manual_seed(4)
    cost, grey = torch.rand(1, 5, 4, 6, generator=g), torch.rand(1, 1, 4, 6, generator=g) * 0.02
    cfg = MultiViewConfig(jump_penalty=0.3, step_penalty=0.05, edge_contrast=0.005)
    expected = _reference_aggregation(cost[0].double().numpy(), grey[0, 0].double().numpy(), cfg)
    np.testing.assert_allclose(mv._aggregate(cost, grey, cfg)[0].numpy(), expected, atol=1e-6)


def test_semi_global_aggregation_steadies_the_sweep_on_noisy_views(scene):
    """Noise in the source views scatters each pixel's own winner; aggregated with its
    neighbours' costs the sweep stays near the true depth."""
    true, textured = scene["depth"][:1], ~scene["flat"][:1]
    g = torch.Generator().manual_seed(3)
    src = scene["images"][None, 1:]
    noisy = (src + 0.1 * torch.randn(src.shape, generator=g)).clamp(0, 1)
    errors = {}
    for jump in (0.0, 1.0):
        cfg = MultiViewConfig(inverse_depth_range=0.6, patch_radius=4, jump_penalty=jump)
        out = multiview_depth(
            scene["images"][:1], scene["prior"], scene["K"], noisy, scene["T_src_key"], cfg
        )
        measured = textured & torch.isfinite(out.geometric_depth_m)
        assert measured.float().mean() > 0.5
        errors[jump] = _abs_rel(out.geometric_depth_m, true, measured)
    assert errors[1.0] < 0.85 * errors[0.0]
    with pytest.raises(InputError, match="jump_penalty must be 0 or >= step_penalty"):
        MultiViewConfig(jump_penalty=0.01)

"""Tests of sfm_ros.core.losses on analytic scenes and random inputs."""

import math

import numpy as np
import pytest
import torch

from sfm_ros.core.errors import ConfigError, InputError
from sfm_ros.core.geometry import pose_vec_to_mat
from sfm_ros.core.lie import se3_inverse
from sfm_ros.core.losses import (
    SSIM,
    LossConfig,
    ViewSynthesisLoss,
    depth_consistency_loss,
    explainability_regularizer,
    photometric_error,
    smoothness_edge_aware,
    smoothness_second_order,
    velocity_loss,
)
from sfm_ros.core.synthetic import render_sequence

H, W, DEPTH = 32, 64, 4.0
K = torch.tensor([[50.0, 0.0, 31.5], [0.0, 50.0, 15.5], [0.0, 0.0, 1.0]])


def _render(cam_x):
    """Camera at world x = cam_x looking at a textured fronto-parallel plane z = DEPTH."""
    v, u = np.mgrid[0:H, 0:W].astype(float)
    x = (u - 31.5) / 50.0 * DEPTH + cam_x
    y = (v - 15.5) / 50.0 * DEPTH
    img = np.stack(
        [
            0.5 + 0.3 * np.sin(3.0 * x) * np.cos(2.0 * y),
            0.5 + 0.3 * np.cos(2.5 * x + 1.5 * y),
            0.5 + 0.2 * np.sin(4.0 * y) + 0.2 * np.sin(1.5 * x),
        ]
    )
    return torch.tensor(img, dtype=torch.float32)


def _translation(tx):
    T = torch.eye(4)
    T[0, 3] = tx
    return T


def _scene(baseline=0.2):
    """Target at x=0, sources at -baseline and +baseline; true T_src_tgt moves points by -x_src."""
    tgt = _render(0.0)[None]
    srcs = torch.stack([_render(-baseline), _render(baseline)])[None]
    T_src_tgt = torch.stack([_translation(baseline), _translation(-baseline)])[None]
    return tgt, srcs, T_src_tgt


def _disps(value, scales=4, batch=1):
    return [torch.full((batch, 1, H >> s, W >> s), value) for s in range(scales)]


def _masks(value, batch=1, sources=2):
    return [torch.full((batch, sources, H >> s, W >> s), value) for s in range(4)]


def _loss(cfg, tgt, srcs, T, disp_value=1 / DEPTH, masks=None):
    if cfg.use_mask and masks is None:
        masks = _masks(1.0, len(tgt), srcs.shape[1])
    B = len(tgt)
    return ViewSynthesisLoss(cfg)(
        tgt, srcs, _disps(disp_value, batch=B), T, K.expand(B, 3, 3), masks
    )


# --------------------------------------------------------------------------- building blocks


def test_ssim_zero_for_identical_and_positive_otherwise():
    x = torch.rand(2, 3, 8, 12)
    ssim = SSIM()
    d = ssim(x, x)
    assert d.shape == x.shape
    assert d.abs().max() < 1e-5
    d = ssim(x, 1 - x)
    assert d.mean() > 0.3 and d.min() >= 0 and d.max() <= 1


def test_photometric_error_mixes_l1_and_ssim():
    a, b = torch.rand(2, 3, 8, 12), torch.rand(2, 3, 8, 12)
    l1 = photometric_error(a, b, 0.0)
    assert l1.shape == (2, 1, 8, 12)
    torch.testing.assert_close(l1, (a - b).abs().mean(1, keepdim=True))
    pure_ssim = photometric_error(a, b, 1.0)
    torch.testing.assert_close(photometric_error(a, b, 0.85), 0.85 * pure_ssim + 0.15 * l1)
    assert photometric_error(a, a, 0.85).abs().max() < 1e-5


def test_smoothness_zero_on_constant_and_second_order_ignores_planes():
    const = torch.full((1, 1, 8, 12), 0.3)
    img = torch.rand(1, 3, 8, 12)
    assert smoothness_second_order(const) == 0
    assert smoothness_edge_aware(const, img) == 0
    v, u = torch.meshgrid(torch.arange(8.0), torch.arange(12.0), indexing="ij")
    plane = (0.1 + 0.02 * u + 0.01 * v)[None, None]
    assert smoothness_second_order(plane) < 1e-6
    assert smoothness_edge_aware(plane, img) > 0.01
    bumpy = torch.rand(1, 1, 8, 12)
    assert smoothness_second_order(bumpy) > 0.1


def test_edge_aware_smoothness_forgives_steps_at_image_edges():
    disp = torch.full((1, 1, 8, 12), 0.2)
    disp[..., 6:] = 0.5
    flat = torch.full((1, 3, 8, 12), 0.5)
    edge = flat.clone()
    edge[..., 6:] = 1.0
    assert smoothness_edge_aware(disp, edge) < 0.7 * smoothness_edge_aware(disp, flat)


def test_explainability_regularizer_pushes_mask_to_one():
    assert explainability_regularizer(torch.ones(2, 2, 4, 4)) == 0
    mask = torch.full((2, 2, 4, 4), 0.5, requires_grad=True)
    reg = explainability_regularizer(mask)
    assert math.isclose(reg.item(), math.log(2), rel_tol=1e-6)
    reg.backward()
    assert (mask.grad < 0).all()
    assert torch.isfinite(explainability_regularizer(torch.zeros(1, 1, 2, 2)))


# --------------------------------------------------------------------------- config


def test_presets():
    md2 = LossConfig.preset("monodepth2")
    assert md2 == LossConfig()
    assert md2.min_reprojection and md2.automask and md2.upsample_to_full
    sfm = LossConfig.preset("sfmlearner")
    assert sfm.ssim_weight == 0 and sfm.smoothness == "second_order" and sfm.use_mask
    assert not (sfm.min_reprojection or sfm.automask or sfm.upsample_to_full)
    assert LossConfig.preset("sfmlearner", scales=2).scales == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: LossConfig.preset("monodepth3"),
        lambda: LossConfig.preset("sfmlearner", not_a_field=1),
        lambda: LossConfig(smoothness="tv"),
        lambda: LossConfig(ssim_weight=1.5),
        lambda: LossConfig(scales=0),
        lambda: LossConfig(min_depth=10.0, max_depth=1.0),
        lambda: LossConfig(velocity_weight=-0.1),
        lambda: LossConfig(consistency_weight=-0.1),
    ],
)
def test_bad_config_raises(make):
    with pytest.raises(ConfigError):
        make()


def test_bad_inputs_raise():
    tgt, srcs, T = _scene()
    loss = ViewSynthesisLoss(LossConfig.preset("sfmlearner"))
    with pytest.raises(InputError, match="mask"):
        loss(tgt, srcs, _disps(0.25), T, K[None], None)
    with pytest.raises(InputError, match="disparity scales"):
        loss(tgt, srcs, _disps(0.25, scales=2), T, K[None], _masks(1.0))
    with pytest.raises(InputError, match="T_src_tgt"):
        loss(tgt, srcs, _disps(0.25), T[:, :1], K[None], _masks(1.0))
    with pytest.raises(InputError, match="srcs"):
        loss(tgt, srcs[..., :-1], _disps(0.25), T, K[None], _masks(1.0))


# --------------------------------------------------------------------------- view synthesis


@pytest.mark.parametrize("preset", ["monodepth2", "sfmlearner"])
def test_loss_zero_for_identical_images_and_identity_pose(preset):
    img = _render(0.0)[None]
    srcs = torch.stack([img[0], img[0]])[None]
    loss, stats = _loss(LossConfig.preset(preset), img, srcs, torch.eye(4).expand(1, 2, 4, 4))
    assert loss.item() < 1e-4
    assert stats["total"] == pytest.approx(loss.item())
    assert stats["smooth"] == 0


@pytest.mark.parametrize("preset", ["monodepth2", "sfmlearner"])
def test_true_pose_and_depth_beat_wrong_ones(preset):
    cfg = LossConfig.preset(preset, smooth_weight=0.0)
    tgt, srcs, T = _scene()
    good, stats_good = _loss(cfg, tgt, srcs, T)
    wrong_T = T.clone()
    wrong_T[..., 0, 3] *= -1
    bad_pose, stats_bad = _loss(cfg, tgt, srcs, wrong_T)
    bad_depth, _ = _loss(cfg, tgt, srcs, T, disp_value=0.5 / DEPTH)
    assert good < 0.2 * bad_pose and good < 0.5 * bad_depth
    for s in range(4):
        assert stats_good[f"photo/s{s}"] < 0.5 * stats_bad[f"photo/s{s}"]


@pytest.mark.parametrize("preset", ["monodepth2", "sfmlearner"])
def test_an_exposure_change_is_not_blamed_on_depth_and_motion(preset):
    """Sources darkened by half cost what sources as bright as the target cost, and the true
    pose and depth still beat wrong ones by as much."""
    cfg = LossConfig.preset(preset, smooth_weight=0.0)
    tgt, srcs, T = _scene()
    srcs = srcs * (tgt.mean() / srcs.mean(dim=(2, 3, 4), keepdim=True))  # as bright as tgt
    stepped, _ = _loss(cfg, tgt, srcs * 0.5, T)
    assert stepped.item() == pytest.approx(_loss(cfg, tgt, srcs, T)[0].item(), rel=1e-4)
    wrong_T = T.clone()
    wrong_T[..., 0, 3] *= -1
    assert stepped < 0.2 * _loss(cfg, tgt, srcs * 0.5, wrong_T)[0]


def test_last_warped_is_scale_zero_synthesised_target():
    tgt, srcs, T = _scene()
    loss_fn = ViewSynthesisLoss(LossConfig())
    loss_fn(tgt, srcs, _disps(1 / DEPTH), T, K[None])
    warped = loss_fn.last_warped
    assert warped.shape == (1, 2, 3, H, W) and not warped.requires_grad
    inner = (slice(None), slice(None), slice(None), slice(None), slice(8, -8))
    assert (warped - tgt[:, None])[inner].abs().mean() < 0.01


def test_out_of_view_pixels_cost_the_unwarped_error_without_gradient():
    cfg = LossConfig.preset("sfmlearner", use_mask=False, scales=1, smooth_weight=0.0)
    tgt, srcs, T = _scene(baseline=0.6)  # 7.5 px shift: several columns project outside
    srcs, T = srcs[:, :1], T[:, :1]  # one source: the columns it does not see are on one side
    disp = _disps(1 / DEPTH, scales=1)[0].requires_grad_()
    loss, _ = ViewSynthesisLoss(cfg)(tgt, srcs, [disp], T, K[None])
    loss.backward()
    unseen = disp.grad[0, 0].abs().sum(0) == 0  # per column
    assert unseen[:7].all() or unseen[-7:].all()
    assert not unseen[W // 2 - 4 : W // 2 + 4].any()
    wrong, _ = _loss(cfg, tgt, srcs, T, disp_value=0.5 / DEPTH)
    assert loss < 0.5 * wrong


def test_min_reprojection_ignores_a_bad_source():
    img = _render(0.0)
    noise = torch.rand(3, H, W, generator=torch.Generator().manual_seed(0))
    srcs = torch.stack([img, noise])[None]  # a perfect static source and a garbage one
    T = torch.eye(4).expand(1, 2, 4, 4)
    with_min, _ = _loss(LossConfig(automask=False), img[None], srcs, T)
    cfg = LossConfig(automask=False, min_reprojection=False)
    without_min, _ = _loss(cfg, img[None], srcs, T)
    assert with_min < 1e-4 and without_min > 0.1


def test_automask_masks_static_frames():
    img = _render(0.0)[None]
    static = torch.stack([img[0], img[0]])[None]
    moving_T = torch.stack([_translation(0.2), _translation(-0.2)])[None]  # pose net is wrong
    cfg = LossConfig(smooth_weight=0.0)
    masked, stats = _loss(cfg, img, static, moving_T)
    assert stats["automask_fraction"] > 0.95
    assert masked < 1e-3  # masked pixels count with their (tiny) identity error
    unmasked, stats_off = _loss(
        LossConfig(smooth_weight=0.0, automask=False), img, static, moving_T
    )
    assert "automask_fraction" not in stats_off
    assert unmasked > 0.05

    tgt, srcs, T = _scene()  # real motion, correct pose: few pixels look static
    _, stats = _loss(cfg, tgt, srcs, T)
    assert stats["automask_fraction"] < 0.2


def test_explainability_mask_weights_error_and_adds_regularizer():
    cfg = LossConfig.preset("sfmlearner", smooth_weight=0.0)
    tgt, srcs, T = _scene()
    wrong_T = T.clone()
    wrong_T[..., 0, 3] *= -1
    full, stats_full = _loss(cfg, tgt, srcs, wrong_T, masks=_masks(1.0))
    half, stats_half = _loss(cfg, tgt, srcs, wrong_T, masks=_masks(0.5))
    assert stats_full["mask_reg"] == 0
    # -log(0.5) per pixel, weight 0.2, summed over the sources as SfMLearner does
    num_sources = srcs.shape[1]
    assert stats_half["mask_reg"] == pytest.approx(num_sources * 0.2 * math.log(2), rel=1e-5)
    averaged = LossConfig.preset("sfmlearner", smooth_weight=0.0, sum_over_sources=False)
    _, stats_avg = _loss(averaged, tgt, srcs, wrong_T, masks=_masks(0.5))
    assert stats_avg["mask_reg"] == pytest.approx(0.2 * math.log(2), rel=1e-5)
    photo_full = sum(stats_full[f"photo/s{s}"] for s in range(4))
    photo_half = sum(stats_half[f"photo/s{s}"] for s in range(4))
    assert photo_half == pytest.approx(0.5 * photo_full, rel=1e-4)


@pytest.mark.parametrize("preset", ["monodepth2", "sfmlearner"])
def test_presets_give_finite_loss_and_gradients_on_random_input(preset):
    gen = torch.Generator().manual_seed(1)
    B, S, h, w = 2, 2, 16, 32
    cfg = LossConfig.preset(preset)
    tgt, srcs = torch.rand(B, 3, h, w, generator=gen), torch.rand(B, S, 3, h, w, generator=gen)
    disps = [torch.rand(B, 1, h >> s, w >> s, generator=gen).requires_grad_() for s in range(4)]
    vec = (0.05 * torch.randn(B, S, 6, generator=gen)).requires_grad_()
    logits = [torch.randn(B, S, h >> s, w >> s, generator=gen).requires_grad_() for s in range(4)]
    masks = [torch.sigmoid(x) for x in logits] if cfg.use_mask else None
    Ks = torch.tensor([[20.0, 0, 15.5], [0, 20, 7.5], [0, 0, 1]]).expand(B, 3, 3)
    loss, stats = ViewSynthesisLoss(cfg)(tgt, srcs, disps, pose_vec_to_mat(vec), Ks, masks)
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    expected = {"photo/s0", "photo/s1", "photo/s2", "photo/s3", "smooth", "total"}
    expected |= {"mask_reg"} if cfg.use_mask else {"automask_fraction"}
    assert set(stats) == expected
    grads = [vec.grad, *(d.grad for d in disps)] + (
        [x.grad for x in logits] if cfg.use_mask else []
    )
    for grad in grads:
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("preset", ["monodepth2", "sfmlearner"])
def test_collapsed_depth_that_sends_pixels_out_of_view_is_not_rewarded(preset):
    """Depth at the lower bound projects every pixel outside the sources; it must cost more
    than the true depth (before the fix it scored exactly 0, the best possible loss)."""
    cfg = LossConfig.preset(preset, smooth_weight=0.0)
    tgt, srcs, T = _scene(baseline=0.6)
    good, _ = _loss(cfg, tgt, srcs, T)
    collapsed, _ = _loss(cfg, tgt, srcs, T, disp_value=1 / cfg.min_depth)
    assert collapsed > 2 * good and collapsed > 0.1


def test_velocity_loss_compares_translation_lengths_and_pulls_them_to_the_truth():
    true = pose_vec_to_mat(torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.1, 0.0]]]))  # 1 m, turning
    assert velocity_loss(true, true) == 0.0
    other_way = pose_vec_to_mat(torch.tensor([[[0.0, -1.0, 0.0, 0.2, 0.0, 0.0]]]))
    assert velocity_loss(other_way, true) == pytest.approx(0.0, abs=1e-6)  # lengths only
    vec = torch.tensor([[[0.1, 0.2, 0.2, 0.0, 0.0, 0.0]]], requires_grad=True)  # 0.3 m
    assert velocity_loss(pose_vec_to_mat(vec), true).item() == pytest.approx(0.7)
    optimizer = torch.optim.SGD([vec], lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        velocity_loss(pose_vec_to_mat(vec), true).backward()
        optimizer.step()
    assert vec[0, 0, :3].norm().item() == pytest.approx(1.0, abs=0.06)


@pytest.fixture(scope="module")
def street_depths():
    """True depths of three street frames (sky at 80 m), poses of frames 0 and 2 from 1, K."""
    seq = render_sequence("street", 3, seed=2, height=48, width=160)
    depth = torch.tensor(np.where(seq.depth_m > 0, seq.depth_m, 80.0), dtype=torch.float32)
    T = [se3_inverse(seq.T_world_cam[i]) @ seq.T_world_cam[1] for i in (0, 2)]
    T_src_tgt = torch.tensor(np.stack(T), dtype=torch.float32)[None]
    return depth[1][None, None], depth[[0, 2]][None, :, None], T_src_tgt, torch.tensor(seq.K)[None]


def test_depth_consistency_is_near_zero_for_the_truth_and_sees_a_frame_scaled_apart(
    street_depths,
):
    tgt, srcs, T, K = street_depths
    K = K.float()
    true = depth_consistency_loss(tgt, srcs, T, K).item()
    assert true < 0.01  # only occlusion edges disagree
    T_scaled = T.clone()
    T_scaled[..., :3, 3] *= 1.3
    together = depth_consistency_loss(tgt * 1.3, srcs * 1.3, T_scaled, K).item()
    assert together == pytest.approx(true, abs=1e-4)  # one scale for all: consistent
    assert depth_consistency_loss(tgt, srcs * 1.3, T, K).item() > 10 * true  # 0.13 = 0.3 / 2.3
    behind = T.clone()
    behind[..., 2, 3] = -200.0  # everything behind the source camera: nothing to compare
    assert depth_consistency_loss(tgt, srcs, behind, K).item() == 0.0


def test_consistency_term_joins_the_loss_with_source_disparities_and_has_gradients(
    street_depths,
):
    tgt_d, srcs_d, T, K = street_depths
    B, S, _, H, W = srcs_d.shape
    image = torch.rand(B, 3, H, W)
    srcs = torch.rand(B, S, 3, H, W)
    disps = [(1 / tgt_d).requires_grad_()]
    src_disps = (1 / srcs_d * 1.3).requires_grad_()  # sources scaled apart from the target
    cfg = LossConfig(scales=1, consistency_weight=0.5, max_depth=100.0)
    loss, stats = ViewSynthesisLoss(cfg)(image, srcs, disps, T, K.float(), None, src_disps)
    assert stats["consistency"] > 0.05
    loss.backward()
    assert torch.isfinite(src_disps.grad).all() and src_disps.grad.abs().sum() > 0
    _, without = ViewSynthesisLoss(cfg)(image, srcs, disps, T, K.float())  # held-out checks
    assert "consistency" not in without
    with pytest.raises(InputError, match="src_disps"):
        ViewSynthesisLoss(cfg)(image, srcs, disps, T, K.float(), None, src_disps[:, :1])

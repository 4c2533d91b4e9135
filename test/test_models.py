"""Depth and pose networks: shapes, ranges, initial poses, gradients, errors, overfitting."""

import math

import pytest
import torch

from sfm_ros.core.errors import ConfigError, InputError
from sfm_ros.core.geometry import pose_vec_to_mat
from sfm_ros.core.models import (
    DEPTH_NETS,
    POSE_ENCODERS,
    build_depth_net,
    build_pose_net,
    count_parameters,
)
from sfm_ros.core.models.exposure import (
    BRIGHTNESS_BAND,
    EXPOSURE_STEP,
    exposure_matched,
    in_band,
)

SIZES = [(32, 96), (64, 128), (40, 104)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def depth_nets():
    torch.manual_seed(0)
    return {name: build_depth_net(name) for name in DEPTH_NETS}


@pytest.mark.parametrize("name", DEPTH_NETS)
def test_depth_output_shapes_and_range(depth_nets, name):
    net = depth_nets[name].train()
    for h, w in SIZES:
        disps = net(torch.rand(2, 3, h, w))
        assert [tuple(d.shape) for d in disps] == [(2, 1, h >> s, w >> s) for s in range(4)]
        for d in disps:
            assert d.min() > 0.01 and d.max() < 10.01


@pytest.mark.parametrize("name", DEPTH_NETS)
def test_depth_odd_size_rounds_up(depth_nets, name):
    disps = depth_nets[name](torch.rand(1, 3, 37, 99))
    assert [tuple(d.shape[2:]) for d in disps] == [(37, 99), (19, 50), (10, 25), (5, 13)]


@pytest.mark.parametrize("name", ["dispnet", "resnet18_half"])
def test_depth_alpha_beta_configurable(name):
    net = build_depth_net(name, alpha=2.0, beta=0.5)
    for d in net(torch.rand(1, 3, 32, 64)):
        assert d.min() > 0.5 and d.max() < 2.5


def test_depth_eval_matches_train():
    net = build_depth_net("dispnet")  # no batch norm: train and eval compute the same function
    x = torch.rand(1, 3, 32, 96)
    train_out = net.train()(x)
    with torch.no_grad():
        eval_out = net.eval()(x)
    for a, b in zip(train_out, eval_out, strict=True):
        torch.testing.assert_close(a, b)

    resnet = build_depth_net("resnet18_half").eval()
    with torch.no_grad():
        shapes = [d.shape for d in resnet(x)]
    assert shapes == [d.shape for d in resnet.train()(x)]


@pytest.mark.parametrize("length", [3, 5])
@pytest.mark.parametrize("encoder", ["conv", "resnet18"])
def test_pose_shapes_and_identity_init(length, encoder):
    use_mask = encoder == "conv"
    net = build_pose_net(length, use_mask=use_mask, encoder=encoder)
    S = length - 1
    for h, w in SIZES:
        T, masks = net(torch.rand(2, 3, h, w), torch.rand(2, S, 3, h, w))
        assert T.shape == (2, S, 4, 4)
        torch.testing.assert_close(T, torch.eye(4).expand_as(T), atol=1e-2, rtol=0)
        R = T[..., :3, :3]
        torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R))
        torch.testing.assert_close(T[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand(2, S, 4))
        if use_mask:
            assert [tuple(m.shape) for m in masks] == [(2, S, h >> s, w >> s) for s in range(4)]
            for m in masks:
                assert m.min() > 0 and m.max() < 1
        else:
            assert masks is None


def test_pose_mask_off_and_vec_matches_matrix():
    net = build_pose_net(3, use_mask=False, rotation="axis_angle")
    tgt, srcs = torch.rand(1, 3, 32, 96), torch.rand(1, 2, 3, 32, 96)
    T, masks = net(tgt, srcs)
    vec, vec_masks = net.forward_vec(tgt, srcs)
    assert masks is None and vec_masks is None
    assert vec.shape == (1, 2, 6)
    assert vec.abs().max() > 0  # the head is small, not dead
    expected = pose_vec_to_mat(vec.reshape(-1, 6), rotation="axis_angle").view(1, 2, 4, 4)
    torch.testing.assert_close(T, expected)


def _assert_all_grads(net):
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", ["dispnet", "resnet18_half"])
def test_depth_gradients_reach_every_parameter(name):
    net = build_depth_net(name)
    disps = net(torch.rand(2, 3, 32, 64))
    sum(d.mean() for d in disps).backward()
    _assert_all_grads(net)


@pytest.mark.parametrize("encoder", ["conv", "resnet18"])
def test_pose_gradients_reach_every_parameter(encoder):
    net = build_pose_net(
        3,
        use_mask=encoder == "conv",
        encoder=encoder,
        **{"width": 0.5} if encoder == "resnet18" else {},
    )
    T, masks = net(torch.rand(2, 3, 32, 64), torch.rand(2, 2, 3, 32, 64))
    # Random weights: the first-order change of R at identity is skew, invisible to plain sums.
    loss = (T * torch.randn_like(T)).sum()
    if masks is not None:
        loss = loss + sum(m.mean() for m in masks)
    loss.backward()
    _assert_all_grads(net)


def test_unknown_names_and_bad_config():
    with pytest.raises(ConfigError, match="dispnet"):
        build_depth_net("vgg")
    with pytest.raises(ConfigError, match="snippet_length"):
        build_pose_net(4)
    with pytest.raises(ConfigError, match="rotation"):
        build_pose_net(3, rotation="quaternion")
    with pytest.raises(ConfigError, match="conv"):
        build_pose_net(3, encoder="vgg")
    with pytest.raises(ConfigError, match="mask"):
        build_pose_net(3, use_mask=True, encoder="resnet18")


def test_bad_inputs_raise_input_error(depth_nets):
    with pytest.raises(InputError, match="shape"):
        depth_nets["dispnet"](torch.rand(1, 1, 32, 64))
    net = build_pose_net(3, use_mask=False)
    with pytest.raises(InputError, match="sources"):
        net(torch.rand(1, 3, 32, 64), torch.rand(1, 4, 3, 32, 64))
    with pytest.raises(InputError, match="sources"):
        net(torch.rand(1, 3, 32, 64), torch.rand(1, 2, 3, 32, 32))


def test_count_parameters_and_half_width_is_lighter(depth_nets):
    full = count_parameters(depth_nets["resnet18"])
    half = count_parameters(depth_nets["resnet18_half"])
    assert full == sum(p.numel() for p in depth_nets["resnet18"].parameters())
    assert 2.5 < full / half < 5
    assert count_parameters(torch.nn.Linear(3, 2)) == 8


def test_depth_net_overfits_one_target():
    net = build_depth_net("resnet18_half")
    x = torch.rand(1, 3, 32, 64)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 64), indexing="ij")
    target = (0.5 + 3.0 * yy + torch.sin(6 * xx))[None, None]
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = (net(x)[0] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_log_depth_output_is_uniform_in_log_depth_and_bounded():
    net = build_depth_net("resnet18_half", output="log_depth", min_depth=0.05, max_depth=300.0)
    logits = torch.tensor([-40.0, 0.0, 40.0])
    depth = 1.0 / net._disparity(logits)
    torch.testing.assert_close(depth, torch.tensor([0.05, (0.05 * 300.0) ** 0.5, 300.0]))
    x = torch.rand(1, 3, 32, 64, requires_grad=True)
    disp = net(x)[0]
    assert ((disp >= 1 / 300.0 - 1e-6) & (disp <= 1 / 0.05 + 1e-6)).all()
    disp.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="depth output"):
        build_depth_net("resnet18", output="inverse")
    with pytest.raises(ConfigError, match="min_depth < max_depth"):
        build_depth_net("resnet18", output="log_depth", min_depth=2.0, max_depth=1.0)


@pytest.mark.parametrize("encoder", ["conv", "resnet18"])
def test_translation_scale_scales_translation_only_and_travels_in_the_arch(encoder):
    from sfm_ros.core.checkpoint import arch_from_config, build_networks
    from sfm_ros.core.config import load_config

    torch.manual_seed(0)
    small = build_pose_net(3, use_mask=False, encoder=encoder)
    metric = build_pose_net(3, use_mask=False, encoder=encoder, translation_scale=1.0)
    metric.load_state_dict(small.state_dict())
    tgt, srcs = torch.rand(1, 3, 64, 96), torch.rand(1, 2, 3, 64, 96)
    with torch.no_grad():
        (a, _), (b, _) = small.forward_vec(tgt, srcs), metric.forward_vec(tgt, srcs)
    assert torch.allclose(b[..., :3], 100.0 * a[..., :3], rtol=1e-5, atol=1e-7)
    assert torch.equal(b[..., 3:], a[..., 3:])
    cfg = load_config(overrides=["model.translation_scale=1.0"])
    arch = arch_from_config(cfg.model, cfg.data)
    assert arch["pose_kwargs"] == {"translation_scale": 1.0}
    assert build_networks(arch)[1].translation_scale == 1.0
    default = load_config()
    assert arch_from_config(default.model, default.data)["pose_kwargs"] == {}


def _with_mean(images: torch.Tensor, mean: float) -> torch.Tensor:
    return images * (mean / images.mean(dim=(-3, -2, -1), keepdim=True))


def test_images_are_scaled_into_the_brightness_band_only_when_outside_it():
    images = torch.rand(3, 3, 8, 12)
    images = torch.cat([_with_mean(images[:1], 0.1), _with_mean(images[1:2], 0.45), images[2:] * 0])
    out = in_band(torch.cat([images, _with_mean(images[:1], 0.8)]))
    means = out.mean(dim=(1, 2, 3))
    assert means[0].item() == pytest.approx(BRIGHTNESS_BAND[0], rel=1e-5)
    assert torch.equal(out[1], images[1])  # inside the band: to the bit
    assert torch.equal(out[2], images[2])  # black stays black
    assert means[3].item() == pytest.approx(BRIGHTNESS_BAND[1], rel=1e-5)


def test_a_snippets_exposure_steps_are_matched_beyond_what_content_explains():
    """Sources within `EXPOSURE_STEP` of the target keep their ratio to it; a source at half its
    brightness is brought to the edge of that step; a dark snippet is brightened by one gain."""
    tgt = _with_mean(torch.rand(1, 3, 8, 12), 0.4)
    near, step = _with_mean(torch.rand(1, 3, 8, 12), 0.42), _with_mean(torch.rand(1, 3, 8, 12), 0.2)
    srcs = torch.stack([near, step], dim=1)
    tgt_out, srcs_out = exposure_matched(tgt, srcs)
    assert torch.equal(tgt_out, tgt) and torch.equal(srcs_out[:, 0], near)
    log_ratio = torch.log(tgt_out.mean() / srcs_out[:, 1].mean()).item()
    assert log_ratio == pytest.approx(EXPOSURE_STEP, rel=1e-4)
    dark_tgt, dark_srcs = exposure_matched(tgt / 2, srcs / 2)
    assert dark_tgt.mean().item() == pytest.approx(BRIGHTNESS_BAND[0], rel=1e-5)
    torch.testing.assert_close(dark_srcs, srcs_out * (BRIGHTNESS_BAND[0] / 0.4))


@pytest.mark.parametrize("encoder", POSE_ENCODERS)
def test_pose_nets_see_a_global_exposure_step_as_nothing(encoder):
    """Sources darkened by half give the pose of the sources as they were, less the step that
    content explains: equal to the snippet with those sources at exp(-EXPOSURE_STEP)."""
    net = build_pose_net(3, use_mask=False, encoder=encoder).eval()
    tgt = _with_mean(torch.rand(1, 3, 32, 96), 0.45)
    srcs = _with_mean(torch.rand(1, 2, 3, 32, 96), 0.45)
    with torch.no_grad():
        stepped = net.forward_vec(tgt, srcs * 0.5)[0]
        at_the_edge = net.forward_vec(tgt, srcs * math.exp(-EXPOSURE_STEP))[0]
        unmatched = net.forward_vec(tgt, srcs)[0]
    matched_gap = (stepped - at_the_edge).abs().max()
    assert matched_gap < 1e-4 * stepped.abs().max()
    assert (stepped - unmatched).abs().max() > 100 * matched_gap  # the step itself matters

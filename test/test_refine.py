"""Direct photometric pose refinement on analytically rendered scenes (refine_scenes.py)."""

import math

import numpy as np
import pytest
import refine_scenes as rs
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import se3_exp, se3_inverse
from sfm_ros.core.metrics import rotation_error_deg
from sfm_ros.core.refine import (
    FALLBACK_VARIANCE,
    RefineConfig,
    cauchy_costs,
    linearize,
    prepare_reference,
    refine_pose,
    refine_with_reference,
)
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.synthetic.occluder import passing_object

H, W = 48, 160
# ~2.1 degrees and ~0.19 m away from the truth (the true step is 0.68 m)
PERTURB = se3_exp(torch.tensor([[0.1, -0.05, 0.15, 0.02, -0.03, 0.01]], dtype=torch.float64))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair() -> dict:
    v = rs.views([np.eye(4), rs.pose((1, 3, 0.5), (0.3, -0.1, 0.6))], H, W)
    v["T_true"] = rs.relative(v["T_world_cam"][1], v["T_world_cam"][0])[None]  # T_tgt_ref
    return v


def _run(v: dict, depth=None, T0=None, tgt=None, config=None, ref=None):
    return refine_pose(
        v["images"][:1] if ref is None else ref,
        v["depth"][:1] if depth is None else depth,
        v["images"][1:2] if tgt is None else tgt,
        v["K"][None],
        (PERTURB @ v["T_true"] if T0 is None else T0).float(),
        config,
    )


def _errors(T: torch.Tensor, T_true: torch.Tensor) -> tuple[float, float]:
    """Rotation error and translation direction error, degrees."""
    T, T_true = T[0].double().numpy(), T_true[0].double().numpy()
    a, b = T[:3, 3], T_true[:3, 3]
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    return rotation_error_deg(T, T_true), math.degrees(math.acos(min(1.0, cos)))


@pytest.mark.parametrize("robust", ["huber", "cauchy"])
def test_recovers_true_pose_from_perturbed_start(pair, robust):
    start_rot, start_dir = _errors(PERTURB @ pair["T_true"], pair["T_true"])
    assert start_rot > 2.0 and start_dir > 5.0
    res = _run(pair, config=RefineConfig(robust=robust))
    assert res.reason == ["ok"] and bool(res.ok[0]) and bool(res.converged[0])
    rot, direction = _errors(res.T_tgt_ref, pair["T_true"])
    assert rot < 0.1 and direction < 1.0
    assert res.final_cost[0] < 0.5 * res.initial_cost[0]
    assert 0 < int(res.iterations[0]) <= sum(RefineConfig().max_iterations)


def test_does_not_move_away_from_correct_start(pair):
    res = _run(pair, T0=pair["T_true"])
    assert res.reason == ["ok"]
    rot, direction = _errors(res.T_tgt_ref, pair["T_true"])
    assert rot < 0.1 and direction < 1.0
    moved = res.T_tgt_ref[0, :3, 3].double() - pair["T_true"][0, :3, 3]
    assert moved.norm() < 0.02  # of a 0.68 m step


def test_noisy_depth_with_wrong_scale_still_converges_in_rotation(pair):
    g = torch.Generator().manual_seed(0)
    depth = pair["depth"][:1]
    smooth = F.interpolate(torch.randn(1, 1, 6, 20, generator=g), size=(H, W), mode="bilinear")
    noisy = depth * 1.3 * (1 + 0.05 * smooth + 0.02 * torch.randn(depth.shape, generator=g))
    res = _run(pair, depth=noisy)
    assert res.reason == ["ok"]
    rot, _ = _errors(res.T_tgt_ref, pair["T_true"])
    assert rot < 0.5  # from 2.1 degrees
    # depth 1.3x too far explains the images with a 1.3x longer step
    ratio = res.T_tgt_ref[0, :3, 3].norm() / pair["T_true"][0, :3, 3].norm()
    assert 1.1 < ratio < 1.5


def test_rgb_input_matches_grey(pair):
    grey = _run(pair)
    rgb = _run(
        pair, ref=pair["images"][:1].expand(1, 3, H, W), tgt=pair["images"][1:2].expand(1, 3, H, W)
    )
    torch.testing.assert_close(rgb.T_tgt_ref, grey.T_tgt_ref, atol=1e-4, rtol=0)


def test_batch_items_are_independent(pair):
    single = _run(pair)
    ref = pair["images"][:1].expand(2, 1, H, W)
    tgt = torch.cat([pair["images"][1:2], torch.full_like(pair["images"][1:2], 0.5)])
    T0 = (PERTURB @ pair["T_true"]).expand(2, 4, 4).float()
    batch = refine_pose(
        ref, pair["depth"][:1].expand(2, 1, H, W), tgt, pair["K"].expand(2, 3, 3), T0
    )
    assert batch.reason == ["ok", "low_texture"]
    torch.testing.assert_close(batch.T_tgt_ref[0], single.T_tgt_ref[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.T_tgt_ref[1], T0[1])


def test_one_reference_expanded_aligns_like_as_many_prepared(pair):
    """Several targets against one image: prepared once and expanded, the results are those of
    preparing a copy per target."""
    ref, depth, K = pair["images"][:1], pair["depth"][:1], pair["K"][None]
    tgt = torch.cat([pair["images"][1:2], pair["images"][:1], pair["images"][1:2]])
    T0 = torch.cat([PERTURB @ pair["T_true"], torch.eye(4)[None].double(), pair["T_true"]])
    copies = prepare_reference(
        ref.expand(3, -1, -1, -1), depth.expand(3, -1, -1, -1), K.expand(3, 3, 3)
    )
    expanded = prepare_reference(ref, depth, K).expand(3)
    a = refine_with_reference(copies, tgt, T0.float())
    b = refine_with_reference(expanded, tgt, T0.float())
    assert a.reason == b.reason == ["ok", "ok", "ok"]
    torch.testing.assert_close(b.T_tgt_ref, a.T_tgt_ref, atol=0, rtol=0)
    torch.testing.assert_close(b.covariance, a.covariance, atol=0, rtol=0)
    rot, direction = _errors(b.T_tgt_ref[:1], pair["T_true"])
    assert rot < 0.1 and direction < 1.0
    with pytest.raises(InputError, match="batch 1"):
        copies.expand(3)


def test_the_sync_free_solver_gives_the_same_result(pair):
    """Running every level's iteration cap (no host sync) leaves the items that stopped as
    they were: the same poses, steps and outcomes as stopping early, a fallback included."""
    ref = prepare_reference(pair["images"][:1], pair["depth"][:1], pair["K"][None]).expand(3)
    tgt = torch.cat([pair["images"][1:2], torch.full_like(pair["images"][:1], 0.5)])
    tgt = torch.cat([tgt, pair["images"][1:2]])
    T0 = torch.cat([PERTURB @ pair["T_true"], pair["T_true"], pair["T_true"]]).float()
    early = refine_with_reference(ref, tgt, T0)
    free = refine_with_reference(ref, tgt, T0, RefineConfig(sync_free=True))
    assert early.reason == free.reason == ["ok", "low_texture", "ok"]
    assert int(early.iterations.sum()) < sum(RefineConfig().max_iterations) * 3
    for name in ("T_tgt_ref", "iterations", "converged", "final_cost", "covariance"):
        torch.testing.assert_close(getattr(free, name), getattr(early, name), atol=0, rtol=0)


def test_the_sync_free_refinement_is_one_graph_without_host_syncs(pair):
    """With ``sync_free`` the whole refinement after the input checks (pyramid, every level's
    solver, the retry, the sanity checks, the covariance) traces into one graph: nothing is
    read back to the host and no Python branch depends on data, which is what capturing it
    in a CUDA graph needs. A stray ``.item()`` or ``if tensor:`` fails here."""
    from sfm_ros.core import refine

    torch._dynamo.reset()
    cfg = RefineConfig(max_iterations=(2, 2), sync_free=True)  # small caps: a quick trace
    ref = prepare_reference(pair["images"][:1], pair["depth"][:1], pair["K"][None], cfg)
    T0 = (PERTURB @ pair["T_true"]).double()
    traced = torch.compile(refine.refine_on_device, backend="eager", fullgraph=True)
    reason, solution = traced(ref, pair["images"][1:2], T0, cfg)
    eager = refine_with_reference(ref, pair["images"][1:2], T0, cfg)
    assert eager.reason == ["ok"] and int(reason[0]) == 0
    torch.testing.assert_close(solution["T_tgt_ref"], eager.T_tgt_ref, atol=0, rtol=0)
    rot, _ = _errors(eager.T_tgt_ref, pair["T_true"])
    assert rot < _errors(T0, pair["T_true"])[0] / 2  # four steps went most of the way
    # nor does any operator read a value back on its own (as linalg.solve's error check does)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        refine.refine_on_device(ref, pair["images"][1:2], T0, cfg)
    reads = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"}
    assert not [e.name for e in prof.events() if e.name in reads]


def test_a_compiled_step_refines_like_the_eager_one(pair):
    """``compile_step`` (torch.compile of one Levenberg-Marquardt step, about 20 s the first
    time) changes the operations' order, not the solution."""
    eager = _run(pair)
    compiled = _run(pair, config=RefineConfig(compile_step=True))
    assert compiled.reason == eager.reason == ["ok"]
    torch.testing.assert_close(compiled.T_tgt_ref, eager.T_tgt_ref, atol=1e-4, rtol=0)
    rot, direction = _errors(compiled.T_tgt_ref, pair["T_true"])
    assert rot < 0.1 and direction < 1.0


@pytest.mark.parametrize("what", ["blank_target", "blank_reference", "nan_depth"])
def test_falls_back_to_initial_pose_with_a_reason(pair, what):
    T0 = (PERTURB @ pair["T_true"]).float()
    blank = torch.full_like(pair["images"][:1], 0.5)
    kwargs = {
        "blank_target": {"tgt": blank},
        "blank_reference": {"ref": blank},
        "nan_depth": {"depth": torch.full_like(pair["depth"][:1], math.nan)},
    }[what]
    res = _run(pair, T0=T0, **kwargs)
    assert res.reason == ["few_pixels" if what == "nan_depth" else "low_texture"]
    assert not bool(res.ok[0]) and not bool(res.converged[0])
    assert torch.equal(res.T_tgt_ref, T0)
    torch.testing.assert_close(res.covariance[0], FALLBACK_VARIANCE * torch.eye(6).double())


def test_implausible_motion_is_reported_as_diverged(pair):
    # the true pose is 2.1 degrees away from the start; allow only 0.5 degrees of change
    res = _run(pair, config=RefineConfig(max_rotation_deg=0.5))
    assert res.reason == ["diverged"]
    torch.testing.assert_close(res.T_tgt_ref, (PERTURB @ pair["T_true"]).float())


def test_analytic_jacobian_matches_finite_differences(pair):
    # A target that is linear in (u, v) makes bilinear sampling and central differences exact,
    # so the analytic chain (gradient x projection x point Jacobian) must match to rounding.
    v_idx, u_idx = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    tgt = (0.2 + 0.003 * u_idx + 0.005 * v_idx)[None, None]
    K = pair["K"][None].double()
    ref = prepare_reference(pair["images"][:1].double(), pair["depth"][:1].double(), K)
    T = pair["T_true"]
    ab = torch.tensor([[0.1, 0.02]], dtype=torch.float64)
    r, J, inside = linearize(ref, tgt, T, ab)
    assert J.shape[-1] == 8 and inside.sum() > 100
    eps = 1e-6
    for k in range(8):
        e = torch.zeros(1, 8, dtype=torch.float64)
        e[0, k] = eps
        r_plus, _, in_plus = linearize(ref, tgt, se3_exp(e[:, :6]) @ T, ab + e[:, 6:])
        r_minus, _, in_minus = linearize(ref, tgt, se3_exp(-e[:, :6]) @ T, ab - e[:, 6:])
        both = inside & in_plus & in_minus
        numeric = (r_plus - r_minus)[both] / (2 * eps)
        torch.testing.assert_close(J[..., k][both], numeric, rtol=1e-5, atol=1e-7)
    assert torch.all(J[~inside] == 0) and torch.all(r[~inside] == 0)


def _linear_target(pair) -> torch.Tensor:
    """A target linear in (u, v): bilinear sampling and central differences are exact."""
    v_idx, u_idx = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    return (0.2 + 0.003 * u_idx + 0.005 * v_idx)[None, None]


def test_a_depth_error_moves_residuals_by_the_gradient_along_the_translation(pair):
    # What depth_uncertainty models: scaling a pixel's depth by (1 + e) moves its residual by
    # -e (dr/dX . t) = -e (J_v . t), nothing along the ray.
    K, T = pair["K"][None].double(), pair["T_true"]
    depth = pair["depth"][:1].double()
    exact = prepare_reference(pair["images"][:1].double(), depth, K)
    r, J, inside = linearize(exact, _linear_target(pair), T)
    e = 1e-4
    moved = prepare_reference(pair["images"][:1].double(), depth * (1 + e), K)
    r_moved, _, inside_moved = linearize(moved, _linear_target(pair), T)
    both = inside & inside_moved
    predicted = -e * (J[..., :3] @ T[:, :3, 3:])[..., 0]
    assert predicted[both].abs().max() > 1e-6
    torch.testing.assert_close(r_moved[both] - r[both], predicted[both], rtol=1e-3, atol=1e-9)


def test_depth_uncertainty_weights_down_only_residuals_that_depend_on_depth(pair):
    K = pair["K"][None].double()
    ref = prepare_reference(pair["images"][:1].double(), pair["depth"][:1].double(), K)
    tgt = pair["images"][1:2].double()
    weighted = RefineConfig(depth_uncertainty=0.3)
    rotation = pair["T_true"].clone()
    rotation[:, :3, 3] = 0  # no translation: depth does not matter, nothing is weighted
    for T, changed in ((rotation, False), (pair["T_true"], True)):
        r, J, inside = linearize(ref, tgt, T)
        r_w, J_w, inside_w = linearize(ref, tgt, T, config=weighted)
        assert torch.equal(inside, inside_w)
        assert torch.all(r_w.abs() <= r.abs()) and torch.all(J_w.abs() <= J.abs() + 1e-12)
        assert bool((r_w.abs() < 0.9 * r.abs()).any()) == changed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depth_uncertainty_keeps_rotation_when_the_depth_is_wrong(pair, seed):
    # A network's depth: smooth relative errors of about 20 % over the image.
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.randn(1, 1, 4, 12, generator=g), size=(H, W), mode="bilinear")
    wrong = pair["depth"][:1] * torch.exp(0.2 * smooth)
    rot, _ = _errors(_run(pair, depth=wrong).T_tgt_ref, pair["T_true"])
    res = _run(pair, depth=wrong, config=RefineConfig(depth_uncertainty=0.3))
    rot_w, _ = _errors(res.T_tgt_ref, pair["T_true"])
    assert res.reason == ["ok"] and rot_w < 0.8 * rot and rot_w < 0.7  # from 2.1 degrees
    # The price with exact depth: fewer pixels fully trusted, still well within 0.2 degrees.
    exact = _run(pair, config=RefineConfig(depth_uncertainty=0.3))
    rot_exact, direction = _errors(exact.T_tgt_ref, pair["T_true"])
    assert exact.reason == ["ok"] and rot_exact < 0.2 and direction < 2.0


def test_covariance_is_symmetric_positive_definite_and_grows_with_noise(pair):
    clean = _run(pair)
    g = torch.Generator().manual_seed(1)
    noisy_tgt = pair["images"][1:2] + 0.03 * torch.randn(pair["images"][1:2].shape, generator=g)
    noisy = _run(pair, tgt=noisy_tgt.clamp(0, 1))
    for res in (clean, noisy):
        cov = res.covariance[0]
        assert cov.shape == (6, 6) and torch.isfinite(cov).all()
        torch.testing.assert_close(cov, cov.T)
        assert torch.linalg.eigvalsh(cov).min() > 0
        assert cov.diagonal()[3:].sqrt().max() < math.radians(1)  # rotation std < 1 degree
    assert noisy.covariance[0].trace() > 2 * clean.covariance[0].trace()


def test_identical_frames_do_not_make_the_covariance_vanish(pair):
    # A repeated frame leaves no residual at all; the covariance must still be what one grey
    # level of image noise gives, not zero (a filter would then trust this step absolutely).
    eye = torch.eye(4, dtype=torch.float64)[None]
    ref = pair["images"][:1]
    same = _run(pair, tgt=ref, T0=(PERTURB @ eye).float())
    assert same.reason == ["ok"] and same.final_cost[0] < 1e-9
    assert rotation_error_deg(same.T_tgt_ref[0].double().numpy(), np.eye(4)) < 0.01
    g = torch.Generator().manual_seed(0)
    grey_level = (ref + torch.randn(ref.shape, generator=g) / 255).clamp(0, 1)
    noisy = _run(pair, tgt=grey_level, T0=(PERTURB @ eye).float())
    ratio = same.covariance[0].diagonal() / noisy.covariance[0].diagonal()
    assert torch.all((ratio > 0.5) & (ratio < 2))


def test_bad_arguments_raise_input_error(pair):
    with pytest.raises(InputError):
        _run(pair, depth=pair["depth"][:1, :, :10])
    with pytest.raises(InputError):
        _run(pair, T0=torch.full((1, 4, 4), math.nan))
    with pytest.raises(InputError):
        _run(pair, tgt=pair["images"][1:2, :, :20])
    with pytest.raises(InputError):
        RefineConfig(robust="tukey")


def test_cauchy_costs_prefer_the_static_scene_to_an_object_crossing_it():
    # a still camera on a street while an object 40-50 % of the image wide crosses it: the
    # Huber-weighted refinement from the true (identity) pose is pulled along by more than the
    # camera's step while driving (0.3 m a frame); compared by Cauchy costs, the true pose
    # explains the frame better. Between two frames of the drive, the true motion beats
    # standing still.
    seq = render_sequence("street", 6, seed=5, height=64, width=208)
    K = torch.as_tensor(seq.K)[None].float()

    def tensor(image):
        return torch.as_tensor(image).permute(2, 0, 1)[None].float() / 255

    depth = torch.as_tensor(seq.depth_m[5])[None, None].float()
    reference = prepare_reference(tensor(seq.images[5]), depth, K)
    still = torch.eye(4, dtype=torch.float64)[None]
    for fraction, step in ((0.4, 6), (0.5, 8)):
        target = tensor(passing_object(seq.images[5], step, fraction, speed=0.06))
        pulled = refine_with_reference(reference, target, still.float())
        assert pulled.reason == ["ok"] and pulled.T_tgt_ref[0, :3, 3].norm() > 0.35
        costs = cauchy_costs(reference, target, [still, pulled.T_tgt_ref], pulled.gain_bias)
        assert costs[0, 0] < costs[1, 0]
    T_true = torch.as_tensor(se3_inverse(seq.T_world_cam[4]) @ seq.T_world_cam[5])[None]
    costs = cauchy_costs(reference, tensor(seq.images[4]), [still, T_true], torch.zeros(1, 2))
    assert costs[1, 0] < 0.7 * costs[0, 0]

"""Tests of sfm_ros.core.geometry against direct projections and analytically rendered scenes."""

import math

import numpy as np
import pytest
import torch

from sfm_ros.core import geometry as g
from sfm_ros.core.errors import InputError

K_NP = np.array([[60.0, 0.4, 31.2], [0.0, 58.0, 23.7], [0.0, 0.0, 1.0]])
H, W = 48, 64


def _project_np(K, X):
    uvw = K @ X
    return uvw[:2] / uvw[2]


def _points(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(2, 9, n)])


# --------------------------------------------------------------------------- intrinsics


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_scale_crop_flip_match_direct_projection(backend):
    X = _points()
    uv = _project_np(K_NP, X)
    K = K_NP if backend == "numpy" else torch.tensor(K_NP).expand(2, 3, 3)

    def proj(K_new, X_new=X):
        K_new = K_new if backend == "numpy" else K_new[1].numpy()
        return _project_np(K_new, X_new)

    sx, sy = 416 / 640, 128 / 192
    expected = np.stack([(uv[0] + 0.5) * sx - 0.5, (uv[1] + 0.5) * sy - 0.5])
    np.testing.assert_allclose(proj(g.scale_intrinsics(K, sx, sy)), expected, atol=1e-9)

    expected = uv - np.array([[7.0], [3.0]])
    np.testing.assert_allclose(proj(g.crop_intrinsics(K, 7, 3)), expected, atol=1e-9)

    # A flipped image is the unflipped camera looking at the mirrored scene (x -> -x).
    X_mirror = X * np.array([[-1.0], [1.0], [1.0]])
    expected = np.stack([W - 1 - uv[0], uv[1]])
    np.testing.assert_allclose(proj(g.flip_intrinsics(K, W), X_mirror), expected, atol=1e-9)


def test_intrinsics_helpers_do_not_modify_input_and_keep_type():
    K = K_NP.copy()
    out = g.scale_intrinsics(K, 0.5, 0.5)
    np.testing.assert_array_equal(K, K_NP)
    assert isinstance(out, np.ndarray)
    Kt = torch.tensor(K_NP, dtype=torch.float32)
    out_t = g.flip_intrinsics(Kt, W)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    assert torch.equal(Kt, torch.tensor(K_NP, dtype=torch.float32))
    with pytest.raises(InputError):
        g.crop_intrinsics(np.eye(4), 1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 3)),
        np.where(np.eye(3) > 0, np.nan, K_NP),
        K_NP * np.array([[-1], [1], [1]]),
        np.vstack([K_NP[:2], [0.0, 0.1, 1.0]]),
        K_NP + np.array([[0, 0, 500.0], [0, 0, 0], [0, 0, 0]]),
        np.full((3, 3), np.inf),
    ],
)
def test_check_intrinsics_rejects(bad):
    with pytest.raises(InputError):
        g.check_intrinsics(bad, W, H)
    with pytest.raises(InputError):
        g.check_intrinsics(torch.tensor(np.stack([K_NP, bad])), W, H)


def test_check_intrinsics_accepts_valid():
    g.check_intrinsics(K_NP, W, H)
    g.check_intrinsics(torch.tensor(K_NP, dtype=torch.float32).expand(4, 3, 3))


def test_inverse_intrinsics_inverts_batched_pinhole_matrices_with_skew():
    gen = torch.Generator().manual_seed(0)
    K = torch.zeros(2, 5, 3, 3, dtype=torch.float64)
    K[..., 0, 0] = 100 + 500 * torch.rand(2, 5, generator=gen)
    K[..., 1, 1] = 100 + 500 * torch.rand(2, 5, generator=gen)
    K[..., 0, 1] = torch.randn(2, 5, generator=gen)
    K[..., :2, 2] = 300 * torch.rand(2, 5, 2, generator=gen)
    K[..., 2, 2] = 1
    K_inv = g.inverse_intrinsics(K)
    torch.testing.assert_close(K_inv, torch.linalg.inv(K), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        K_inv @ K, torch.eye(3, dtype=K.dtype).expand_as(K), atol=1e-12, rtol=0
    )


# --------------------------------------------------------------------------- poses


def _random_vecs(rotation, magnitude, n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    vec = torch.rand(n, 6, generator=gen, dtype=torch.float64) * 2 - 1
    if rotation == "euler":  # ry in (-pi/2, pi/2), the range of the inverse
        vec[:, 3:] *= torch.tensor([magnitude, min(magnitude, 1.5), magnitude], dtype=vec.dtype)
    else:  # angle < pi, the range of the inverse
        axis = vec[:, 3:] / vec[:, 3:].norm(dim=1, keepdim=True)
        angle = torch.rand(n, 1, generator=gen, dtype=vec.dtype) * magnitude
        vec[:, 3:] = axis * angle
    return vec


@pytest.mark.parametrize("rotation", ["euler", "axis_angle"])
@pytest.mark.parametrize("magnitude", [0.05, 3.1])
def test_pose_vec_round_trip(rotation, magnitude):
    vec = _random_vecs(rotation, magnitude)
    T = g.pose_vec_to_mat(vec, rotation)
    R = T[:, :3, :3]
    eye = torch.eye(3, dtype=vec.dtype)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye.expand_as(R), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(vec), dtype=vec.dtype))
    torch.testing.assert_close(T[:, 3], torch.tensor([0, 0, 0, 1.0], dtype=vec.dtype).expand(64, 4))
    torch.testing.assert_close(g.mat_to_pose_vec(T, rotation), vec, atol=1e-9, rtol=0)


@pytest.mark.parametrize("rotation", ["euler", "axis_angle"])
def test_pose_vec_zero_is_identity_with_finite_gradients(rotation):
    vec = torch.zeros(3, 6, requires_grad=True)
    T = g.pose_vec_to_mat(vec, rotation)
    torch.testing.assert_close(T, torch.eye(4).expand(3, 4, 4))
    torch.testing.assert_close(g.mat_to_pose_vec(T.detach(), rotation), torch.zeros(3, 6))
    # d(R[2,1])/d(rx) = 1 at zero for both parameterisations (R ~ I + [w]x).
    (T[:, 2, 1] - T[:, 1, 2]).sum().backward()
    assert torch.isfinite(vec.grad).all()
    torch.testing.assert_close(vec.grad[:, 3], torch.full((3,), 2.0))


def test_pose_vec_batched_leading_dims():
    vec = _random_vecs("axis_angle", 1.0, n=6).reshape(2, 3, 6)
    T = g.pose_vec_to_mat(vec, "axis_angle")
    assert T.shape == (2, 3, 4, 4)
    torch.testing.assert_close(g.mat_to_pose_vec(T, "axis_angle"), vec)


def test_euler_convention_is_rx_ry_rz():
    a, b, c = 0.3, -0.7, 1.1
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    T = g.pose_vec_to_mat(torch.tensor([[1.0, 2.0, 3.0, a, b, c]], dtype=torch.float64))
    np.testing.assert_allclose(T[0, :3, :3].numpy(), rx @ ry @ rz, atol=1e-12)
    np.testing.assert_allclose(T[0, :3, 3].numpy(), [1.0, 2.0, 3.0])


def test_axis_angle_rotates_about_axis():
    axis = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    axis = axis / axis.norm()
    angle = 2.0
    R = g.pose_vec_to_mat(
        torch.cat([torch.zeros(3, dtype=axis.dtype), axis * angle])[None], "axis_angle"
    )[0, :3, :3]
    perp = torch.linalg.cross(axis, torch.tensor([0.0, 0.0, 1.0], dtype=axis.dtype))
    perp = perp / perp.norm()
    torch.testing.assert_close(R @ axis, axis)
    expected = math.cos(angle) * perp + math.sin(angle) * torch.linalg.cross(axis, perp)
    torch.testing.assert_close(R @ perp, expected)


# --------------------------------------------------------------------------- projection


def _K(batch=1, dtype=torch.float32):
    return torch.tensor(K_NP, dtype=dtype).expand(batch, 3, 3).clone()


def test_backproject_project_round_trip():
    depth = torch.rand(2, 1, H, W, dtype=torch.float64) * 10 + 0.5
    K = _K(2, torch.float64)
    points = g.backproject(depth, torch.linalg.inv(K))
    assert points.shape == (2, 3, H * W)
    torch.testing.assert_close(points[:, 2:], depth.reshape(2, 1, -1))
    pix, z = g.project(points, K)
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    grid = torch.stack([u.reshape(-1), v.reshape(-1)]).to(pix)
    torch.testing.assert_close(pix, grid.expand_as(pix))
    torch.testing.assert_close(z, depth.reshape(2, 1, -1))


def test_rigid_flow_translation_and_consistency_with_project():
    depth = torch.full((1, 1, H, W), 4.0)
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = 0.2
    flow = g.rigid_flow(depth, T, _K())
    # Sideways translation t of fronto-parallel points at depth d: u shifts by fx * t / d.
    torch.testing.assert_close(
        flow[:, 0], torch.full((1, H, W), 60.0 * 0.2 / 4.0), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(flow[:, 1], torch.zeros(1, H, W), atol=1e-4, rtol=0)

    T = g.pose_vec_to_mat(torch.tensor([[0.1, -0.05, 0.3, 0.02, -0.03, 0.01]]))
    depth = torch.rand(1, 1, H, W) * 5 + 1
    flow = g.rigid_flow(depth, T, _K())
    pts = T[:, :3, :3] @ g.backproject(depth, torch.linalg.inv(_K())) + T[:, :3, 3:]
    pix, _ = g.project(pts, _K())
    v, u = torch.meshgrid(torch.arange(float(H)), torch.arange(float(W)), indexing="ij")
    torch.testing.assert_close(flow[0, 0] + u, pix[0, 0].reshape(H, W))
    torch.testing.assert_close(flow[0, 1] + v, pix[0, 1].reshape(H, W))


# --------------------------------------------------------------------------- warping


def _texture(a, b):
    """Smooth colour texture on plane coordinates (metres) -> (..., 3) in [0, 1]."""
    return np.stack(
        [
            0.5 + 0.25 * np.sin(3.1 * a) + 0.2 * np.cos(2.3 * b + 0.7 * a),
            0.5 + 0.3 * np.sin(2.2 * b + 1.0) * np.cos(1.3 * a),
            0.5 + 0.2 * np.sin(1.7 * a + 2.9 * b) + 0.2 * np.cos(3.3 * b),
        ],
        axis=-1,
    )


def _render_plane(T_world_cam, K, height=H, width=W):
    """Ray-cast the slanted textured plane; returns image (3, H, W) and depth (1, H, W)."""
    normal = np.array([0.25, -0.15, 1.0])
    normal /= np.linalg.norm(normal)
    p0 = np.array([0.0, 0.0, 5.0])
    e1 = np.cross([0.0, 1.0, 0.0], normal)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    v, u = np.mgrid[0:height, 0:width].astype(float)
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])  # z = 1
    R, c = T_world_cam[:3, :3], T_world_cam[:3, 3]
    dirs = R @ rays
    s = (normal @ (p0 - c)) / (normal @ dirs)  # ray parameter == depth since ray z == 1
    X = c[:, None] + dirs * s
    img = _texture(e1 @ (X - p0[:, None]), e2 @ (X - p0[:, None]))
    return (
        torch.tensor(img.T.reshape(3, height, width), dtype=torch.float32),
        torch.tensor(s.reshape(1, height, width), dtype=torch.float32),
    )


def _scene():
    T_world_tgt = np.eye(4)
    T_world_src = g.pose_vec_to_mat(
        torch.tensor([[0.25, -0.1, 0.4, 0.03, -0.05, 0.02]], dtype=torch.float64)
    )[0].numpy()
    tgt, depth = _render_plane(T_world_tgt, K_NP)
    src, _ = _render_plane(T_world_src, K_NP)
    T_src_tgt = np.linalg.inv(T_world_src) @ T_world_tgt
    return tgt[None], src[None], depth[None], torch.tensor(T_src_tgt, dtype=torch.float32)[None]


def _masked_error(a, b, valid):
    return ((a - b).abs().mean(1, keepdim=True) * valid).sum() / valid.sum()


def test_inverse_warp_reproduces_rendered_target():
    tgt, src, depth, T_src_tgt = _scene()
    warped, valid = g.inverse_warp(src, depth, T_src_tgt, _K())
    assert warped.shape == tgt.shape and valid.shape == (1, 1, H, W)
    assert 0.5 < valid.mean() < 1.0  # the motion pushes part of the view out of the source
    good = _masked_error(warped, tgt, valid)
    assert good < 0.01

    wrong = T_src_tgt.clone()
    wrong[0, 0, 3] += 0.3
    warped_wrong, valid_wrong = g.inverse_warp(src, depth, wrong, _K())
    assert _masked_error(warped_wrong, tgt, valid_wrong) > 8 * good
    warped_wrong, valid_wrong = g.inverse_warp(src, depth * 1.5, T_src_tgt, _K())
    assert _masked_error(warped_wrong, tgt, valid_wrong) > 8 * good


def test_inverse_warp_identity_pose_is_exact_for_any_depth():
    img = torch.rand(2, 3, H, W)
    depth = torch.rand(2, 1, H, W) * 20 + 0.1
    warped, valid = g.inverse_warp(img, depth, torch.eye(4).expand(2, 4, 4), _K(2))
    torch.testing.assert_close(warped, img, atol=1e-4, rtol=0)
    assert valid.min() == 1


def test_inverse_warp_marks_points_behind_camera_invalid():
    img = torch.rand(1, 3, H, W)
    T = torch.eye(4)[None].clone()
    T[0, 2, 3] = -10.0  # source camera 10 m in front: every target point ends up behind it
    _, valid = g.inverse_warp(img, torch.full((1, 1, H, W), 5.0), T, _K())
    assert valid.max() == 0


def test_inverse_warp_gradients_finite_and_nonzero():
    tgt, src, depth, T_src_tgt = _scene()
    vec = g.mat_to_pose_vec(T_src_tgt, "axis_angle").requires_grad_()
    depth = depth.clone().requires_grad_()
    warped, valid = g.inverse_warp(src, depth, g.pose_vec_to_mat(vec, "axis_angle"), _K())
    _masked_error(warped, tgt * 0.9, valid).backward()
    for grad in (vec.grad, depth.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_pixel_grid_is_cached_and_survives_inference_mode():
    g.pixel_grid.cache_clear()
    cpu = torch.device("cpu")
    with torch.inference_mode():  # first built here, the cached grid must serve autograd later
        grid = g.pixel_grid(5, 7, cpu, torch.float32)
        g.backproject(torch.ones(1, 1, 5, 7), torch.eye(3)[None])
    assert g.pixel_grid(5, 7, cpu, torch.float32) is grid and not grid.is_inference()
    depth = torch.ones(1, 1, 5, 7, requires_grad=True)
    K_inv = torch.eye(3)[None].requires_grad_()
    g.backproject(depth, K_inv).sum().backward()
    assert K_inv.grad is not None


def test_depth_from_disp_clamps_small_disparities():
    torch.testing.assert_close(
        g.depth_from_disp(torch.tensor([0.5, 0.0]), eps=1e-3), torch.tensor([2.0, 1e3])
    )


@pytest.mark.parametrize("num_sources", [2, 4])
def test_snippet_poses_in_target_orders_frames_around_the_target(num_sources: int) -> None:
    vec = 0.3 * torch.randn(3, num_sources, 6, generator=torch.Generator().manual_seed(0))
    T_src_tgt = g.pose_vec_to_mat(vec).double()
    T_tgt_frame = g.snippet_poses_in_target(T_src_tgt)
    mid = num_sources // 2
    assert T_tgt_frame.shape == (3, num_sources + 1, 4, 4)
    torch.testing.assert_close(
        T_tgt_frame[:, mid], torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
    )
    sources = torch.cat([T_tgt_frame[:, :mid], T_tgt_frame[:, mid + 1 :]], dim=1)
    eye = torch.eye(4, dtype=torch.float64).expand_as(T_src_tgt)
    torch.testing.assert_close(sources @ T_src_tgt, eye)


def test_snippet_poses_in_target_follows_in_place_edits() -> None:
    T_src_tgt = g.pose_vec_to_mat(0.1 * torch.ones(1, 2, 6)).double()
    before = g.snippet_poses_in_target(T_src_tgt)
    T_src_tgt[..., :3, 3] *= 2.0  # a pose refined in place: the result must follow it
    after = g.snippet_poses_in_target(T_src_tgt)
    torch.testing.assert_close(after, g.snippet_poses_in_target(T_src_tgt.clone()))
    assert not torch.allclose(after, before)

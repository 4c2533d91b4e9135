"""The SE(3)/SO(3) kernel against the matrix exponential, round trips, and its numpy twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sfm_ros.core import lie


def twists(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random twists with angles from 0 to just under pi, including tiny ones."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)
    angle = torch.cat(
        [torch.tensor([0.0, 1e-9, 1e-5, 1e-3, math.pi - 1e-3], dtype=torch.float64),
         torch.rand(n - 5, generator=g, dtype=torch.float64) * (math.pi - 1e-3)]
    )  # fmt: skip
    v = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2
    return torch.cat([v, axis * angle[:, None]], dim=1)


def hat(xi: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 4, 4) Lie algebra matrix."""
    M = torch.zeros(*xi.shape[:-1], 4, 4, dtype=xi.dtype)
    M[..., :3, :3] = lie.skew(xi[..., 3:])
    M[..., :3, 3] = xi[..., :3]
    return M


def test_exponentials_match_the_matrix_exponential():
    xi = twists()
    np.testing.assert_allclose(lie.se3_exp(xi), torch.linalg.matrix_exp(hat(xi)), atol=1e-10)
    R = lie.so3_exp(xi[:, 3:])
    np.testing.assert_allclose(R, torch.linalg.matrix_exp(lie.skew(xi[:, 3:])), atol=1e-10)


def test_log_inverts_exp_up_to_pi():
    xi = twists()
    np.testing.assert_allclose(lie.se3_log(lie.se3_exp(xi)), xi, atol=1e-8)
    np.testing.assert_allclose(lie.so3_log(lie.so3_exp(xi[:, 3:])), xi[:, 3:], atol=1e-8)


def test_skew_is_the_cross_product():
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    np.testing.assert_allclose((lie.skew(a) @ b[..., None])[..., 0], torch.cross(a, b, dim=-1))


def test_numpy_twins_equal_torch_and_keep_batch_shapes():
    xi = twists(12).reshape(3, 4, 6)
    T = lie.se3_exp(xi)
    T_np = lie.se3_exp(xi.numpy())
    assert isinstance(T_np, np.ndarray) and T_np.shape == (3, 4, 4, 4)
    np.testing.assert_array_equal(T_np, T.numpy())
    np.testing.assert_array_equal(lie.se3_log(T_np), lie.se3_log(T).numpy())
    np.testing.assert_array_equal(lie.so3_log(T_np[..., :3, :3]), lie.so3_log(T[..., :3, :3]))
    np.testing.assert_array_equal(lie.se3_inverse(T_np), lie.se3_inverse(T).numpy())
    np.testing.assert_allclose(
        lie.se3_inverse(T_np) @ T_np, np.broadcast_to(np.eye(4), T_np.shape), atol=1e-12
    )
    assert lie.se3_exp(xi.float()).dtype == torch.float32


@pytest.mark.parametrize("scale", [0.0, 1e-6, 0.5])
def test_gradients_are_finite_and_correct_near_zero(scale):
    xi = (torch.randn(2, 6, dtype=torch.float64) * scale).requires_grad_()
    assert torch.autograd.gradcheck(lie.se3_exp, (xi,))
    T = lie.se3_exp(xi)
    T.sum().backward()
    assert torch.isfinite(xi.grad).all()


def test_adjoint_moves_twists_between_frames():
    xi = twists(8)
    T = lie.se3_exp(twists(8, seed=1))
    left = T @ lie.se3_exp(xi) @ lie.se3_inverse(T)
    right = lie.se3_exp((lie.se3_adjoint(T) @ xi[..., None])[..., 0])
    np.testing.assert_allclose(left, right, atol=1e-9)
    np.testing.assert_array_equal(lie.se3_adjoint(T.numpy()), lie.se3_adjoint(T).numpy())

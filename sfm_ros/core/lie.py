"""The one SE(3) / SO(3) kernel: exponential and logarithm maps, batched, torch and numpy.

Each function takes a torch tensor or a numpy array of any batch shape (...) and returns the
same kind: numpy inputs run through the same torch code in float64, so the numpy and torch
twins cannot drift apart. Twists are ``xi = (v, w)``: translational part first, metres, then
the rotation vector in radians (axis * angle), as in `sfm_ros.core.odometry` covariances.
``se3_exp(xi)`` is the motion of constant body twist ``xi`` over unit time.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", torch.Tensor, np.ndarray)

_SMALL = 1e-4  # below this angle (rad) the series forms are exact to float64 precision


def _torch(x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.tensor(np.asarray(x, dtype=np.float64)), True  # a copy: inputs stay untouched


def _out(x: torch.Tensor, was_numpy: bool) -> torch.Tensor | np.ndarray:
    return x.numpy() if was_numpy else x


def _skew(w: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(w[..., 0])
    x, y, z = w.unbind(-1)
    rows = [
        torch.stack([zero, -z, y], -1),
        torch.stack([z, zero, -x], -1),
        torch.stack([-y, x, zero], -1),
    ]
    return torch.stack(rows, -2)


def skew(w: Array) -> Array:
    """(..., 3) -> (..., 3, 3) cross-product matrix: ``skew(a) @ b == cross(a, b)``."""
    t, was_numpy = _torch(w)
    return _out(_skew(t), was_numpy)


def _coefficients(angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sin(a)/a, (1-cos a)/a^2, (a-sin a)/a^3 with their series near 0 (no NaN gradients)."""
    small = angle < _SMALL
    a = torch.where(small, torch.ones_like(angle), angle)
    a2 = angle * angle
    A = torch.where(small, 1 - a2 / 6, torch.sin(a) / a)
    B = torch.where(small, 0.5 - a2 / 24, (1 - torch.cos(a)) / (a * a))
    C = torch.where(small, 1 / 6 - a2 / 120, (a - torch.sin(a)) / (a * a * a))
    return A, B, C


def _so3_exp(w: torch.Tensor) -> torch.Tensor:
    angle = w.norm(dim=-1)[..., None, None]
    A, B, _ = _coefficients(angle)
    W = _skew(w)
    return torch.eye(3, dtype=w.dtype, device=w.device) + A * W + B * (W @ W)


def so3_exp(w: Array) -> Array:
    """Rotation vectors (..., 3), radians -> rotation matrices (..., 3, 3) (Rodrigues)."""
    t, was_numpy = _torch(w)
    return _out(_so3_exp(t), was_numpy)


def _so3_log(R: torch.Tensor) -> torch.Tensor:
    # Via the unit quaternion (Shepperd's method: the best conditioned of four candidates), so
    # angles near pi stay accurate.
    m = [[R[..., i, j] for j in range(3)] for i in range(3)]
    diag = torch.stack(
        [
            m[0][0] + m[1][1] + m[2][2],
            m[0][0] - m[1][1] - m[2][2],
            m[1][1] - m[0][0] - m[2][2],
            m[2][2] - m[0][0] - m[1][1],
        ],
        dim=-1,
    )
    s = 2 * torch.sqrt((1 + diag).clamp(min=1e-12))  # 4 * the candidate's largest component
    wx, wy, wz = m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]
    xy, xz, yz = m[0][1] + m[1][0], m[0][2] + m[2][0], m[1][2] + m[2][1]
    candidates = (
        torch.stack(
            [
                torch.stack([s[..., 0] ** 2 / 4, wx, wy, wz], -1),
                torch.stack([wx, s[..., 1] ** 2 / 4, xy, xz], -1),
                torch.stack([wy, xy, s[..., 2] ** 2 / 4, yz], -1),
                torch.stack([wz, xz, yz, s[..., 3] ** 2 / 4], -1),
            ],
            dim=-2,
        )
        / s[..., None]
    )  # (..., candidate, wxyz)
    best = diag.argmax(-1)[..., None, None].expand(*diag.shape[:-1], 1, 4)
    q = torch.gather(candidates, -2, best).squeeze(-2)
    q = torch.where(q[..., :1] < 0, -q, q)
    norm_v = q[..., 1:].norm(dim=-1, keepdim=True)
    small = norm_v < 1e-7
    factor = torch.where(
        small, 2 / q[..., :1], 2 * torch.atan2(norm_v, q[..., :1]) / torch.where(small, 1, norm_v)
    )
    return q[..., 1:] * factor


def so3_log(R: Array) -> Array:
    """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3), angle in [0, pi]."""
    t, was_numpy = _torch(R)
    return _out(_so3_log(t), was_numpy)


def se3_exp(xi: Array) -> Array:
    """Twists (..., 6) = (v, w) -> rigid transforms (..., 4, 4)."""
    t, was_numpy = _torch(xi)
    v, w = t[..., :3], t[..., 3:]
    A, B, C = _coefficients(w.norm(dim=-1)[..., None, None])
    W = _skew(w)
    W2 = W @ W
    eye = torch.eye(3, dtype=t.dtype, device=t.device)
    R = eye + A * W + B * W2
    p = (eye + B * W + C * W2) @ v[..., None]
    bottom = torch.zeros_like(t[..., :4]).unsqueeze(-2)
    bottom[..., 3] = 1
    return _out(torch.cat([torch.cat([R, p], -1), bottom], -2), was_numpy)


def se3_log(T: Array) -> Array:
    """Rigid transforms (..., 4, 4) -> twists (..., 6) = (v, w); inverse of `se3_exp`."""
    t, was_numpy = _torch(T)
    w = _so3_log(t[..., :3, :3])
    angle = w.norm(dim=-1)[..., None, None]
    small = angle < _SMALL
    a = torch.where(small, torch.ones_like(angle), angle)
    series = 1 / 12 + angle * angle / 720
    D = torch.where(small, series, (1 - a / 2 / torch.tan(a / 2)) / (a * a))
    W = _skew(w)
    V_inv = torch.eye(3, dtype=t.dtype, device=t.device) - W / 2 + D * (W @ W)
    v = (V_inv @ t[..., :3, 3:])[..., 0]
    return _out(torch.cat([v, w], dim=-1), was_numpy)


def se3_adjoint(T: Array) -> Array:
    """(..., 4, 4) ``T`` -> (..., 6, 6) adjoint for twists (v, w): ``T exp(xi) T^-1 =
    exp(Ad(T) xi)``; maps covariances between frames as ``Ad @ cov @ Ad^T``."""
    t, was_numpy = _torch(T)
    R = t[..., :3, :3]
    A = torch.zeros(*t.shape[:-2], 6, 6, dtype=t.dtype, device=t.device)
    A[..., :3, :3] = A[..., 3:, 3:] = R
    A[..., :3, 3:] = _skew(t[..., :3, 3]) @ R
    return _out(A, was_numpy)


def se3_inverse(T_a_b: Array) -> Array:
    """Closed-form inverse (..., 4, 4) ``T_a_b`` -> ``T_b_a``."""
    t, was_numpy = _torch(T_a_b)
    R_t = t[..., :3, :3].transpose(-1, -2)
    T_b_a = torch.zeros_like(t)
    T_b_a[..., :3, :3] = R_t
    T_b_a[..., :3, 3:] = -R_t @ t[..., :3, 3:]
    T_b_a[..., 3, 3] = 1
    return _out(T_b_a, was_numpy)

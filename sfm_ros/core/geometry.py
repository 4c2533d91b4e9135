"""Camera geometry: intrinsics bookkeeping, SE(3) poses, back-projection and inverse warping.

Conventions (docs/ARCHITECTURE.md): optical frame (x right, y down, z forward), ``T_a_b`` maps
points of frame ``b`` into frame ``a``, pixel centres at integer coordinates, depth in metres
along z. Torch functions are batched; intrinsics helpers take numpy or torch, (3, 3) or
(..., 3, 3), and return the same kind; ``core/camera.py``'s ``Camera`` keeps K together with
its image size and derives resized and cropped cameras with them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import se3_inverse, so3_exp, so3_log

Matrix = TypeVar("Matrix", np.ndarray, torch.Tensor)
Rotation = Literal["euler", "axis_angle"]

# ---------------------------------------------------------------------------------------------
# Intrinsics
# ---------------------------------------------------------------------------------------------


def _float_copy(K: Matrix) -> Matrix:
    if tuple(K.shape[-2:]) != (3, 3):
        raise InputError(f"intrinsics must have shape (..., 3, 3), got {tuple(K.shape)}")
    if isinstance(K, torch.Tensor):
        return K.clone() if K.is_floating_point() else K.float()
    K = np.asarray(K)
    return K.astype(K.dtype if np.issubdtype(K.dtype, np.floating) else np.float64, copy=True)


def scale_intrinsics(K: Matrix, sx: float, sy: float) -> Matrix:
    """Intrinsics after resizing the image from (H, W) to (H * sy, W * sx).

    With pixel centres at integer coordinates a pixel ``u`` maps to ``(u + 0.5) * sx - 0.5``, so
    the first row (fx, skew, cx) is multiplied by ``sx`` and ``cx`` gains ``0.5 * sx - 0.5``.
    """
    K = _float_copy(K)
    K[..., 0, :] *= sx
    K[..., 1, :] *= sy
    K[..., 0, 2] += 0.5 * sx - 0.5
    K[..., 1, 2] += 0.5 * sy - 0.5
    return K


def crop_intrinsics(K: Matrix, x0: float, y0: float) -> Matrix:
    """Intrinsics after cropping the image so that pixel (x0, y0) becomes (0, 0)."""
    K = _float_copy(K)
    K[..., 0, 2] -= x0
    K[..., 1, 2] -= y0
    return K


def flip_intrinsics(K: Matrix, width: int) -> Matrix:
    """Intrinsics after a horizontal flip of an image ``width`` pixels wide: ``cx' = width-1-cx``.

    A flip maps ``u -> width - 1 - u``, which would make fx negative. Instead the flipped image
    is treated as the unflipped camera looking at the mirrored scene (x -> -x): fx stays
    positive, the skew changes sign, and depth is unchanged. Poses that go with the flipped
    image must be mirrored too (``M @ T @ M`` with ``M = diag(-1, 1, 1, 1)``).
    """
    K = _float_copy(K)
    K[..., 0, 1] = -K[..., 0, 1]
    K[..., 0, 2] = width - 1 - K[..., 0, 2]
    return K


def inverse_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) pinhole K (last row [0, 0, 1], see `check_intrinsics`) -> K^-1 in closed
    form: unlike ``torch.linalg.inv`` nothing is read back to the host (its singularity
    check), so it runs inside a CUDA graph."""
    fx, skew, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([1 / fx, -skew / (fx * fy), (skew * cy - cx * fy) / (fx * fy)], -1),
        torch.stack([zero, 1 / fy, -cy / fy], -1),
        torch.stack([zero, zero, one], -1),
    ]
    return torch.stack(rows, -2)


def check_intrinsics(K: Matrix, width: int | None = None, height: int | None = None) -> None:
    """Raise ``InputError`` unless ``K`` (..., 3, 3) is a plausible pinhole matrix.

    Checks: finite values, fx > 0, fy > 0, last row [0, 0, 1], and (when the image size is
    given) a principal point within one image size of the image.
    """
    if tuple(K.shape[-2:]) != (3, 3):
        raise InputError(f"intrinsics must have shape (..., 3, 3), got {tuple(K.shape)}")
    k = K.detach().cpu().double().numpy() if isinstance(K, torch.Tensor) else np.asarray(K, float)
    if not np.all(np.isfinite(k)):
        raise InputError("intrinsics contain NaN or inf")
    if np.any(k[..., 0, 0] <= 0) or np.any(k[..., 1, 1] <= 0):
        raise InputError(
            f"intrinsics focal lengths must be > 0, got fx={k[..., 0, 0]}, fy={k[..., 1, 1]}"
        )
    if not np.allclose(k[..., 2, :], [0.0, 0.0, 1.0], atol=1e-6):
        raise InputError(f"intrinsics last row must be [0, 0, 1], got {k[..., 2, :]}")
    for size, idx, name in ((width, 0, "cx"), (height, 1, "cy")):
        c = k[..., idx, 2]
        if size is not None and (np.any(c < -size) or np.any(c > 2 * size)):
            raise InputError(f"principal point {name}={c} is far outside an image of size {size}")


# ---------------------------------------------------------------------------------------------
# Poses
# ---------------------------------------------------------------------------------------------


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(..., 3) angles (rx, ry, rz) in radians -> ``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` (..., 3, 3).

    This is SfMLearner's ``euler2mat`` convention.
    """
    c, s = torch.cos(angles).unbind(-1), torch.sin(angles).unbind(-1)
    o, i = torch.zeros_like(c[0]), torch.ones_like(c[0])
    rx = torch.stack([i, o, o, o, c[0], -s[0], o, s[0], c[0]], -1).unflatten(-1, (3, 3))
    ry = torch.stack([c[1], o, s[1], o, i, o, -s[1], o, c[1]], -1).unflatten(-1, (3, 3))
    rz = torch.stack([c[2], -s[2], o, s[2], c[2], o, o, o, i], -1).unflatten(-1, (3, 3))
    return rx @ ry @ rz


def matrix_to_euler(R: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_matrix`: (..., 3, 3) -> (..., 3), ry in [-pi/2, pi/2]."""
    rx = torch.atan2(-R[..., 1, 2], R[..., 2, 2])
    ry = torch.atan2(R[..., 0, 2], torch.hypot(R[..., 0, 0], R[..., 0, 1]))
    rz = torch.atan2(-R[..., 0, 1], R[..., 0, 0])
    return torch.stack([rx, ry, rz], dim=-1)


def pose_vec_to_mat(vec: torch.Tensor, rotation: Rotation = "euler") -> torch.Tensor:
    """(..., 6) pose vector (tx, ty, tz, rx, ry, rz), metres and radians -> (..., 4, 4) SE(3).

    ``rotation="euler"``: ``R = Rx @ Ry @ Rz`` (SfMLearner); ``"axis_angle"``: Rodrigues.
    """
    if vec.shape[-1] != 6:
        raise InputError(f"pose vectors must have 6 values in the last dim, got {vec.shape}")
    if rotation == "euler":
        R = euler_to_matrix(vec[..., 3:])
    elif rotation == "axis_angle":
        R = so3_exp(vec[..., 3:])
    else:
        raise InputError(f"unknown rotation parameterisation {rotation!r}")
    top = torch.cat([R, vec[..., :3, None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def mat_to_pose_vec(T: torch.Tensor, rotation: Rotation = "euler") -> torch.Tensor:
    """Inverse of :func:`pose_vec_to_mat`: (..., 4, 4) -> (..., 6)."""
    if rotation == "euler":
        rot = matrix_to_euler(T[..., :3, :3])
    elif rotation == "axis_angle":
        rot = so3_log(T[..., :3, :3])
    else:
        raise InputError(f"unknown rotation parameterisation {rotation!r}")
    return torch.cat([T[..., :3, 3], rot], dim=-1)


# ---------------------------------------------------------------------------------------------
# Projection and warping
# ---------------------------------------------------------------------------------------------


def snippet_poses_in_target(T_src_tgt: torch.Tensor) -> torch.Tensor:
    """Poses of every snippet frame in the target camera, in time order.

    Args:
        T_src_tgt: (..., S, 4, 4) source-from-target poses of a snippet whose target is the
            middle frame (sources in time order, as the pose network predicts them).

    Returns:
        (..., S + 1, 4, 4) ``T_tgt_frame``: ``se3_inverse(T_src_tgt)`` with the identity
        inserted at the target's position ``S // 2``.
    """
    mid = T_src_tgt.shape[-3] // 2
    T_tgt_src = se3_inverse(T_src_tgt)
    eye = torch.eye(4, dtype=T_src_tgt.dtype, device=T_src_tgt.device)
    eye = eye.expand(*T_src_tgt.shape[:-3], 1, 4, 4)
    return torch.cat([T_tgt_src[..., :mid, :, :], eye, T_tgt_src[..., mid:, :, :]], dim=-3)


@lru_cache(maxsize=16)
def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Cached homogeneous pixel centres (3, H*W): rows u, v, 1 in row-major pixel order.

    The same tensor is returned for the same arguments: callers must not modify it in place.
    """
    with torch.inference_mode(False):  # usable for autograd even if first built in inference
        v, u = torch.meshgrid(
            torch.arange(height, device=device, dtype=dtype),
            torch.arange(width, device=device, dtype=dtype),
            indexing="ij",
        )
        return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)])


def backproject(depth: torch.Tensor, K_inv: torch.Tensor) -> torch.Tensor:
    """Depth (B, 1, H, W) metres and inverse intrinsics (B, 3, 3) -> camera points (B, 3, H*W)."""
    B, _, H, W = depth.shape
    rays = K_inv @ pixel_grid(H, W, depth.device, depth.dtype)
    return rays * depth.reshape(B, 1, H * W)


def project(
    points: torch.Tensor, K: torch.Tensor, eps: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera points (B, 3, N) -> pixels (B, 2, N) and depth z (B, 1, N).

    z is clamped to ``eps`` for the division only; callers test ``z > eps`` for validity.
    """
    z = points[:, 2:3]
    return (K @ points)[:, :2] / z.clamp(min=eps), z


def _project_target(
    depth_tgt: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source-image pixels (B, 2, H*W) and source depth (B, 1, H*W) of every target pixel."""
    points = backproject(depth_tgt, inverse_intrinsics(K))
    points = T_src_tgt[:, :3, :3] @ points + T_src_tgt[:, :3, 3:]
    return project(points, K, eps)


def inverse_warp(
    src_img: torch.Tensor,
    depth_tgt: torch.Tensor,
    T_src_tgt: torch.Tensor,
    K: torch.Tensor,
    padding_mode: str = "zeros",
    eps: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesise the target view by sampling the source image at reprojected target pixels.

    Args:
        src_img: (B, C, H, W) source image.
        depth_tgt: (B, 1, H, W) target depth in metres.
        T_src_tgt: (B, 4, 4) maps target camera points into the source camera.
        K: (B, 3, 3) intrinsics shared by both images.
        padding_mode: ``F.grid_sample`` padding.

    Returns:
        warped (B, C, H, W) and valid (B, 1, H, W) float: 1 where the point lies in front of
        the source camera (z > eps) and its projection is inside the pixel-centre hull
        [0, W-1] x [0, H-1] (0.01 px tolerance), so the bilinear sample uses image pixels only.
    """
    B, _, H, W = src_img.shape
    pix, z = _project_target(depth_tgt, T_src_tgt, K, eps)
    u, v = pix[:, 0], pix[:, 1]
    tol = 1e-2  # pixels; absorbs float round-off at the image border
    inside = (u >= -tol) & (u <= W - 1 + tol) & (v >= -tol) & (v <= H - 1 + tol)
    valid = (z[:, 0] > eps) & inside
    # align_corners=False: pixel centre u sits at normalised (u + 0.5) / W * 2 - 1.
    grid = torch.stack([(u + 0.5) * (2 / W) - 1, (v + 0.5) * (2 / H) - 1], dim=-1)
    warped = F.grid_sample(
        src_img,
        grid.reshape(B, H, W, 2),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=False,
    )
    return warped, valid.reshape(B, 1, H, W).to(src_img.dtype)


def rigid_flow(
    depth_tgt: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor, eps: float = 1e-3
) -> torch.Tensor:
    """Pixel displacement (B, 2, H, W) of each target pixel into the source image (rigid flow)."""
    B, _, H, W = depth_tgt.shape
    pix, _ = _project_target(depth_tgt, T_src_tgt, K, eps)
    grid = pixel_grid(H, W, depth_tgt.device, depth_tgt.dtype)[:2]
    return (pix - grid).reshape(B, 2, H, W)


# ---------------------------------------------------------------------------------------------
# Disparity and depth
# ---------------------------------------------------------------------------------------------


def depth_from_disp(disp: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Plain inverse depth: ``1 / max(disp, eps)`` (DispNet-style networks)."""
    return 1 / disp.clamp(min=eps)

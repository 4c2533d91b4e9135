"""Camera geometry: intrinsics bookkeeping, SE(3) poses, back-projection and inverse warping.

Conventions (docs/ARCHITECTURE.md): optical frame (x right, y down, z forward), ``T_a_b`` maps
points of frame ``b`` into frame ``a``, pixel centres at integer coordinates, depth in metres
along z. Torch functions are batched; intrinsics helpers take numpy or torch, (3, 3) or
(..., 3, 3), and return the same kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError

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


def intrinsics_from_camera_info(
    k: Sequence[float],
    width: int,
    height: int,
    binning_x: int = 0,
    binning_y: int = 0,
    roi: tuple[int, int, int, int, bool] | None = None,
    p: Sequence[float] | None = None,
) -> np.ndarray:
    """Intrinsics (3, 3) float64 of the image actually published with a sensor_msgs/CameraInfo.

    Args:
        k: row-major K (9 values) of the full-resolution raw image.
        width, height: full-resolution calibration size in pixels.
        binning_x, binning_y: 0 or 1 mean no binning.
        roi: ``(x_offset, y_offset, height, width, do_rectify)``; all zero means the full image.
        p: row-major P (12 values); its left 3x3 is used when given and non-zero (the rectified
            camera), else ``k``.

    The ROI offset is applied first, then binning, as the CameraInfo documentation says.
    Binning is exact for pixel centres (``cx' = (cx + 0.5) / b - 0.5``); image_geometry uses
    ``cx / b``, which differs by ``0.5 - 0.5 / b`` pixels.
    """
    k_arr = np.asarray(k, dtype=np.float64).reshape(-1)
    if k_arr.size != 9:
        raise InputError(f"CameraInfo K must have 9 values, got {k_arr.size}")
    K = k_arr.reshape(3, 3)
    if p is not None:
        p_arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if p_arr.size != 12:
            raise InputError(f"CameraInfo P must have 12 values, got {p_arr.size}")
        if np.any(p_arr[:3] != 0) or np.any(p_arr[4:7] != 0):
            K = p_arr.reshape(3, 4)[:, :3].copy()
    check_intrinsics(K, width, height)
    if binning_x < 0 or binning_y < 0:
        raise InputError(f"CameraInfo binning must be >= 0, got ({binning_x}, {binning_y})")
    if roi is not None and any(roi[:4]):
        x0, y0, h, w = (int(v) for v in roi[:4])
        if x0 < 0 or y0 < 0 or h <= 0 or w <= 0 or x0 + w > width or y0 + h > height:
            raise InputError(
                f"CameraInfo ROI (x={x0}, y={y0}, h={h}, w={w}) does not fit a "
                f"{width}x{height} image"
            )
        K = crop_intrinsics(K, x0, y0)
    return scale_intrinsics(K, 1.0 / max(binning_x, 1), 1.0 / max(binning_y, 1))


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


def _skew(w: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix."""
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).unflatten(-1, (3, 3))


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


def axis_angle_to_matrix(w: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Rodrigues: (..., 3) rotation vector (radians) -> (..., 3, 3).

    Uses Taylor expansions below ``|w| < eps`` so values and gradients stay finite at zero.
    """
    theta2 = (w * w).sum(-1, keepdim=True).unsqueeze(-1)
    small = theta2 < eps * eps
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta * theta))
    S = _skew(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    return eye + a * S + b * (S @ S)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) rotation vector with angle in [0, pi], via a unit quaternion."""
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
    # Shepperd: four candidate quaternions (w, x, y, z); keep the best conditioned one.
    s = 2 * torch.sqrt((1 + diag).clamp(min=1e-12))  # 4 * the candidate's largest component
    wx, wy, wz = m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]
    xy, xz, yz = m[0][1] + m[1][0], m[0][2] + m[2][0], m[1][2] + m[2][1]
    cands = (
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
    q = torch.gather(cands, -2, best).squeeze(-2)
    q = torch.where(q[..., :1] < 0, -q, q)
    norm_v = q[..., 1:].norm(dim=-1, keepdim=True)
    small = norm_v < 1e-7
    factor = torch.where(
        small, 2 / q[..., :1], 2 * torch.atan2(norm_v, q[..., :1]) / torch.where(small, 1, norm_v)
    )
    return q[..., 1:] * factor


def pose_vec_to_mat(vec: torch.Tensor, rotation: Rotation = "euler") -> torch.Tensor:
    """(..., 6) pose vector (tx, ty, tz, rx, ry, rz), metres and radians -> (..., 4, 4) SE(3).

    ``rotation="euler"``: ``R = Rx @ Ry @ Rz`` (SfMLearner); ``"axis_angle"``: Rodrigues.
    """
    if vec.shape[-1] != 6:
        raise InputError(f"pose vectors must have 6 values in the last dim, got {vec.shape}")
    if rotation == "euler":
        R = euler_to_matrix(vec[..., 3:])
    elif rotation == "axis_angle":
        R = axis_angle_to_matrix(vec[..., 3:])
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
        rot = matrix_to_axis_angle(T[..., :3, :3])
    else:
        raise InputError(f"unknown rotation parameterisation {rotation!r}")
    return torch.cat([T[..., :3, 3], rot], dim=-1)


def invert_pose(T_a_b: torch.Tensor) -> torch.Tensor:
    """Closed-form SE(3) inverse: (..., 4, 4) ``T_a_b`` -> ``T_b_a``."""
    R_t = T_a_b[..., :3, :3].transpose(-1, -2)
    t = -R_t @ T_a_b[..., :3, 3:]
    T_b_a = T_a_b.clone()
    T_b_a[..., :3, :3] = R_t
    T_b_a[..., :3, 3:] = t
    return T_b_a


def compose(T_a_b: torch.Tensor, T_b_c: torch.Tensor) -> torch.Tensor:
    """``T_a_c = T_a_b @ T_b_c`` for (..., 4, 4) poses."""
    return T_a_b @ T_b_c


# ---------------------------------------------------------------------------------------------
# Projection and warping
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def snippet_poses_in_target(T_src_tgt: torch.Tensor) -> torch.Tensor:
    """Poses of every snippet frame in the target camera, in time order.

    Args:
        T_src_tgt: (..., S, 4, 4) source-from-target poses of a snippet whose target is the
            middle frame (sources in time order, as the pose network predicts them).

    Returns:
        (..., S + 1, 4, 4) ``T_tgt_frame``: ``invert_pose(T_src_tgt)`` with the identity
        inserted at the target's position ``S // 2``.
    """
    mid = T_src_tgt.shape[-3] // 2
    T_tgt_src = invert_pose(T_src_tgt)
    eye = torch.eye(4, dtype=T_src_tgt.dtype, device=T_src_tgt.device)
    eye = eye.expand(*T_src_tgt.shape[:-3], 1, 4, 4)
    return torch.cat([T_tgt_src[..., :mid, :, :], eye, T_tgt_src[..., mid:, :, :]], dim=-3)


def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Cached homogeneous pixel centres (3, H*W): rows u, v, 1 in row-major pixel order."""
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
    points = backproject(depth_tgt, torch.linalg.inv(K))
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


def disp_to_depth(
    disp: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monodepth2: sigmoid output in [0, 1] -> (scaled disparity, depth in metres)."""
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1 / scaled_disp


def depth_to_disp(
    depth: torch.Tensor, min_depth: float = 0.1, max_depth: float = 100.0
) -> torch.Tensor:
    """Inverse of :func:`disp_to_depth`: depth in metres -> sigmoid-range disparity."""
    min_disp, max_disp = 1 / max_depth, 1 / min_depth
    return (1 / depth - min_disp) / (max_disp - min_disp)


def depth_from_disp(disp: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Plain inverse depth: ``1 / max(disp, eps)`` (DispNet-style networks)."""
    return 1 / disp.clamp(min=eps)

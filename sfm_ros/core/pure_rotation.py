"""A camera that only turns: the rotation-only motion model and its selection by GRIC.

A robot turning on the spot, or a handheld camera turning more than it moves, has no parallax:
every match obeys x_b ~ K R K^-1 x_a, whatever the translation. The essential matrix is then
degenerate (any translation fits), MAGSAC++ keeps only a handful of inliers and a classical
motion is lost exactly where the pose network, which learnt to drive, is weakest. The
rotation-only model has three parameters and pins each match in both coordinates; Torr's
Geometric Robust Information Criterion (GRIC; Torr, "Bayesian model estimation and selection
for epipolar geometry and generic manifold fitting", IJCV 2002) weighs its residuals and its
simplicity against the essential matrix's, as ORB-SLAM's initialisation weighs a homography
against a fundamental matrix. At the node's 50 inliers (`benchmarks/pure_rotation.py`, the
first 100 frames): on a rendered corridor turned on the spot the rotation alone took 13 of the
20 turn pairs (0.10 degrees off; the essential matrix had 50 inliers on one of them, 2.8 off)
and none of the driven ones; on KITTI 06 and 00 none of 149 pairs; on 7-Scenes 44 of 99 (0.13
degrees off; 0.11 for the essential matrix on the 16 of them where it had 50 inliers), which
gave classical VO a rotation on 64 pairs instead of 36.
"""

from __future__ import annotations

import math

import numpy as np

SIGMA_PX = 0.5
"""Standard deviation of a match's position (px) that GRIC assumes: the essential matrix's
MAGSAC++ threshold. At 1 px the driven corridor frames chose the rotation too."""
ROTATION_THRESHOLD_PX = 1.0
"""Transfer error (px) under which a match is an inlier of a rotation."""
RANSAC_PAIRS = 100
"""Pairs of matches drawn (each gives a rotation): with 70 % outliers a clean pair is missed
with a chance of 1e-4."""


def rays(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Unit viewing rays (M, 3) of pixels ``points`` (M, 2) of a camera with matrix ``K``."""
    f = np.c_[points, np.ones(len(points))] @ np.linalg.inv(K).T
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def kabsch(f_a: np.ndarray, f_b: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) R with f_b ~ R f_a in the least-squares sense, from rays
    (..., M, 3)."""
    U, _, Vt = np.linalg.svd(np.swapaxes(f_b, -1, -2) @ f_a)
    D = np.ones(U.shape[:-1])
    D[..., 2] = np.sign(np.linalg.det(U @ Vt))  # a rotation, not a reflection
    return U @ (D[..., None] * Vt)


def transfer_residuals(pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Distances (M,) in pixels from ``pb`` to ``pa`` (M, 2) carried by the rotation x_b = R x_a
    (the infinite homography K R K^-1); infinite for points carried behind the camera."""
    q = np.c_[pa, np.ones(len(pa))] @ (K @ R @ np.linalg.inv(K)).T
    ahead = q[:, 2] > 1e-12
    out = np.full(len(pa), np.inf)
    out[ahead] = np.linalg.norm(q[ahead, :2] / q[ahead, 2:] - pb[ahead], axis=1)
    return out


def rotation_only(
    pa: np.ndarray, pb: np.ndarray, K: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """R (3, 3) of x_b = R x_a fitted to matches ``pa`` -> ``pb`` (M, 2) of a camera that only
    turns, and its (M,) inlier mask (transfer error under `ROTATION_THRESHOLD_PX`): the best of
    `RANSAC_PAIRS` two-match rotations, refitted to its inliers. None with fewer than three
    matches or inliers."""
    if len(pa) < 3:
        return None
    rng = rng or np.random.default_rng(0)
    f_a, f_b = rays(pa, K), rays(pb, K)
    pairs = rng.choice(len(pa), size=(RANSAC_PAIRS, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    R_all = kabsch(f_a[pairs], f_b[pairs])  # (P, 3, 3)
    cosines = ((R_all @ f_a.T) * f_b.T).sum(1)  # (P, M): of the angle from R f_a to f_b
    counts = (cosines > math.cos(ROTATION_THRESHOLD_PX / K[0, 0])).sum(1)
    if len(counts) == 0:
        return None
    R = R_all[int(np.argmax(counts))]
    for _ in range(2):  # refit to the inliers, then take the inliers of the refit
        inliers = transfer_residuals(pa, pb, K, R) < ROTATION_THRESHOLD_PX
        if inliers.sum() < 3:
            return None
        R = kabsch(f_a[inliers], f_b[inliers])
    return R, transfer_residuals(pa, pb, K, R) < ROTATION_THRESHOLD_PX


def gric(squared_errors_px2: np.ndarray, dimension: int, parameters: int) -> float:
    """Torr's GRIC of a model whose manifold has ``dimension`` in the 4-dimensional space of a
    match and ``parameters`` degrees of freedom, from its matches' squared geometric errors
    (M,) (px^2): robust residuals plus the penalties for the manifold and the parameters
    (lower is better)."""
    n, data = len(squared_errors_px2), 4
    residuals = np.minimum(squared_errors_px2 / SIGMA_PX**2, 2.0 * (data - dimension))
    return float(residuals.sum() + math.log(data) * dimension * n + math.log(data * n) * parameters)


def turns_only(
    sampson_px: np.ndarray, pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R: np.ndarray
) -> bool:
    """Whether the rotation ``R`` (x_b = R x_a) explains matches ``pa`` -> ``pb`` (M, 2) better
    than an essential matrix whose Sampson distances they have (``sampson_px``, (M,)): GRIC of
    a rotation (2-dimensional manifold, 3 parameters; half the squared transfer error is its
    geometric error) against an essential matrix's (3-dimensional, 5)."""
    transfer = transfer_residuals(pa, pb, K, R)
    return gric(transfer**2 / 2, 2, 3) < gric(np.asarray(sampson_px) ** 2, 3, 5)

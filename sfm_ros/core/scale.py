"""Metric scale for monocular depth and motion, which are only known up to a factor.

Three sources (the fourth, a fixed factor, needs no code):

- `ground_plane_scale`: fit the ground plane in the lower part of a depth map; its distance from
  the camera, in network units, against the known mounting height gives the factor.
- `OdometryScale`: ratio of the distance travelled according to an external (wheel, GNSS)
  odometry to the visual one over a sliding window of frames.
- `ScaleFilter`: robust running median (or EMA) of per-frame estimates in log space, so the
  applied scale does not jump from frame to frame.

Every factor multiplies network depth and translation: ``metric = scale * network``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from sfm_ros.core.errors import InputError


@dataclass
class ScaleEstimate:
    """Result of `ground_plane_scale`.

    Attributes:
        scale: metres per depth unit (NaN when not valid).
        inlier_ratio: fraction of the region's valid points on the fitted plane.
        normal: (3,) unit plane normal in the optical frame, pointing away from the camera
            (down, +y, for a level camera); NaN when no plane was found.
        distance: camera-to-plane distance in depth units (NaN when no plane was found).
        valid: the plane is supported by enough points and is close enough to level.
    """

    scale: float
    inlier_ratio: float
    normal: np.ndarray
    distance: float
    valid: bool


def _invalid(inlier_ratio: float = 0.0) -> ScaleEstimate:
    return ScaleEstimate(float("nan"), inlier_ratio, np.full(3, np.nan), float("nan"), False)


def _region_points(depth_m: np.ndarray, K: np.ndarray, region: tuple[float, float]) -> np.ndarray:
    """Back-project valid pixels of rows [region[0] * H, region[1] * H) -> (N, 3) points."""
    H, W = depth_m.shape
    top, bottom = int(round(region[0] * H)), int(round(region[1] * H))
    z = depth_m[top:bottom].astype(np.float64)
    v, u = np.mgrid[top:bottom, 0:W]
    ok = np.isfinite(z) & (z > 0)
    z, u, v = z[ok], u[ok], v[ok]
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1)


def _fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane through (N, 3) points -> (unit normal pointing +y, distance)."""
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid, full_matrices=False)
    n = vt[-1]
    n = -n if n[1] < 0 else n
    return n, float(n @ centroid)


def ground_plane_scale(
    depth_m: np.ndarray,
    K: np.ndarray,
    camera_height_m: float,
    region: tuple[float, float] = (0.6, 1.0),
    max_tilt_deg: float = 20.0,
    inlier_threshold: float = 0.05,
    min_inlier_ratio: float = 0.3,
    iterations: int = 100,
    max_points: int = 3000,
    min_points: int = 50,
    seed: int = 0,
) -> ScaleEstimate:
    """Scale from the ground plane seen in the lower image region (RANSAC, then least squares).

    Args:
        depth_m: (H, W) depth up to scale along the optical z axis; NaN or <= 0 = invalid.
        K: (3, 3) intrinsics of ``depth_m``.
        camera_height_m: height of the optical centre above the ground (m).
        region: (top, bottom) fractions of the image height that are searched for ground.
        max_tilt_deg: largest angle between the plane normal and the optical +y ("down") axis.
        inlier_threshold: point-to-plane distance of an inlier, as a fraction of the plane's
            distance from the camera (scale-free: 0.05 = 7.5 cm for a camera 1.5 m high).
        min_inlier_ratio: fraction of the region's points that must lie on the plane.
        iterations: RANSAC hypotheses (three points each).
        max_points: random subset of the region used for the fit (speed).
        min_points: fewer valid points than this gives an invalid estimate.
        seed: RANSAC random seed (results are deterministic).

    Returns:
        `ScaleEstimate` with ``scale = camera_height_m / distance``.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise InputError(f"depth must have shape (H, W), got {depth_m.shape}")
    if not camera_height_m > 0:
        raise InputError(f"camera_height_m must be > 0, got {camera_height_m}")
    if not 0.0 <= region[0] < region[1] <= 1.0:
        raise InputError(f"region must be (top, bottom) fractions with top < bottom, got {region}")
    K = np.asarray(K, dtype=np.float64)
    rng = np.random.default_rng(seed)
    points = _region_points(depth_m, K, region)
    if len(points) < min_points:
        return _invalid()
    if len(points) > max_points:
        points = points[rng.choice(len(points), max_points, replace=False)]

    # Hypotheses from random triples, oriented "down", with the tilt test applied up front.
    triples = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    norms = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.maximum(norms, 1e-12)
    normals *= np.where(normals[:, 1:2] < 0, -1.0, 1.0)
    dists = np.einsum("ij,ij->i", normals, triples[:, 0])
    cos_tilt = np.cos(np.deg2rad(max_tilt_deg))
    ok = (norms[:, 0] > 1e-12) & (normals[:, 1] >= cos_tilt) & (dists > 0)
    if not ok.any():
        return _invalid()
    normals, dists = normals[ok], dists[ok]
    residuals = np.abs(points @ normals.T - dists)  # (N, hypotheses)
    counts = (residuals < inlier_threshold * dists).sum(axis=0)
    best = int(np.argmax(counts))
    inliers = residuals[:, best] < inlier_threshold * dists[best]
    if inliers.sum() < 3:
        return _invalid()

    normal, distance = _fit_plane(points[inliers])
    inliers = np.abs(points @ normal - distance) < inlier_threshold * max(distance, 1e-12)
    ratio = float(inliers.mean())
    valid = bool(ratio >= min_inlier_ratio and normal[1] >= cos_tilt and distance > 0)
    scale = camera_height_m / distance if valid else float("nan")
    return ScaleEstimate(float(scale), ratio, normal, float(distance), valid)


class ScaleFilter:
    """Robust running estimate of the scale from noisy per-frame values.

    No scale is given until there is evidence: at least ``min_samples`` of the kept estimates
    must agree within ``tolerance`` (relative) with their median. Before that ``value`` is None
    and consumers keep treating the scale as unknown (large covariances).

    Args:
        window: number of recent valid estimates kept.
        method: "median" (median of the last ``window`` values in log space, robust to
            outliers) or "ema" (exponential moving average in log space).
        alpha: EMA weight of a new value.
        min_samples: consistent estimates needed before a scale is given.
        tolerance: relative distance to the median within which estimates count as consistent.
    """

    def __init__(
        self,
        window: int = 15,
        method: str = "median",
        alpha: float = 0.1,
        min_samples: int = 2,
        tolerance: float = 0.15,
    ) -> None:
        if method not in ("median", "ema"):
            raise InputError(f"ScaleFilter method must be 'median' or 'ema', got {method!r}")
        if window < 1 or not 0.0 < alpha <= 1.0:
            raise InputError(f"need window >= 1 and 0 < alpha <= 1, got {window}, {alpha}")
        if not 1 <= min_samples <= window or not tolerance > 0:
            raise InputError(
                f"need 1 <= min_samples <= window and tolerance > 0, got {min_samples}, "
                f"{window}, {tolerance}"
            )
        self.method, self.alpha = method, alpha
        self.min_samples, self.log_tolerance = min_samples, float(np.log1p(tolerance))
        self._logs: deque[float] = deque(maxlen=window)
        self._ema: float | None = None
        self._established = False

    @property
    def consistent_samples(self) -> int:
        """Kept estimates within the tolerance of their median."""
        if not self._logs:
            return 0
        logs = np.asarray(self._logs)
        return int(np.sum(np.abs(logs - np.median(logs)) <= self.log_tolerance))

    @property
    def value(self) -> float | None:
        """Current scale, or None until ``min_samples`` consistent estimates were seen."""
        if not self._established:
            return None
        if self.method == "ema":
            return float(np.exp(self._ema))
        return float(np.exp(np.median(self._logs)))

    def update(self, scale: float | None) -> float | None:
        """Add an estimate (None, NaN or <= 0 are ignored) and return the filtered scale."""
        if scale is not None and np.isfinite(scale) and scale > 0:
            log_s = float(np.log(scale))
            self._logs.append(log_s)
            self._ema = log_s if self._ema is None else self._ema + self.alpha * (log_s - self._ema)
            self._established = self._established or self.consistent_samples >= self.min_samples
        return self.value

    def reset(self) -> None:
        self._logs.clear()
        self._ema = None
        self._established = False


class OdometryScale:
    """Scale from an external metric odometry: travelled distance ratio over recent frames.

    Feed the external positions with `add_reference` (any rate, any fixed frame) and the
    unscaled visual translation of each frame with `add_visual`, which returns the ratio
    ``external distance / visual distance`` over the last ``window`` frames (None until the
    external odometry covers that time span and at least ``min_distance_m`` was travelled).
    Not thread-safe: call it from one thread (the pipeline queues references to its worker).

    Args:
        window: number of visual frames in the sliding window.
        min_distance_m: minimum external distance over the window (standing still gives none).
        max_extrapolation_s: how far the external data may stop short of the window's ends.
    """

    def __init__(
        self, window: int = 20, min_distance_m: float = 0.2, max_extrapolation_s: float = 0.2
    ) -> None:
        if window < 2:
            raise InputError(f"OdometryScale window must be >= 2 frames, got {window}")
        self.min_distance_m = min_distance_m
        self.max_extrapolation_ns = int(max_extrapolation_s * 1e9)
        self._visual: deque[tuple[int, float]] = deque(maxlen=window)  # (stamp, cumulative)
        self._ref_t: deque[int] = deque(maxlen=10_000)
        self._ref_d: deque[float] = deque(maxlen=10_000)  # cumulative external path length
        self._ref_last: np.ndarray | None = None

    def add_reference(self, stamp_ns: int, position: np.ndarray) -> None:
        """External odometry position (3,) in metres at ``stamp_ns``."""
        p = np.asarray(position, dtype=np.float64).reshape(3)
        if self._ref_t and stamp_ns <= self._ref_t[-1]:
            if stamp_ns < self._ref_t[-1]:  # time went backwards: start over
                self._ref_t.clear()
                self._ref_d.clear()
                self._ref_last = None
            else:
                return
        step = 0.0 if self._ref_last is None else float(np.linalg.norm(p - self._ref_last))
        self._ref_t.append(int(stamp_ns))
        self._ref_d.append((self._ref_d[-1] if self._ref_d else 0.0) + step)
        self._ref_last = p

    def add_visual(self, stamp_ns: int, translation_norm: float) -> float | None:
        """Unscaled visual translation of the frame at ``stamp_ns``; returns the scale or None."""
        total = (self._visual[-1][1] if self._visual else 0.0) + float(translation_norm)
        self._visual.append((int(stamp_ns), total))
        if len(self._visual) < 2 or len(self._ref_t) < 2:
            return None
        (t0, v0), (t1, v1) = self._visual[0], self._visual[-1]
        ref_t = np.asarray(self._ref_t, dtype=np.float64)
        if ref_t[0] - t0 > self.max_extrapolation_ns or t1 - ref_t[-1] > self.max_extrapolation_ns:
            return None
        d0, d1 = np.interp([t0, t1], ref_t, np.asarray(self._ref_d))
        external, visual = float(d1 - d0), v1 - v0
        if external < self.min_distance_m or visual <= 1e-9:
            return None
        return external / visual

    def reset(self) -> None:
        """Forget the visual window (after a chain reset); references are kept."""
        self._visual.clear()

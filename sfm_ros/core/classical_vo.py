"""The classical baseline: monocular ORB + essential-matrix visual odometry (OpenCV).

Frame to frame (`OrbMotion` for a stream, `orb_essential_motions` for a whole clip): ORB
features spread over the view (`spread_features`), matched with Lowe's ratio test, each match
refined to a fraction of a pixel by Lucas-Kanade from the earlier frame's keypoint
(`refine_matches`), `cv2.findEssentialMat` (MAGSAC++, 0.5 px) and `cv2.recoverPose`. The
rotation's variance follows from the inliers' Sampson distances (`rotation_variance`). A
monocular essential matrix has no scale, so every step has unit length; the pose metrics fit
the scale (per snippet for the 5-frame ATE, Sim(3) for the whole trajectory). Where a pair
fails (too few matches or inliers) the previous motion is repeated.
Where a rotation alone explains a pair better (a robot turning on the spot), `OrbMotion` can
give that rotation instead (`detect_turns`, `pure_rotation`). Given the rotation from elsewhere
(a gyroscope), the translation is also fitted with it
(`translation_given_rotation`, two-point RANSAC): on a rendered corridor its direction erred
0.2-1.4 degrees where the essential matrix's erred 2.7-4.7.
`OrbMotion` can also fit the rotation over two frames, matched afresh, and compare it with the
chain of the two single steps (``closure``): that closure measures the rotations' own error
without any other estimate or ground truth (`last_closure_variance`); that fit is kept for
the fusion (`last_over_two`).
MAGSAC++ keeps the motion most matches share, and a textured object crossing the view (a truck,
a person) may hold most of them. Given the camera's motion roughly (`MotionPrior`: the pose
network's, with the angle its direction may err by), a fit whose translation lies beyond that
angle from it gives way to a second rigid motion, fitted to its outliers, that lies within it
and far from the first (`OrbMotion._camera_fit`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from sfm_ros.core.direction_fusion import angle
from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import skew, so3_log
from sfm_ros.core.pure_rotation import rotation_only, turns_only

MIN_POINTS = 8
ESSENTIAL_METHODS = ((cv2.USAC_MAGSAC, 0.5), (cv2.RANSAC, 1.0), (cv2.USAC_DEFAULT, 1.0))
"""Robust estimators of the essential matrix and their inlier thresholds (px), the next tried
when one raises (OpenCV 5.1's RANSAC asserts in its five-point solver on some ordinary street
pairs, the same samples on every call) or finds too few inliers. MAGSAC++ at 0.5 px on
full-size KITTI frames has a third of RANSAC's (1 px, 800 px wide) median rotation error per
frame: 0.08 against 0.24 degrees on KITTI 00, 0.04 against 0.20 on KITTI 06; on blurred indoor
frames it finds fewer inliers, where RANSAC at 1 px still gives a usable motion
(`benchmarks/RESULTS.md`)."""

CLASSICAL_MAX_WIDTH = 1280
"""Frames are downsized to at most this width for the node's classical motion: KITTI's 1241 px
stay full size, where MAGSAC++ erred a third of what RANSAC did at 800 px (about 40 % more ORB
time, in a thread beside the tracker)."""
MIN_COMMON_POINTS = 20
"""Inliers of two consecutive pairs seen in their shared frame that a length ratio needs."""
MAX_SINGULAR_RATIO = 0.15
"""`translation_given_rotation` gives no direction where the inliers' epipolar-plane normals
(unit) have a smallest singular value above this times the middle one: they do not all lie
across one direction. Where a handheld camera at 30 Hz moves a centimetre a frame (7-Scenes)
the ratio was 0.1-1 and the direction 36-51 degrees off (median), and fused, it took the
place of the keyframe-aligned translation (Sim(3) ATE 0.34 -> 0.42 m); on KITTI 00 it was
0.02-0.11, the direction 1.7 degrees off."""
DISTINCT_MOTION_DEG = 45.0
"""Angle between the translations of two essential-matrix fits, the second to the first's
outliers, beyond which they are two rigid motions in view (the camera's and something moving
across it) and not one motion fitted twice: the outliers of a static scene's fit hold its motion
again, noisier (KITTI 00: 5.6-36 degrees apart), while an object 0.3 of the view wide crossing
it gave 87-114 degrees on a rendered street and on KITTI 00 (`benchmarks/RESULTS.md`)."""
FAR_OFF_DEG = DISTINCT_MOTION_DEG / 2
"""Angle between two estimates of the camera's translation that no error of theirs explains,
whatever their variances say (half of `DISTINCT_MOTION_DEG`: two motions that far apart cannot
both lie within it of a third)."""
SUBPIXEL_MAX_SHIFT_PX = 2.0
"""`refine_matches` keeps a keypoint's own position where Lucas-Kanade moves it further."""
SUBPIXEL_ROUND_TRIP_PX = 0.5
"""... or where tracking the refined point back misses the earlier keypoint by more."""
SUBPIXEL_LK = dict(
    winSize=(11, 11),
    maxLevel=0,
    criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
)
"""`cv2.calcOpticalFlowPyrLK`'s arguments for `refine_matches`: an 11 px window on the full
image alone (the match is already within a pixel or two; no pyramid needed)."""
RELIABLE_INLIERS = 50
"""Essential-matrix inliers a classical rotation needs to be used (KITTI frames have 400-750;
64x208 synthetic frames 11-20, whose rotations were off by tens of degrees)."""


def _grey(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 from (H, W), (H, W, 1) or (H, W, 3) RGB, uint8 or float in [0, 1]."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 2:
        return image
    raise InputError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")


def downsized(
    image: np.ndarray, K: np.ndarray, max_width: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 grey of ``image`` at most ``max_width`` wide (None: as it is) and its
    (3, 3) float64 K."""
    grey, K = _grey(image), np.array(K, dtype=np.float64)
    if max_width is not None and grey.shape[1] > max_width:
        factor = max_width / grey.shape[1]
        grey = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        K[:2] *= factor
    return grey, K


def orb_matches(
    orb: cv2.ORB, matcher: cv2.BFMatcher, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Matched pixel coordinates (M, 2) in grey images a and b (ratio test 0.8)."""
    return match_features(matcher, orb.detectAndCompute(a, None), orb.detectAndCompute(b, None))


def spread_features(
    orb: cv2.ORB, grey: np.ndarray, count: int, grid: tuple[int, int] = (8, 16)
) -> tuple[list, np.ndarray | None]:
    """Up to ``count`` ORB keypoints of ``grey`` and their descriptors, spread over the view:
    the strongest corners (by Harris response) of what ``orb`` detects, at most twice an even
    share in each cell of a ``grid`` (rows, columns), then the strongest of the rest up to
    ``count`` (none lost where little of the view is textured). A corner has a positive
    response; an edge's is negative (it fixes no point along itself), and a cell of weak
    texture would otherwise fill its share with them. ORB alone keeps the strongest wherever
    they are, heaped on the most textured parts; spread, the essential matrix sees the whole
    view (on KITTI 00 the rotation's median error a frame 0.077 -> 0.049 degrees,
    `benchmarks/RESULTS.md`)."""
    keypoints = orb.detect(grey, None)
    if not keypoints:
        return [], None
    h, w = grey.shape[:2]
    rows, cols = grid
    cap = 2 * math.ceil(count / (rows * cols))
    taken = np.zeros(rows * cols, int)
    kept, left = [], []
    for kp in sorted(keypoints, key=lambda k: -k.response):
        cell = min(int(kp.pt[1] * rows / h), rows - 1) * cols + min(
            int(kp.pt[0] * cols / w), cols - 1
        )
        if taken[cell] < cap and kp.response > 0:
            taken[cell] += 1
            kept.append(kp)
            if len(kept) == count:
                break
        else:
            left.append(kp)
    kept += left[: count - len(kept)]
    return orb.compute(grey, kept)


def refine_matches(
    grey_a: np.ndarray, grey_b: np.ndarray, pa: np.ndarray, pb: np.ndarray
) -> np.ndarray:
    """``pb`` (M, 2), the matches in ``grey_b`` of the keypoints ``pa`` (M, 2) in ``grey_a``,
    moved to where Lucas-Kanade finds ``pa``'s patch (started at ``pb``); a point keeps its
    position where tracking fails, moves it more than `SUBPIXEL_MAX_SHIFT_PX` or does not lead
    back to ``pa`` within `SUBPIXEL_ROUND_TRIP_PX`.

    ORB's keypoints lie on the pixel grid of the pyramid level that found them (1.2^level px),
    and their error is not random: on KITTI 06 the length ratio of consecutive motions
    (`length_ratio`) erred -0.9 % a frame on average (0.021 rms; with the true motions too),
    so a chain of them shrank by a third over the clip; refined, -0.03 % (0.009 rms). The
    translation's direction erred 0.43 / 0.56 degrees (median / rms) against 0.34 / 0.42, and
    on KITTI 00 the rotation 0.049 / 0.075 against 0.045 / 0.070
    (`benchmarks/subpixel_matches.py`)."""
    if len(pa) == 0:
        return pb
    anchor = pa.astype(np.float32).reshape(-1, 1, 2)
    start = pb.astype(np.float32).reshape(-1, 1, 2)
    moved, found, _ = cv2.calcOpticalFlowPyrLK(grey_a, grey_b, anchor, start, **SUBPIXEL_LK)
    back, returned, _ = cv2.calcOpticalFlowPyrLK(grey_b, grey_a, moved, anchor, **SUBPIXEL_LK)
    moved, back = moved.reshape(-1, 2).astype(np.float64), back.reshape(-1, 2)
    good = (
        (found.ravel() == 1)
        & (returned.ravel() == 1)
        & (np.linalg.norm(moved - pb, axis=1) <= SUBPIXEL_MAX_SHIFT_PX)
        & (np.linalg.norm(back - pa, axis=1) <= SUBPIXEL_ROUND_TRIP_PX)
    )
    return np.where(good[:, None], moved, pb)


def sampson_residuals(
    pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Signed Sampson distances (M,) in pixels of matches ``pa`` -> ``pb`` (M, 2) under the
    motion x_b = R x_a + t (``R`` (3, 3), ``t`` (3,), camera matrix ``K`` (3, 3))."""
    algebraic, scale = _epipolar_parts(pa, pb, K, R, t)
    return algebraic / scale


def _epipolar_parts(
    pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M,) algebraic epipolar residuals x_b^T F x_a (= t . ((R f_a) x f_b) for the rays f =
    K^-1 [u, v, 1]) and (M,) their gradients' norms over the four pixel coordinates: the
    Sampson distance is their ratio."""
    K_inv = np.linalg.inv(K)
    F = K_inv.T @ skew(t) @ R @ K_inv
    ha, hb = np.c_[pa, np.ones(len(pa))], np.c_[pb, np.ones(len(pb))]
    Fa, Fb = ha @ F.T, hb @ F  # F x_a and F^T x_b, row per match
    den = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Fb[:, 0] ** 2 + Fb[:, 1] ** 2
    return (hb * Fa).sum(1), np.sqrt(np.maximum(den, 1e-300))


def rotation_variance(
    pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray
) -> float:
    """Variance per axis (rad^2) of the rotation of the motion x_b = R x_a + t fitted to inlier
    matches ``pa`` -> ``pb`` (M, 2): the rotation block of sigma^2 (J^T J)^-1 over the five
    degrees of freedom, J the Jacobian of the Sampson distances (numerical; the rotation
    perturbed on the left, the direction about two axes across it) and sigma^2 their mean
    square (NaN where that cannot be computed). Its ratio to the average is what the fusion
    uses: on KITTI the rotation's errors are 4-10x larger than this, and the direction's block
    did not follow its errors at all."""
    u = t / np.linalg.norm(t)
    b1 = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    b1 /= np.linalg.norm(b1)
    b2 = np.cross(u, b1)

    def residuals(x: np.ndarray) -> np.ndarray:
        R_x = cv2.Rodrigues(x[:3])[0] @ R
        u_x = cv2.Rodrigues(x[3] * b1 + x[4] * b2)[0] @ u
        return sampson_residuals(pa, pb, K, R_x, u_x)

    h = 1e-6
    J = np.stack([(residuals(h * e) - residuals(-h * e)) / (2 * h) for e in np.eye(5)], axis=1)
    r = residuals(np.zeros(5))
    sigma2 = float(r @ r) / max(len(r) - 5, 1)
    try:
        cov = sigma2 * np.linalg.pinv(J.T @ J)
    except np.linalg.LinAlgError:  # SVD without convergence: no claim (the caller weighs 1)
        return math.nan
    return float(np.trace(cov[:3, :3])) / 3


def relative_motion(
    pa: np.ndarray,
    pb: np.ndarray,
    K: np.ndarray,
    min_inliers: int = MIN_POINTS,
) -> tuple[np.ndarray, float] | None:
    """(4, 4) T_prev_cur with a unit translation from matches prev -> cur and its rotation's
    variance per axis (rad^2, `rotation_variance`), from the first of `ESSENTIAL_METHODS` with
    at least ``min_inliers`` inliers, or None (none has)."""
    fit = _essential(pa, pb, K, min_inliers)
    if fit is None:
        return None
    R, t, inliers = fit
    return _motion(R, t), rotation_variance(pa[inliers], pb[inliers], K, R, t)


RANSAC_FAIL_LOG = math.log(1e-3)
"""Log of the chance left that every pair drawn held an outlier, where RANSAC stops."""
SAMPSON_ITERATIONS = 3
"""Reweighted least-squares rounds of `translation_given_rotation` over its inliers (chosen
again after each): each match's constraint weighed by its Sampson scale at the last direction,
so that every match counts by its distance in pixels. With each constraint normalised alone,
the points of little parallax (far, near the focus of expansion), whose normals are noise,
counted as much as the others: given the true rotations its direction erred 1.69 / 0.54
degrees (median, KITTI 00 / 06) and 1.0-1.3 on three synthetic clips at 128x416, with the
Sampson weights 1.39 / 0.36 and 0.7-0.9 (`benchmarks/RESULTS.md`)."""
MIN_RANSAC_PAIRS = 30
"""Pairs drawn at least: the first clean pair is rarely the best one (KITTI 00's 5-frame ATE
with a simulated gyro: 0.0253 with 200 pairs, 0.0262 stopping where a clean pair is likely,
0.0258 with at least 30)."""


def translation_given_rotation(
    pa: np.ndarray,
    pb: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    threshold_px: float = 0.5,
    iterations: int = 200,
    rng: np.random.Generator | None = None,
) -> np.ndarray | None:
    """Unit t of x_b = R x_a + t for a known ``R`` (a gyroscope's) from matches ``pa`` ->
    ``pb`` (M, 2): the epipolar constraint is then linear in t (t . ((R f_a) x f_b) = 0 for
    the rays f = K^-1 [u, v, 1]), so two matches give it; RANSAC over pairs with the Sampson
    distance (``threshold_px``; at most ``iterations`` pairs, fewer once the inliers found
    make a clean pair likely, at least `MIN_RANSAC_PAIRS`), refined over the inliers by least
    squares on their Sampson distances (`SAMPSON_ITERATIONS`), the sign the one that puts more
    points in front of both cameras. With the rotation known, the direction no longer trades
    off against it (a forward-moving camera's essential matrix confuses a sideways translation
    with a yaw). None with fewer than `MIN_POINTS` inliers, or where the inliers do not pin
    the direction down (`MAX_SINGULAR_RATIO`)."""
    if len(pa) < MIN_POINTS:
        return None
    rng = rng or np.random.default_rng(0)
    K_inv = np.linalg.inv(K)
    f_a = np.c_[pa, np.ones(len(pa))] @ K_inv.T
    f_b = np.c_[pb, np.ones(len(pb))] @ K_inv.T
    normals = np.cross(f_a @ R.T, f_b)  # (M, 3): t is orthogonal to each
    lengths = np.linalg.norm(normals, axis=1)
    moved = lengths > 1e-9  # a point without parallax says nothing about t
    if moved.sum() < MIN_POINTS:
        return None
    best, best_count, needed = None, 0, iterations
    for k, (i, j) in enumerate(rng.choice(np.flatnonzero(moved), size=(iterations, 2))):
        if k >= needed:
            break
        t = np.cross(normals[i], normals[j])
        norm = np.linalg.norm(t)
        if not norm > 1e-12:
            continue
        inliers = moved & (np.abs(sampson_residuals(pa, pb, K, R, t / norm)) < threshold_px)
        if inliers.sum() > best_count:
            best, best_count = inliers, int(inliers.sum())
            clean = (best_count / moved.sum()) ** 2  # chance that a pair is all inliers
            needed = RANSAC_FAIL_LOG / math.log(1 - clean) if clean < 1 else 0
            needed = max(needed, MIN_RANSAC_PAIRS)
    if best is None or best_count < MIN_POINTS:
        return None
    try:
        _, sigma, Vt = np.linalg.svd(normals[best] / lengths[best, None])
    except np.linalg.LinAlgError:
        return None
    if sigma[2] > MAX_SINGULAR_RATIO * sigma[1]:
        return None
    t = Vt[-1]  # the direction most orthogonal to all inlier normals
    scale = _epipolar_parts(pa, pb, K, R, t)[1]
    for _ in range(SAMPSON_ITERATIONS):  # the inliers' Sampson distances, each at its scale
        Vt = np.linalg.svd(normals[best] / scale[best, None])[2]
        t = Vt[-1] if Vt[-1] @ t >= 0 else -Vt[-1]
        algebraic, scale = _epipolar_parts(pa, pb, K, R, t)
        inliers = moved & (np.abs(algebraic / scale) < threshold_px)
        if inliers.sum() < MIN_POINTS:
            break
        best = inliers
    ahead = [
        np.isfinite(triangulated_depths(pa[best], pb[best], K, R, s)[0]).sum() for s in (t, -t)
    ]
    return t if ahead[0] >= ahead[1] else -t


def _essential(
    pa: np.ndarray, pb: np.ndarray, K: np.ndarray, min_inliers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """R (3, 3), unit t (3,) of x_cur = R x_prev + t and the (M,) inlier mask of the matches,
    from the first of `ESSENTIAL_METHODS` with at least ``min_inliers`` inliers, or None."""
    if len(pa) < max(MIN_POINTS, min_inliers):
        return None
    for method, threshold in ESSENTIAL_METHODS:
        try:
            E, mask = cv2.findEssentialMat(pa, pb, K, method, 0.999, threshold)
        except cv2.error:  # RANSAC's five-point solver asserts on some degenerate samples
            continue
        if E is None or E.shape != (3, 3):
            continue
        n, R, t, mask = cv2.recoverPose(E, pa, pb, K, mask=mask)
        if n >= max(MIN_POINTS, min_inliers):
            return R, t[:, 0] / max(np.linalg.norm(t), 1e-12), mask.ravel() > 0
    return None


@dataclass(frozen=True)
class MotionPrior:
    """The camera's motion as another estimate gives it (the pose network's), by which
    `OrbMotion` tells the camera's motion from that of something moving across the view."""

    T_prev_cur: np.ndarray
    """(4, 4) the motion; its translation of any length but not zero."""
    max_angle: float
    """Angle (rad) between a fit's translation and this one's beyond which the fit may not be
    the camera's (the 99.9th percentile of their difference, `MotionFusion.classical_prior`)."""

    def agrees(self, T: np.ndarray) -> bool:
        """Whether the translation of (4, 4) ``T`` lies within ``max_angle`` of this one's, and
        within `FAR_OFF_DEG` (a wider tolerance, as variances inflated by something moving
        give, could let two distinct motions agree)."""
        limit = min(self.max_angle, math.radians(FAR_OFF_DEG))
        return angle(T[:3, 3], self.T_prev_cur[:3, 3]) <= limit


def _motion(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) T_prev_cur of x_cur = R x_prev + t (recoverPose's convention, inverted)."""
    T_prev_cur = np.eye(4)
    T_prev_cur[:3, :3] = R.T
    T_prev_cur[:3, 3] = -R.T @ t
    return T_prev_cur


def triangulated_depths(
    pa: np.ndarray, pb: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Depths (M,) of matches ``pa`` -> ``pb`` (M, 2) in the first and the second camera under
    x_b = R x_a + t, in units of the baseline |t| (NaN behind either camera)."""
    X = cv2.triangulatePoints(K @ np.eye(3, 4), K @ np.c_[R, t], pa.T, pb.T)
    X = X[:3] / X[3]
    za, zb = X[2], (R @ X + t[:, None])[2]
    ahead = (za > 0) & (zb > 0) & np.isfinite(za) & np.isfinite(zb)
    return np.where(ahead, za, np.nan), np.where(ahead, zb, np.nan)


def length_ratio(depth_before: np.ndarray, depth_after: np.ndarray) -> tuple[float, float]:
    """|t_cur| / |t_prev| of two consecutive unit-baseline motions from the depths (M,) of the
    same points in their shared frame, triangulated with the earlier pair (``depth_before``,
    in units of |t_prev|) and with the later one (``depth_after``, units of |t_cur|): the
    median ratio, and its variance in log space (the squared standard error of a median,
    from the median absolute deviation); NaN, NaN with fewer than `MIN_COMMON_POINTS`."""
    log_ratio = np.log(depth_before / depth_after)
    log_ratio = log_ratio[np.isfinite(log_ratio)]
    if len(log_ratio) < MIN_COMMON_POINTS:
        return math.nan, math.nan
    median = float(np.median(log_ratio))
    sigma = 1.4826 * float(np.median(np.abs(log_ratio - median)))
    return math.exp(median), math.pi / 2 * sigma**2 / len(log_ratio)


class OrbMotion:
    """Frame-to-frame ORB + essential-matrix motion of an image stream, one frame at a time
    (each frame's features are detected once and kept for the next).

    Args:
        features: ORB features per image, spread over the view (`spread_features`) from four
            times as many detected.
        max_width: frames wider than this are downsized first (their K with them); None = full
            size.
        min_inliers: fewer essential-matrix inliers make a pair fail (with a few dozen, on
            small or textureless frames, the rotation can be off by tens of degrees).
        detect_turns: where a rotation alone explains a pair better (`pure_rotation`), give
            it with a zero translation; off, the essential matrix's motion always (the
            textbook baseline of the benchmarks).
        subpixel: refine each match to a fraction of a pixel (`refine_matches`); off, ORB's
            keypoints as they are.
        closure: also fit the rotation from the frame before the previous one and measure
            its closure with the chain of the last two steps (`last_closure_variance`; one
            more matching and essential-matrix fit a frame: the node's step on a KITTI frame,
            one thread, 43 -> 58 ms).
    """

    def __init__(
        self,
        features: int = 2000,
        max_width: int | None = None,
        min_inliers: int = MIN_POINTS,
        detect_turns: bool = False,
        subpixel: bool = True,
        closure: bool = False,
    ) -> None:
        self.orb, self.matcher = cv2.ORB_create(4 * features), cv2.BFMatcher(cv2.NORM_HAMMING)
        self.features = features
        self.max_width, self.min_inliers = max_width, min_inliers
        self.detect_turns, self.subpixel, self.closure = detect_turns, subpixel, closure
        self.last_rotation_variance = math.nan
        """Variance per axis (rad^2) of the last motion's rotation (`rotation_variance`)."""
        self.last_translation_given_rotation: np.ndarray | None = None
        """The last motion's unit translation (``T_prev_cur``'s) fitted with the rotation
        passed to `step` (`translation_given_rotation`); None without one or where it failed."""
        self.last_turns_only = False
        """The last motion is a rotation alone (`pure_rotation.turns_only`): its translation is
        zero and says nothing about the direction."""
        self.second_motions = 0
        """Steps whose motion was the second rigid motion in view (`_camera_fit`)."""
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a gap or a new camera)."""
        # the previous frame's (keypoints, descriptors) and grey image
        self._previous: tuple[tuple[list, np.ndarray | None], np.ndarray] | None = None
        self._points: tuple[np.ndarray, np.ndarray] | None = None
        # the frame before the previous one (features, grey) and the previous step's rotation
        # (R_prev_cur; None where it failed), for the closure
        self._two_back: tuple[tuple[list, np.ndarray | None], np.ndarray] | None = None
        self._last_rotation: np.ndarray | None = None
        self._last_prior: MotionPrior | None = None  # the previous step's
        self.last_length_ratio = self.last_length_ratio_variance = math.nan
        """The last motion's length over the one before (`length_ratio`) and that ratio's
        variance in log space; NaN where either pair failed or too few points are shared."""
        self.last_closure_variance = math.nan
        """Squared angle per axis (rad^2) between the rotation fitted directly from the frame
        before the previous one and the chain of the last two steps (with ``closure``; NaN
        where any of the three fits failed, a step only turned, or on the first two frames).
        Each pair is matched afresh, so with independent errors of variance s per axis its
        mean is 3 s: on rendered clips, whose truth is exact, a third of it matched the
        rotations' error against the truth (`benchmarks/RESULTS.md`, "Classical VO's
        rotation measured by its closure over two frames")."""
        self.last_over_two: tuple[np.ndarray, float] | None = None
        """With ``closure``: the last frame's rotation R_two_cur (3, 3) fitted directly from
        the frame before the previous one, and its variance per axis (rad^2,
        `rotation_variance`); None where there is none (as for `last_closure_variance`)."""

    def step(
        self,
        image: np.ndarray,
        K: np.ndarray,
        R_prev_cur: np.ndarray | None = None,
        prior: MotionPrior | None = None,
    ) -> np.ndarray | None:
        """(4, 4) ``T_prev_cur`` with a unit translation from the previous frame to ``image``
        ((H, W) grey or (H, W, 3) RGB, uint8 or float in [0, 1]; ``K`` (3, 3) its intrinsics),
        a zero one where the camera only turned (with ``detect_turns``; `last_turns_only`),
        or None on the first frame and where the pair fails (too few matches or inliers).
        With ``R_prev_cur`` (3, 3), the rotation known otherwise (a gyroscope's), the
        translation is also fitted with it (`last_translation_given_rotation`, not where the
        camera only turned); the motion returned is the matches' own either way. With
        ``prior``, the camera's motion as another estimate gives it, the motion is the one of
        two rigid motions in view that agrees with it (`_camera_fit`)."""
        self.last_translation_given_rotation, self.last_turns_only = None, False
        self.last_closure_variance, self.last_over_two = math.nan, None
        K = np.array(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise InputError(f"K must be a finite (3, 3) matrix, got {K.shape}")
        grey, K = downsized(image, K, self.max_width)
        current = spread_features(self.orb, grey, self.features)
        previous, self._previous = self._previous, (current, grey)
        two_back, self._two_back = self._two_back, previous
        last_rotation, self._last_rotation = self._last_rotation, None
        last_prior, self._last_prior = self._last_prior, prior
        if previous is None:
            return None
        ia, ib, pa, pb = self._matches(previous, current, grey)
        points, self._points = self._points, None
        self.last_length_ratio = self.last_length_ratio_variance = math.nan
        fit, keep = self._camera_fit(pa, pb, K, prior)
        self.second_motions += not keep.all()
        ia, ib, pa, pb = ia[keep], ib[keep], pa[keep], pb[keep]
        R_turn = self._turn(pa, pb, K, fit) if self.detect_turns else None
        if R_turn is not None:  # no parallax: no direction, no points for a length ratio
            self.last_turns_only, self.last_rotation_variance = True, math.nan
            return _motion(R_turn, np.zeros(3))
        if fit is None:
            return None
        R, t, inliers = fit
        self.last_rotation_variance = rotation_variance(pa[inliers], pb[inliers], K, R, t)
        self._last_rotation = R.T
        if self.closure and two_back is not None and last_rotation is not None:
            over_two = None
            if prior is not None and last_prior is not None:
                T_two_cur = last_prior.T_prev_cur @ prior.T_prev_cur
                over_two = MotionPrior(T_two_cur, prior.max_angle)
            self.last_over_two = self._over_two(two_back, current, grey, K, over_two)
            if self.last_over_two is not None:
                closure = so3_log((last_rotation @ R.T).T @ self.last_over_two[0])
                self.last_closure_variance = float(closure @ closure) / 3
        if R_prev_cur is not None:
            R_known = np.asarray(R_prev_cur, dtype=np.float64).T  # x_cur = R x_prev + t
            t_known = translation_given_rotation(pa, pb, K, R_known)
            if t_known is not None:
                self.last_translation_given_rotation = -R_known.T @ t_known
        za, zb = triangulated_depths(pa[inliers], pb[inliers], K, R, t)
        if points is not None:  # the previous pair's points in the previous frame
            _, before, after = np.intersect1d(points[0], ia[inliers], return_indices=True)
            ratio = length_ratio(points[1][before], za[after])
            self.last_length_ratio, self.last_length_ratio_variance = ratio
        self._points = ib[inliers], zb
        return _motion(R, t)

    def _matches(
        self,
        earlier: tuple[tuple[list, np.ndarray | None], np.ndarray],
        current: tuple[list, np.ndarray | None],
        grey: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Keypoint indices (M,) in an ``earlier`` frame (features, grey) and in ``current``
        (features, ``grey``) of their matches, and the matched pixels (M, 2) in each, those
        in ``current`` refined to a fraction of a pixel with ``subpixel``."""
        features, earlier_grey = earlier
        ia, ib = matched_indices(self.matcher, features, current)
        pa, pb = _points(features[0], ia), _points(current[0], ib)
        if self.subpixel and earlier_grey.shape == grey.shape:
            pb = refine_matches(earlier_grey, grey, pa, pb)
        return ia, ib, pa, pb

    def _over_two(
        self,
        two_back: tuple[tuple[list, np.ndarray | None], np.ndarray],
        current: tuple[list, np.ndarray | None],
        grey: np.ndarray,
        K: np.ndarray,
        prior: MotionPrior | None,
    ) -> tuple[np.ndarray, float] | None:
        """The rotation R_two_cur (3, 3) fitted directly from ``two_back`` (features, grey:
        the frame before the previous one) to ``current`` (features, ``grey``) and its
        variance per axis (rad^2, `rotation_variance`); None where that fit fails.
        ``prior``: the motion from ``two_back`` to ``current`` from elsewhere (`_camera_fit`)."""
        _, _, pa, pb = self._matches(two_back, current, grey)
        fit, keep = self._camera_fit(pa, pb, K, prior)
        if fit is None:
            return None
        R, t, inliers = fit
        return R.T, rotation_variance(pa[keep][inliers], pb[keep][inliers], K, R, t)

    def _camera_fit(
        self, pa: np.ndarray, pb: np.ndarray, K: np.ndarray, prior: MotionPrior | None
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray] | None, np.ndarray]:
        """The essential matrix's (R, t, inlier mask) of the matches ``pa`` -> ``pb`` (M, 2)
        that are the camera's, and the (M,) mask of those matches.

        The first fit over all matches, unless its translation disagrees with ``prior``'s
        (`MotionPrior.agrees`) while a second fit, to its outliers, agrees and is a motion of
        its own (`DISTINCT_MOTION_DEG`): then the second, the first's inliers left out. A
        textured object crossing the view may hold most of the matches (a passing truck, a
        person), and MAGSAC++ then keeps its motion (`benchmarks/RESULTS.md`).
        """
        every = np.ones(len(pa), bool)
        fit = _essential(pa, pb, K, self.min_inliers)
        if fit is None or prior is None:
            return fit, every
        first = _motion(fit[0], fit[1])
        if prior.agrees(first):
            return fit, every
        rest = ~fit[2]
        second = _essential(pa[rest], pb[rest], K, self.min_inliers)
        if second is not None:
            other = _motion(second[0], second[1])
            distinct = angle(first[:3, 3], other[:3, 3]) > math.radians(DISTINCT_MOTION_DEG)
            if prior.agrees(other) and distinct:
                return second, rest
        return fit, every

    def _turn(
        self, pa: np.ndarray, pb: np.ndarray, K: np.ndarray, fit: tuple | None
    ) -> np.ndarray | None:
        """R (3, 3) of x_b = R x_a where the matches ``pa`` -> ``pb`` (M, 2) show a camera that
        only turns: a rotation with at least ``min_inliers`` inliers that GRIC prefers to the
        essential matrix (``fit``, else one with any number of inliers); else None."""
        turn = rotation_only(pa, pb, K)
        if turn is None or turn[1].sum() < max(MIN_POINTS, self.min_inliers):
            return None
        essential = fit or _essential(pa, pb, K, MIN_POINTS)
        if essential is not None:
            sampson = sampson_residuals(pa, pb, K, essential[0], essential[1])
            if not turns_only(sampson, pa, pb, K, turn[0]):
                return None
        return turn[0]


def match_features(
    matcher: cv2.BFMatcher, a: tuple[list, np.ndarray | None], b: tuple[list, np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Matched pixel coordinates (M, 2) of two images' (keypoints, descriptors), ratio test 0.8."""
    ia, ib = matched_indices(matcher, a, b)
    return _points(a[0], ia), _points(b[0], ib)


def matched_indices(
    matcher: cv2.BFMatcher, a: tuple[list, np.ndarray | None], b: tuple[list, np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint indices (M,) in a and in b of the matches of two images' (keypoints,
    descriptors) that pass Lowe's ratio test (0.8)."""
    (ka, da), (kb, db) = a, b
    if da is None or db is None or len(ka) < MIN_POINTS or len(kb) < MIN_POINTS:
        return np.zeros(0, int), np.zeros(0, int)
    pairs = [m for m in matcher.knnMatch(da, db, k=2) if len(m) == 2]
    good = [m for m, n in pairs if m.distance < 0.8 * n.distance]
    return np.array([m.queryIdx for m in good], int), np.array([m.trainIdx for m in good], int)


def _points(keypoints: list, indices: np.ndarray) -> np.ndarray:
    """(M, 2) float64 pixel coordinates of the keypoints at ``indices``."""
    return np.float64([keypoints[i].pt for i in indices]).reshape(-1, 2)


def orb_essential_motions(
    images: Iterable[np.ndarray], K: np.ndarray, features: int = 2000
) -> tuple[np.ndarray, int]:
    """Frame-to-frame motions of an image stream with one camera matrix, at full size.

    Args:
        images: (H, W) grey or (H, W, 3) RGB frames, uint8 or float in [0, 1]; read one at a
            time (a generator keeps memory flat on long clips).
        K: (3, 3) intrinsics of the images.
        features: ORB features per image.

    Returns:
        (N-1, 4, 4) float64 ``T_prev_cur`` motions in the camera optical frame with unit-length
        translations (the previous motion, or identity at the start, where a pair failed), and
        the number of failed pairs.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise InputError(f"K must be a finite (3, 3) matrix, got {K.shape}")
    stream = OrbMotion(features)
    motions, last, failed = [], np.eye(4), 0
    for i, image in enumerate(images):
        T = stream.step(image, K)
        if i == 0:
            continue
        if T is None:
            T, failed = last, failed + 1
        motions.append(T)
        last = T
    return np.array(motions, dtype=np.float64).reshape(-1, 4, 4), failed

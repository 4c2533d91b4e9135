"""Keyframe-based pose refinement and multi-view depth for a monocular stream.

`KeyframeTracker.track` is called once per frame with the image, the network's depth and the
network's motion ``T_prev_cur`` (what `DepthPoseEstimator.step` returns). It aligns the frame to
the current keyframe by direct photometric refinement (`refine.py`), starting from the
network's motion chained onto the previous frame's refined pose (or from constant velocity when
the network's motion is missing, non-finite or far from constant velocity), switches keyframe
when the view has moved on, and computes multi-view depth for the frame against the keyframe and
recent frames far enough apart to show parallax (`multiview.py`), with the poses of those
views refined against the frame first. Numpy in, numpy out; torch inside.

A frame whose refinement fails keeps its initial motion (never a jump, never non-finite) with a
wide covariance, and the result names the reason, for the caller to count and throttle.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from sfm_ros.core.errors import InputError
from sfm_ros.core.geometry import check_intrinsics, scale_intrinsics
from sfm_ros.core.lie import se3_adjoint, se3_inverse, so3_log
from sfm_ros.core.multiview import (
    DepthEvidence,
    MultiViewConfig,
    MultiViewDepth,
    multiview_depth,
    multiview_on_device,
)
from sfm_ros.core.refine import (
    REASONS,
    Reference,
    RefineConfig,
    RefineResult,
    cauchy_costs,
    prepare_reference,
    prepare_reference_on_device,
    refine_on_device,
    refine_with_reference,
    to_grey,
)
from sfm_ros.core.stop_view import changed_fraction

NETWORK_DEPTH_UNCERTAINTY = 0.3
"""Relative error of a depth network's depth that refinement assumes (`RefineConfig`): Abs Rel
is 0.15-0.45 on the synthetic domains, worse on real images."""
INIT_SOURCES = ("network", "constant_velocity", "identity", "geometric")
"""Where a frame's initial motion came from ("geometric": the rotation of a motion measured
beside the network, a gyroscope's or classical VO's, with the network's translation)."""
TRACK_REASONS = ("first_frame", "no_keyframe", "unrefined", *REASONS)
"""Outcomes of `KeyframeTracker.track`: the refinement's, or "first_frame" (after a reset),
"no_keyframe" (no frame so far had the texture and depth to be one), "unrefined"
(``refine_poses`` is off: the initial motion is used as it is)."""


@dataclass
class KeyframeConfig:
    """Parameters of `KeyframeTracker`."""

    refine_poses: bool = True
    """Refine each frame's motion; False = use the initial motion (network or constant
    velocity) as it is, for the multi-view depth only."""
    refine: RefineConfig = field(
        default_factory=lambda: RefineConfig(
            max_rotation_deg=1.0,
            max_translation_ratio=0.15,
            depth_uncertainty=NETWORK_DEPTH_UNCERTAINTY,
        )
    )
    """Photometric refinement. Its sanity limits bound how far a frame may move from its
    initial pose: 1 degree from the network's motion (beyond it, on KITTI 06 with today's
    packaged model, a run of frames settles 1.9-3.7 degrees off in yaw, where a narrow camera
    over a short baseline cannot tell yaw from sideways motion; `benchmarks/RESULTS.md`) and
    15 % of the median keyframe depth. Its depth is a network's: ``depth_uncertainty`` weights
    residuals accordingly."""
    max_rotation_deg_without_network: float = 5.0
    """The rotation limit when the initial motion is constant velocity or identity."""
    multiview: MultiViewConfig | None = field(
        default_factory=lambda: MultiViewConfig(
            inverse_depth_range=1.0,
            bin_spacing="log",
            patch_radius=3,
            best_view_fraction=1.0,
            fill_radius=0.04,
            jump_penalty=1.0,
        )
    )
    """Multi-view depth of every frame (the published depth); None = return the network depth
    (confidence 0), and a new keyframe keeps the network's. Wider than `MultiViewConfig`'s
    defaults: a network's depth is often more than 30 % off (Abs Rel 0.15-0.5 on held-out
    synthetic sequences), and the cost is averaged over all views. Its 16 bins did as well as
    24 there. Pixels geometry does not measure take the correction it makes around them
    (``fill_radius``, 4 % of the width): held-out synthetic Abs Rel 22 % below the network's
    instead of 17 %, and the held-out-view photometric error on real clips lower still
    (`benchmarks/RESULTS.md`). Its cost is aggregated semi-globally (``jump_penalty``; jumps
    allowed at image edges), which lets the window shrink from 9x9 to 7x7 pixels (at the
    sweep's 208 px): held-out synthetic Abs Rel 28.5 % below the network's instead of 25.1 %,
    and every real clip's held-out view explained better. Its bins span 2x nearer to 2x
    farther, evenly in log depth (``bin_spacing``): spaced evenly in inverse depth over +-60 %
    they reached 2.5x farther but only 1.6x nearer, and on a rural road the network's depth of
    the near road was 1.6-1.7x too far; 31.6 % below the network's instead of 28.9 %, and every
    real clip's held-out view explained 4-5 % better."""
    keyframe_multiview: MultiViewConfig = field(
        default_factory=lambda: MultiViewConfig(align_prior_scale=False, fusion_exponent=1.0)
    )
    """The sweep a new keyframe's depth comes from (``keyframe_depth: multiview``), which the
    tracking aligns with: the narrow default sweep around the prior as it is. Swept around the
    prior rescaled to the poses, the rotation got worse (KITTI 00, warmed-up model: RE 0.0046
    -> 0.0052); with the published sweep's settings the KITTI 00 poses got better and KITTI 06's
    5-frame ATE worse (0.0509 -> 0.0562)."""
    source_pose_refinement: bool = True
    """Sweep twice for the published depth: first coarsely (a quarter of ``sweep_pixels``)
    with the tracked poses of the source views, then with each source's pose refined against
    the frame by photometric alignment on the first sweep's fused depth (``refine``). The
    sweep is sensitive to pose errors, and the tracked poses of recent frames are chained
    through the keyframe: on five held-out synthetic sequences the fused depth's Abs Rel was
    31 % below the network's with this and 20 % without it (means of the per-sequence changes,
    with ``fill_radius``). A source whose refinement fails keeps its tracked pose."""
    max_width: int | None = 416
    """Frames wider than this are processed at a reduced size (outputs are full size)."""
    min_overlap: float = 0.7
    """Switch keyframe when fewer of its valid-depth pixels project into the frame."""
    max_baseline_ratio: float = 0.15
    """Switch keyframe when the distance to it exceeds this fraction of its median depth."""
    min_depth_spread: float = 0.02
    """A frame whose valid inverse depths span less than this fraction (90th / 10th
    percentile - 1) cannot be a keyframe: constant depth is what a collapsed depth network
    predicts, and a plane facing the camera is degenerate for pose refinement anyway."""
    max_failures: int = 2
    """Switch keyframe after this many consecutive failed refinements."""
    num_views: int = 3
    """Source views of the multi-view depth: the keyframe and the newest of the last
    ``history`` frames that are ``min_source_baseline`` apart."""
    min_source_baseline: float = 0.02
    """A source view is at least this fraction of the keyframe's median depth away from the
    frame and the other views. At 0.02 a sideways view's sweep spans about ``min_parallax_px``
    (0.02 x 0.6 x 104 px at 128x416 and 90 degrees); closer views measure no depth, and their
    flat cost curves dilute the others': with the last frames of a slow camera at 30 fps (a
    handheld phone moves 0.3 % of the depth a frame) the multi-view confidence was about 0."""
    history: int = 30
    """Recent frames kept as candidate source views."""
    keyframe_depth: Literal["network", "multiview"] = "multiview"
    """Depth a new keyframe is aligned with: its multi-view fused depth (against the previous
    keyframe and recent frames; the network's when ``multiview`` is None), or the network's."""
    max_init_rotation_deg: float = 3.0
    """The network's motion disagrees with constant velocity beyond this rotation..."""
    max_init_translation_ratio: float = 0.5
    """... or this translation difference relative to the longer of the two steps."""
    covariance_scale: tuple[float, float] = (12.0, 5.5)
    """Factors on the variances of a refined step's inverse-Hessian covariance (translation,
    rotation). The inverse Hessian assumes independent pixel errors, but the errors of a depth
    network are correlated over the image: on held-out synthetic sequences (five domains, the
    former packaged model's depth, ``depth_uncertainty`` 0.3) the unscaled covariance was
    overconfident, mean squared error per predicted variance 11.7 (translation) and 5.5
    (rotation) per axis. These factors bring both to about 1 (`benchmarks/RESULTS.md`)."""
    fallback_rotation_std_rad: float = 0.02
    """Rotation standard deviation (per axis) of a step that kept its initial motion."""
    fallback_translation_std: float = 0.3
    """Translation standard deviation (per axis) of such a step, relative to its length..."""
    fallback_translation_floor: float = 0.01
    """... plus this fraction of the keyframe's median depth."""
    stop_changed_fraction: float = 0.6
    """A stop holds (`track`'s ``stood_still``) while less than this fraction of the
    textured view has changed since the image the camera stopped at (`changed_fraction`:
    cells whose median normal flow exceeds ``stop_flow_px``). Something crossing the view
    changes the part it covers (a third to three fifths of it for an object 40 % of the
    image wide), a camera that drives a step nearly all of it (0.82-0.98 of five synthetic
    domains at 128x416; `benchmarks/view_change.py`)."""
    stop_flow_px: float = 0.4
    """Normal flow (pixels, after a 1 pixel blur) above which a cell of the view has changed
    since the stop: sensor noise of 2 or 5 grey levels changed no cell of five synthetic
    domains, 8 grey levels at most 4 % (at 0.3 px 27 %, and a 0.4-wide object then changed up
    to 94 % of the view)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_overlap < 1 or self.max_baseline_ratio <= 0:
            raise InputError("min_overlap must be in (0, 1) and max_baseline_ratio > 0")
        if len(self.covariance_scale) != 2 or min(self.covariance_scale) <= 0:
            raise InputError(f"covariance_scale must be 2 factors > 0, got {self.covariance_scale}")
        if not 0 < self.stop_changed_fraction <= 1 or self.stop_flow_px <= 0:
            raise InputError("stop_changed_fraction must be in (0, 1] and stop_flow_px > 0")
        if self.min_source_baseline < 0:
            raise InputError(f"min_source_baseline must be >= 0, got {self.min_source_baseline}")
        if self.num_views < 1 or self.max_failures < 1 or self.history < 1:
            raise InputError("num_views, history and max_failures must be >= 1")
        if self.keyframe_depth not in ("network", "multiview"):
            raise InputError(
                f"keyframe_depth must be 'network' or 'multiview', got {self.keyframe_depth!r}"
            )


@dataclass
class TrackDiagnostics:
    """How one frame was tracked."""

    reason: str
    """One of `TRACK_REASONS`; anything but "ok", "first_frame" and "unrefined" is a
    fallback. A frame held still is "ok" (`reason_counts` has the refinement's outcome)."""
    init_source: str
    """One of `INIT_SOURCES`."""
    iterations: int
    initial_cost: float
    final_cost: float
    """Mean robust photometric residual (grey levels) against the keyframe."""
    valid_pixels: int
    keyframe_switched: bool
    """This frame became the keyframe."""
    keyframe_switches: int
    """Keyframe switches since the tracker was created."""
    overlap: float
    """Fraction of the keyframe's pixels that project into this frame (1 for a new keyframe)."""
    reason_counts: dict[str, int]
    """Outcomes of every frame so far."""
    held_still: bool = False
    """The camera stood still and still does (`track`'s ``stood_still``): the frame's motion
    is the identity."""


@dataclass
class TrackResult:
    """Output of `KeyframeTracker.track` (numpy)."""

    T_prev_cur: np.ndarray | None
    """(4, 4) float64 optical-frame motion from the previous frame; None for the first frame."""
    covariance: np.ndarray | None
    """(6, 6) float64 covariance of the twist (v, w) of a right perturbation
    ``T_prev_cur @ exp(xi)`` (current camera frame, depth units and radians); None with
    ``T_prev_cur``."""
    depth_m: np.ndarray
    """(H, W) float32 multi-view fused depth (the network depth where there is none); NaN =
    no estimate."""
    confidence: np.ndarray
    """(H, W) float32 in [0, 1]: weight of the multi-view estimate in ``depth_m``."""
    prior_confidence: np.ndarray
    """(H, W) float32 in [0, 1]: how far the multi-view estimate confirms the network depth
    (`MultiViewDepth.prior_confidence`)."""
    diagnostics: TrackDiagnostics


@dataclass
class _Frame:
    grey: torch.Tensor  # (1, 1, h, w) working resolution
    T_world_cam: np.ndarray  # (4, 4) in the tracker's own world frame


@dataclass
class _Keyframe:
    frame: _Frame
    reference: Reference
    grid_points: torch.Tensor  # (1, 3, M) valid-depth points on a coarse grid, keyframe camera
    median_depth: float


def _rigid(T: np.ndarray) -> np.ndarray:
    """(4, 4) with its rotation block projected onto SO(3) (chains must not drift off it)."""
    U, _, Vt = np.linalg.svd(T[:3, :3])
    out = np.array(T, dtype=np.float64)
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out


def _is_pose(T: np.ndarray | None) -> bool:
    if T is None:
        return False
    T = np.asarray(T, dtype=np.float64)
    return (
        T.shape == (4, 4)
        and bool(np.all(np.isfinite(T)))
        and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-3)
    )


class KeyframeTracker:
    """Refines frame-to-frame motion against keyframes and computes multi-view depth.

    Args:
        config: parameters (defaults: `KeyframeConfig()`).
        device: torch device for the refinement and the plane sweep.
    """

    def __init__(self, config: KeyframeConfig | None = None, device: str = "cpu") -> None:
        self.config = config or KeyframeConfig()
        self.device = torch.device(device)
        self.keyframe_switches = 0
        self.held_still_frames = 0
        """Frames `track` held still (``stood_still``) since the tracker was created."""
        self.reason_counts: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        """Forget the keyframe and the recent frames (after a time jump or a resolution
        change); counters are kept."""
        self._keyframe: _Keyframe | None = None
        self._recent: deque[_Frame] = deque(maxlen=self.config.history)
        self._T_world_prev = np.eye(4)
        self._cov_kf_prev = np.zeros((6, 6))  # right-perturbation covariance of T_kf_prev
        self._velocity: np.ndarray | None = None
        self._failures = 0
        self._size: tuple[int, int] | None = None
        self._carried: tuple[DepthEvidence, np.ndarray] | None = None  # and its T_world_cam
        self._stop_grey: torch.Tensor | None = None  # the first frame held still, while held

    # ------------------------------------------------------------------------------ inputs
    def _prepare(
        self, image: np.ndarray, depth_m: np.ndarray, K: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grey (1, 1, h, w) in [0, 1], depth (1, 1, h, w) and K (1, 3, 3) at working size."""
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] in (1, 3):
            image = image.transpose(2, 0, 1)
        elif image.ndim == 2:
            image = image[None]
        else:
            raise InputError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
        H, W = image.shape[1:]
        depth_m = np.asarray(depth_m, dtype=np.float32)
        if depth_m.shape != (H, W):
            raise InputError(f"depth_m must be ({H}, {W}) like the image, got {depth_m.shape}")
        K = np.array(K, dtype=np.float64)  # a copy: Camera.K is read-only
        check_intrinsics(K, W, H)
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.device)
        grey = to_grey(img[None] / scale)
        if not torch.isfinite(grey).all():
            raise InputError("image has NaN or inf")
        depth = torch.from_numpy(depth_m).to(self.device)[None, None]
        K_t = torch.as_tensor(K, dtype=torch.float32, device=self.device)[None]
        max_w = self.config.max_width
        if max_w is not None and max_w < W:
            h, w = max(8, round(H * max_w / W)), max_w
            grey = F.interpolate(grey, size=(h, w), mode="bilinear", antialias=True)
            ok = torch.isfinite(depth) & (depth > 0)
            resize = dict(size=(h, w), mode="bilinear", antialias=True)
            inv = F.interpolate(torch.where(ok, 1 / depth, 0.0), **resize)
            weight = F.interpolate(ok.float(), **resize)
            depth = torch.where(weight > 0.5, weight / inv, math.nan)
            K_t = scale_intrinsics(K_t, w / W, h / H)
        return grey, depth, K_t

    # --------------------------------------------------------------------------- keyframes
    def _make_keyframe(
        self, frame: _Frame, depth: torch.Tensor, K: torch.Tensor
    ) -> _Keyframe | None:
        """A keyframe from a frame, or None if it lacks texture, valid depth or depth variation."""
        cfg = self.config.refine
        valid = depth[torch.isfinite(depth) & (depth > 0)]
        if valid.numel() < cfg.min_pixels:
            return None
        sample = valid[:: max(1, valid.numel() // 4096)]
        lo, hi = torch.quantile(sample, sample.new_tensor([0.1, 0.9]))
        if float(hi / lo) - 1 < self.config.min_depth_spread:
            return None
        reference = prepare_reference(frame.grey, depth, K, cfg)
        if int(reference.levels[0].selected.sum()) < cfg.min_pixels:
            return None
        step = max(1, frame.grey.shape[-1] // 32)
        d = depth[..., step // 2 :: step, step // 2 :: step]
        v, u = torch.meshgrid(
            torch.arange(step // 2, depth.shape[-2], step, dtype=torch.float32, device=self.device),
            torch.arange(step // 2, depth.shape[-1], step, dtype=torch.float32, device=self.device),
            indexing="ij",
        )
        ok = (torch.isfinite(d) & (d > 0)).flatten()
        if not ok.any():
            return None
        uv1 = torch.stack([u.flatten(), v.flatten(), torch.ones_like(u).flatten()])[:, ok]
        points = (torch.linalg.inv(K[0]) @ uv1) * d.flatten()[ok]
        return _Keyframe(frame, reference, points[None], float(d.flatten()[ok].median()))

    def _overlap(self, T_cur_kf: np.ndarray, K: torch.Tensor, size: tuple[int, int]) -> float:
        """Fraction of the keyframe's grid points that project into the current image."""
        kf = self._keyframe
        T = torch.as_tensor(T_cur_kf, dtype=torch.float32, device=self.device)
        X = T[:3, :3] @ kf.grid_points[0] + T[:3, 3:]
        z = X[2].clamp(min=1e-3)
        u, v = (K[0, 0] @ X) / z, (K[0, 1] @ X) / z
        h, w = size
        inside = (X[2] > 1e-3) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
        return float(inside.float().mean()) if inside.numel() else 0.0

    # ---------------------------------------------------------------------------- tracking
    def _initial_motions(self, T_net: np.ndarray | None) -> tuple[list[np.ndarray], list[str]]:
        """Candidate initial motions, the fallback first, and their `INIT_SOURCES`."""
        cfg = self.config
        cv = self._velocity
        if not _is_pose(T_net):
            if cv is None:
                return [np.eye(4)], ["identity"]
            return [cv], ["constant_velocity"]
        T_net = _rigid(np.asarray(T_net, dtype=np.float64))
        if cv is None:
            return [T_net], ["network"]
        d_rot = np.degrees(np.linalg.norm(so3_log(cv[:3, :3].T @ T_net[:3, :3])))
        longer = max(np.linalg.norm(cv[:3, 3]), np.linalg.norm(T_net[:3, 3]), 1e-9)
        d_t = np.linalg.norm(cv[:3, 3] - T_net[:3, 3]) / longer
        if d_rot > cfg.max_init_rotation_deg or d_t > cfg.max_init_translation_ratio:
            # far from constant velocity: fall back on it, but try both and keep the better
            return [cv, T_net], ["constant_velocity", "network"]
        return [T_net], ["network"]

    def _hold(
        self,
        kf: _Keyframe,
        grey: torch.Tensor,
        T_kf_prev: np.ndarray,
        best: RefineResult,
        candidates: list[np.ndarray],
        sources: list[str],
    ) -> tuple[bool, bool]:
        """Whether a camera that stood still at the last frame still does, and else whether
        it drives off with the network's motion (which explains the frame best).

        On the stop's first frame, standing still holds where its `cauchy_costs` are lower
        than the refined motion's (where it converged) and the network's (where it was a
        candidate). From then on it holds while the view has changed too little since that
        frame (`changed_fraction`): depth errors over the baseline to the keyframe let a
        motion pulled by something crossing the view explain the frame better than standing
        still."""
        cfg = self.config
        changed = math.nan
        if self._stop_grey is not None:  # a new size resets the tracker, and with it this
            changed = changed_fraction(self._stop_grey, grey, flow_px=cfg.stop_flow_px)
            if changed < cfg.stop_changed_fraction:
                return True, False
        as_tensor = functools.partial(torch.as_tensor, dtype=torch.float64, device=self.device)
        moving = {"refined": best.T_tgt_ref.double()} if best.reason[0] == "ok" else {}
        if "network" in sources:
            T_net = candidates[sources.index("network")]
            moving["network"] = as_tensor(se3_inverse(T_kf_prev @ T_net))[None]
        if not moving:
            return False, False
        still = as_tensor(se3_inverse(T_kf_prev))[None]
        poses = [still, *moving.values()]
        costs = cauchy_costs(kf.reference, grey, poses, best.gain_bias, cfg.refine)[:, 0]
        costs = dict(zip(["still", *moving], costs.tolist(), strict=True))
        if math.isnan(changed):
            held = costs["still"] == min(costs.values())
        else:  # it moved: standing still is out of the question
            held = False
            del costs["still"]
        return held, not held and costs.get("network") == min(costs.values())

    def _refined_covariance(self, result: RefineResult) -> np.ndarray:
        """(6, 6) covariance of a refined pose against the keyframe, scaled by
        ``covariance_scale``."""
        trans, rot = self.config.covariance_scale
        d = np.sqrt([trans] * 3 + [rot] * 3)
        return result.covariance[0].cpu().numpy() * np.outer(d, d)

    def _fallback_covariance(self, T_step: np.ndarray) -> np.ndarray:
        cfg = self.config
        median = self._keyframe.median_depth if self._keyframe is not None else 1.0
        sigma_t = (
            cfg.fallback_translation_std * np.linalg.norm(T_step[:3, 3])
            + cfg.fallback_translation_floor * median
        )
        return np.diag([sigma_t**2] * 3 + [cfg.fallback_rotation_std_rad**2] * 3)

    def _refine_from(
        self,
        kf: _Keyframe,
        grey: torch.Tensor,
        T_kf_prev: np.ndarray,
        T_init: np.ndarray,
        source: str,
        best: RefineResult | None,
        init_source: str,
    ) -> tuple[RefineResult | None, str]:
        """Refine from ``T_init`` (prev -> cur); the result replaces ``best`` if it converged
        to a lower cost (or ``best`` is None), and then ``init_source`` becomes ``source``."""
        cfg = self.config.refine
        if source not in ("network", "geometric"):
            cfg = replace(cfg, max_rotation_deg=self.config.max_rotation_deg_without_network)
        T_cur_kf = se3_inverse(T_kf_prev @ T_init)
        result = refine_with_reference(
            kf.reference,
            grey,
            torch.as_tensor(T_cur_kf, dtype=torch.float64, device=self.device)[None],
            cfg,
        )
        ok = bool(result.ok[0])
        better = best is None or (
            ok and (not bool(best.ok[0]) or float(result.final_cost[0]) < float(best.final_cost[0]))
        )
        if not better:
            return best, init_source
        return result, source if ok else init_source

    def _geometric_candidate(
        self,
        candidates: list[np.ndarray],
        sources: list[str],
        geometric_motion: Callable[[], np.ndarray | None] | None,
    ) -> np.ndarray | None:
        """The geometric motion's rotation with the network's translation, where the network's
        motion was a candidate and the geometric rotation is another; else None."""
        if geometric_motion is None or "network" not in sources:
            return None
        T_geo = geometric_motion()
        if not _is_pose(T_geo):
            return None
        T_net = candidates[sources.index("network")]
        R_geo = np.asarray(T_geo, dtype=np.float64)[:3, :3]
        if np.array_equal(R_geo, T_net[:3, :3]):
            return None
        T = T_net.copy()
        T[:3, :3] = R_geo
        return _rigid(T)

    @torch.no_grad()
    def track(
        self,
        image: np.ndarray,
        depth_m: np.ndarray,
        K: np.ndarray,
        T_prev_cur: np.ndarray | None = None,
        fuse_depth: bool = True,
        geometric_motion: Callable[[], np.ndarray | None] | None = None,
        stood_still: bool = False,
    ) -> TrackResult:
        """Process the next frame.

        Args:
            image: (H, W, 3) RGB or (H, W) grey; uint8, or float in [0, 1].
            depth_m: (H, W) network depth; NaN or <= 0 invalid.
            K: (3, 3) intrinsics of the image.
            T_prev_cur: (4, 4) network motion from the previous frame, or None.
            fuse_depth: compute this frame's multi-view depth and confidence. False: only when
                the frame becomes a keyframe (whose alignment depth it is); the result then
                carries the network depth with confidence 0, and the poses are the same.
            geometric_motion: returns a (4, 4) motion measured beside the network (a
                gyroscope's rotation or classical VO's motion; None where there is none),
                called at most once, after the refinement from the network's motion (so that
                it may finish in a thread meanwhile). Where that refinement did not converge
                (or converged less well than from constant velocity), the refinement also
                starts from this rotation (with the network's translation) and the better fit
                is kept (`init_source` "geometric"): a turn beyond what the network learnt (a
                robot turning on the spot) is then still refined, and so is one whose
                refinement from the network's rotation diverged within reach of the right one
                (KITTI 00's sharpest turn: the network's 0.9 degrees off, classical VO's 0.06,
                `benchmarks/RESULTS.md`).
            stood_still: the camera stood still at the last frame (the caller's judgement).
                On the stop's first frame, standing still is compared with the refined
                motion (unless the refinement failed) and the network's by `cauchy_costs`;
                if it explains the frame better, the motion is the identity
                (`TrackDiagnostics.held_still`). An object moving across the view pulls the
                Huber-weighted refinement and the pose network, not that comparison. From
                then on the stop holds while less than ``stop_changed_fraction`` of the view
                has changed since that frame (`changed_fraction`, no depth involved). Once the
                camera moves, the refined or the network's motion explains the frame better;
                where the network's does, the refinement settled short of it (started from
                standing still), and the motion is the network's (reason "no_improvement").

        Returns:
            `TrackResult`; a resolution change resets the tracker (first-frame result).
        """
        grey, depth, K_t = self._prepare(image, depth_m, K)
        depth_m = np.asarray(depth_m, dtype=np.float32)
        if self._size is not None and self._size != depth_m.shape:
            self.reset()
        first, self._size = self._size is None, depth_m.shape
        kf = self._keyframe
        if first:
            frame = _Frame(grey, np.eye(4))
            self._keyframe = self._make_keyframe(frame, depth, K_t)
            self.reason_counts["first_frame"] += 1
            self._T_world_prev = frame.T_world_cam
            return TrackResult(
                None,
                None,
                depth_m,
                np.zeros_like(depth_m),
                np.zeros_like(depth_m),
                self._diagnostics("first_frame", "identity", None, self._keyframe is not None, 1.0),
            )

        candidates, sources = self._initial_motions(T_prev_cur)
        init_source = sources[0]
        best, T_step = None, candidates[0]
        if kf is not None and self.config.refine_poses:
            T_kf_prev = se3_inverse(kf.frame.T_world_cam) @ self._T_world_prev
            network_won = False
            for T_init, source in zip(candidates, sources, strict=True):
                best, init_source = self._refine_from(
                    kf, grey, T_kf_prev, T_init, source, best, init_source
                )
                network_won |= init_source == source == "network" and bool(best.ok[0])
            T_geo = None
            if not network_won:
                T_geo = self._geometric_candidate(candidates, sources, geometric_motion)
            if T_geo is not None:
                best, init_source = self._refine_from(
                    kf, grey, T_kf_prev, T_geo, "geometric", best, init_source
                )
        if best is not None:
            reason = best.reason[0]
        else:
            reason = "no_keyframe" if kf is None else "unrefined"
        held_still = False
        if stood_still and reason in ("ok", "diverged", "no_improvement"):
            held_still, drives_off = self._hold(kf, grey, T_kf_prev, best, candidates, sources)
            if drives_off:
                # the refinement, started from standing still (constant velocity) or pulled
                # by a keyframe with something that has moved on since, settled short of the
                # network's motion, which explains the frame best
                reason, init_source = "no_improvement", "network"
                T_step = candidates[sources.index("network")]
        if not held_still:
            self._stop_grey = None
        elif self._stop_grey is None:
            self._stop_grey = grey
        self.reason_counts[reason] += 1

        if held_still:
            self.held_still_frames += 1
            T_step = np.eye(4)
            if reason == "ok":
                cov_kf_cur = self._refined_covariance(best)
            else:
                cov_kf_cur = self._fallback_covariance(T_step)
            covariance = cov_kf_cur + self._cov_kf_prev
            self._failures, reason = 0, "ok"
        elif reason == "ok":
            T_kf_cur = se3_inverse(_rigid(best.T_tgt_ref[0].cpu().numpy()))
            T_step = _rigid(se3_inverse(T_kf_prev) @ T_kf_cur)
            A = se3_adjoint(se3_inverse(T_step))
            cov_kf_cur = self._refined_covariance(best)
            covariance = cov_kf_cur + A @ self._cov_kf_prev @ A.T
            self._failures = 0
        else:
            covariance = self._fallback_covariance(T_step)
            A = se3_adjoint(se3_inverse(T_step))
            cov_kf_cur = A @ self._cov_kf_prev @ A.T + covariance
            self._failures += reason != "unrefined"
        covariance = (covariance + covariance.T) / 2
        frame = _Frame(grey, _rigid(self._T_world_prev @ T_step))

        overlap, baseline = 0.0, math.inf
        if kf is not None:
            T_kf_cur = se3_inverse(kf.frame.T_world_cam) @ frame.T_world_cam
            overlap = self._overlap(se3_inverse(T_kf_cur), K_t, tuple(grey.shape[-2:]))
            baseline = np.linalg.norm(T_kf_cur[:3, 3]) / max(kf.median_depth, 1e-9)
        switch = (
            overlap < self.config.min_overlap
            or baseline > self.config.max_baseline_ratio
            or self._failures >= self.config.max_failures
        )
        for_keyframe = switch and self.config.keyframe_depth == "multiview"
        fused, confidence, prior_confidence, fused_t = self._multiview(
            frame, depth, K_t, depth_m, fuse_depth, for_keyframe
        )

        switched = False
        if switch:
            kf_depth = fused_t if self.config.keyframe_depth == "multiview" else depth
            new_kf = self._make_keyframe(frame, kf_depth, K_t)
            if new_kf is not None:
                if kf is not None:
                    self._recent.append(kf.frame)
                self._keyframe, switched = new_kf, True
                self.keyframe_switches += 1
                self._failures = 0
                cov_kf_cur = np.zeros((6, 6))
        if not switched and reason not in ("low_texture", "few_pixels", "no_keyframe"):
            self._recent.append(frame)
        self._T_world_prev = frame.T_world_cam
        self._cov_kf_prev = cov_kf_cur
        self._velocity = T_step
        diagnostics = self._diagnostics(reason, init_source, best, switched, overlap, held_still)
        return TrackResult(
            T_step.copy(), covariance, fused, confidence, prior_confidence, diagnostics
        )

    def _diagnostics(
        self,
        reason: str,
        init_source: str,
        result: RefineResult | None,
        switched: bool,
        overlap: float,
        held_still: bool = False,
    ) -> TrackDiagnostics:
        return TrackDiagnostics(
            reason=reason,
            init_source=init_source,
            iterations=0 if result is None else int(result.iterations[0]),
            initial_cost=math.nan if result is None else float(result.initial_cost[0]),
            final_cost=math.nan if result is None else float(result.final_cost[0]),
            valid_pixels=0 if result is None else int(result.valid_pixels[0]),
            keyframe_switched=switched,
            held_still=held_still,
            keyframe_switches=self.keyframe_switches,
            overlap=overlap,
            reason_counts=dict(self.reason_counts),
        )

    def _source_frames(self, frame: _Frame) -> list[_Frame]:
        """The keyframe and up to ``num_views - 1`` recent frames, newest first, each at least
        ``min_source_baseline`` of the keyframe's median depth from the frame, the keyframe and
        the views already chosen."""
        kf = self._keyframe
        closest = self.config.min_source_baseline * kf.median_depth
        chosen = [kf.frame]
        taken = [frame.T_world_cam[:3, 3], kf.frame.T_world_cam[:3, 3]]
        for candidate in reversed(self._recent):
            if len(chosen) == self.config.num_views:
                break
            position = candidate.T_world_cam[:3, 3]
            if min(np.linalg.norm(position - p) for p in taken) >= closest:
                chosen.append(candidate)
                taken.append(position)
        return chosen

    def _multiview(
        self,
        frame: _Frame,
        depth: torch.Tensor,
        K: torch.Tensor,
        depth_m: np.ndarray,
        fuse_depth: bool,
        for_keyframe: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
        """Fused depth, its confidence and the network depth's confidence (H, W) of a frame
        against the keyframe and recent frames (the network depth with confidences 0 without
        ``fuse_depth`` or a source view), and the depth (1, 1, h, w) a new keyframe would
        align with (``for_keyframe``)."""
        cfg = self.config.multiview
        zeros = np.zeros_like(depth_m)
        carried, self._carried = self._carried, None  # a frame not fused breaks the chain
        if cfg is None or self._keyframe is None or not (fuse_depth or for_keyframe):
            return depth_m, zeros, zeros, depth
        sources = self._source_frames(frame)
        T_src_cur = np.stack([se3_inverse(s.T_world_cam) @ frame.T_world_cam for s in sources])
        src_images = torch.stack([s.grey for s in sources], 1)
        T_tracked = torch.as_tensor(T_src_cur, dtype=torch.float32, device=self.device)[None]
        kf_depth = depth
        if for_keyframe:
            kf_cfg = self.config.keyframe_multiview
            kf_depth = multiview_depth(frame.grey, depth, K, src_images, T_tracked, kf_cfg).depth_m
        if not fuse_depth:
            return depth_m, zeros, zeros, kf_depth
        previous, T_prev_cur = None, None
        if carried is not None:
            previous, T_world_prev = carried
            T = se3_inverse(T_world_prev) @ frame.T_world_cam
            T_prev_cur = torch.as_tensor(T, dtype=torch.float32, device=self.device)[None]
        out = published_depth(
            frame.grey, depth, K, src_images, T_tracked, self.config, previous, T_prev_cur
        )
        self._carried = out.evidence, frame.T_world_cam
        depth_out, confidences = out.depth_m, (out.confidence, out.prior_confidence)
        if depth_out.shape[-2:] != depth_m.shape:
            size = depth_m.shape
            depth_out = 1 / F.interpolate(1 / depth_out, size=size, mode="bilinear")
            confidences = tuple(
                F.interpolate(c, size=size, mode="bilinear").clamp(0, 1) for c in confidences
            )
        conf, prior_conf = (c[0, 0].cpu().numpy() for c in confidences)
        return depth_out[0, 0].cpu().numpy(), conf, prior_conf, kf_depth


def published_depth(
    grey: torch.Tensor,
    depth: torch.Tensor,
    K: torch.Tensor,
    src_images: torch.Tensor,
    T_src_cur: torch.Tensor,
    config: KeyframeConfig,
    previous: DepthEvidence | None = None,
    T_prev_cur: torch.Tensor | None = None,
) -> MultiViewDepth:
    """The multi-view depth a frame publishes (``config.multiview``): with
    ``source_pose_refinement``, a coarse sweep first, on whose depth each source view's pose is
    refined against the frame (one batch; a source whose refinement fails keeps its pose), then
    the sweep with those poses, carrying ``previous`` (the last frame's ``evidence``) over.

    Args:
        grey: (1, 1, h, w) frame in [0, 1]; depth: (1, 1, h, w) its network depth.
        K: (1, 3, 3); src_images: (1, N, 1, h, w) source views in [0, 1].
        T_src_cur: (1, N, 4, 4) float32 tracked poses (frame points -> source camera).
        config: its ``multiview`` and ``refine`` (with ``refine.sync_free`` nothing is read
            back to the host: a CUDA graph can hold all of it).
        previous, T_prev_cur: the last published frame's evidence and (1, 4, 4) float32 frame
            points -> that frame's camera (tracked), or None.

    Inputs are not checked here: the tracker checked them when the frames came in.
    """
    cfg, T_src = config.multiview, T_src_cur
    if config.source_pose_refinement:
        coarse = replace(cfg, sweep_pixels=max(64, cfg.sweep_pixels // 4))
        first = multiview_on_device(grey, depth, K, src_images, T_src_cur, coarse)
        N = src_images.shape[1]
        reference = prepare_reference_on_device(grey, first.depth_m, K, config.refine)
        _, solution = refine_on_device(
            reference.expand(N), src_images[0], T_src_cur[0].double(), config.refine
        )
        T_src = solution["T_tgt_ref"].to(T_src_cur.dtype)[None]
    return multiview_on_device(grey, depth, K, src_images, T_src, cfg, previous, T_prev_cur)

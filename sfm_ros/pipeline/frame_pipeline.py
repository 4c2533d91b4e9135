"""Image message in, depth / point cloud / odometry messages out: the node's work without rclpy.

`DepthOdometryPipeline` is shared by the rclpy node and the offline bag tool (`sfm-ros bag`), so
both produce identical messages. It takes message objects (rclpy or rosbags, chosen by the
`MsgTypes` it is given), decodes them, runs `DepthPoseEstimator`, applies the configured scale
source, chains the motion into `odom -> base_link` and builds the output messages:

=====================  ==========================  ==========================================
output name            type                        content
=====================  ==========================  ==========================================
depth                  sensor_msgs/Image 32FC1     metres along optical z, NaN = no estimate
depth/camera_info      sensor_msgs/CameraInfo      intrinsics at the depth resolution
depth_mm               sensor_msgs/Image 16UC1     millimetres, 0 = invalid
depth/colormap         sensor_msgs/Image rgb8      Turbo on inverse depth (near red)
points                 sensor_msgs/PointCloud2     decimated cloud in the camera frame
odom                   nav_msgs/Odometry           odom -> base_link pose and twist
flow                   sensor_msgs/Image 32FC2     rigid flow to the previous frame (pixels)
explainability         sensor_msgs/Image 32FC1     explainability mask in [0, 1]
=====================  ==========================  ==========================================

Image outputs have the input image's stamp, frame_id and resolution (REP 118).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfm_ros import messages as cv
from sfm_ros.core.errors import ConfigError, InputError
from sfm_ros.core.frames import T_BODY_OPTICAL
from sfm_ros.core.geometry import check_intrinsics, scale_intrinsics
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.odometry import OdometryIntegrator, OdometryState
from sfm_ros.core.params import Params, param
from sfm_ros.core.scale import OdometryScale, ScaleFilter, ground_plane_scale
from sfm_ros.core.visualize import colormap_depth

SCALE_SOURCES = ("none", "fixed", "camera_height", "odometry")
OUTPUTS = (
    "depth",
    "depth/camera_info",
    "depth_mm",
    "depth/colormap",
    "points",
    "odom",
    "flow",
    "explainability",
)
WARN_PERIOD_S = 5.0


@dataclass
class PipelineConfig(Params):
    """Every parameter of the depth/odometry node (names are the ROS parameter names)."""

    checkpoint: str = param(
        "",
        "model: a checkpoint (.pt, PyTorch) or an `sfm-ros export` folder (onnxruntime); "
        "empty = packaged default model",
    )
    device: str = param("auto", "inference device: auto, cpu, cuda, cuda:N")
    fp16: bool = param(False, "half-precision inference (CUDA only)")
    resize_policy: str = param(
        "resize", "fit images to the network: resize (stretch) or crop (keep aspect)"
    )
    min_depth: float = param(0.1, "depth below this (m, after scaling) is published as NaN")
    max_depth: float = param(80.0, "depth above this (m, after scaling) is published as NaN")
    scale_source: str = param(
        "none", "metric scale: none (network units), fixed, camera_height or odometry"
    )
    scale_factor: float = param(
        1.0, "scale for scale_source fixed; initial guess for camera_height and odometry"
    )
    camera_height_m: float = param(
        1.5, "camera height above the ground (m), for scale_source camera_height"
    )
    ground_region: float = param(
        0.6, "ground is searched below this fraction of the image height (camera_height)"
    )
    odom_frame: str = param("odom", "frame_id of the odometry and TF parent")
    base_frame: str = param("base_link", "child_frame_id of the odometry and TF")
    camera_frame: str = param("", "frame of the outputs; empty = the image header's frame_id")
    publish_tf: bool = param(False, "broadcast odom -> base_link (only if nothing else does)")
    publish_depth_mm: bool = param(False, "also publish 16UC1 millimetre depth")
    publish_colormap: bool = param(True, "publish a colour depth image for viewing")
    publish_points: bool = param(True, "publish a PointCloud2 in the camera frame")
    point_decimation: int = param(4, "keep every n-th pixel in both directions for the cloud")
    point_color: bool = param(True, "colour the points with the image (rgb field)")
    publish_flow: bool = param(False, "publish the rigid optical flow (32FC2)")
    publish_explainability: bool = param(False, "publish the explainability mask (32FC1)")
    max_time_gap_s: float = param(
        0.5, "a larger gap between frames resets the pose history and the chain"
    )
    fallback_intrinsics: list = param(
        [], "fx, fy, cx, cy (pixels) used when no CameraInfo arrived; empty = none"
    )
    use_compressed: bool = param(
        False, "subscribe to <image>/compressed (sensor_msgs/CompressedImage)"
    )

    def validate(self) -> None:
        """Raise ConfigError naming the first inconsistent parameter."""
        if self.scale_source not in SCALE_SOURCES:
            raise ConfigError(
                f"scale_source must be one of {SCALE_SOURCES}, got {self.scale_source!r}"
            )
        if self.resize_policy not in ("resize", "crop"):
            raise ConfigError(f"resize_policy must be resize or crop, got {self.resize_policy!r}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(
                f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if not self.scale_factor > 0 or not self.camera_height_m > 0:
            raise ConfigError("scale_factor and camera_height_m must be > 0")
        if not 0.0 <= self.ground_region < 1.0:
            raise ConfigError(f"ground_region must be in [0, 1), got {self.ground_region}")
        if self.point_decimation < 1:
            raise ConfigError(f"point_decimation must be >= 1, got {self.point_decimation}")
        if not self.max_time_gap_s > 0:
            raise ConfigError(f"max_time_gap_s must be > 0, got {self.max_time_gap_s}")
        if len(self.fallback_intrinsics) not in (0, 4):
            raise ConfigError(
                "fallback_intrinsics must be [] or [fx, fy, cx, cy], "
                f"got {self.fallback_intrinsics}"
            )


@dataclass
class PipelineStats:
    """Counters since the pipeline started."""

    frames_in: int = 0
    frames_processed: int = 0
    frames_skipped: int = 0
    resets: int = 0
    last_latency_s: float = 0.0
    skipped_by_reason: Counter = field(default_factory=Counter)


@dataclass
class PipelineResult:
    """Everything one image produced."""

    messages: dict[str, Any]
    """Output name (see OUTPUTS) -> message; only the requested and enabled ones."""
    transforms: list[Any]
    """``TransformStamped`` odom -> base_link when ``publish_tf``, else empty."""
    timings: dict[str, float]
    """Seconds per stage: convert, inference, outputs."""
    scale: float
    scale_source: str
    stamp_ns: int = 0
    metric: bool = False
    """Whether a scale is known (translation and depth in metres)."""
    depth_m: np.ndarray | None = None
    """(H, W) float32 scaled depth as published (NaN invalid)."""
    image: np.ndarray | None = None
    """(H, W, 3) uint8 RGB input image."""
    odometry: OdometryState | None = None


class _Throttled:
    """Warnings that repeat at most once per ``period_s`` per key, with a suppressed count."""

    def __init__(self, logger: logging.Logger, period_s: float = WARN_PERIOD_S) -> None:
        self.logger, self.period_s = logger, period_s
        self._state: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, msg: str) -> None:
        now = time.monotonic()
        last, suppressed = self._state.get(key, (None, 0))
        if last is not None and now - last < self.period_s:
            self._state[key] = (last, suppressed + 1)
            return
        extra = f" ({suppressed} similar warnings suppressed)" if suppressed else ""
        self.logger.warning(msg + extra)
        self._state[key] = (now, 0)


class DepthOdometryPipeline:
    """Depth, point cloud and visual odometry from a monocular image stream.

    Args:
        cfg: parameters.
        types: message classes to build outputs with (``rclpy_types()`` or
            ``rosbags_types(typestore)``).
        estimator: networks to run; default: loaded from ``cfg.checkpoint``.
        logger: where warnings go (the node passes an adapter to its rclpy logger).
    """

    def __init__(
        self,
        cfg: PipelineConfig,
        types: cv.MsgTypes,
        estimator: DepthPoseEstimator | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        cfg.validate()
        self.cfg, self.types = cfg, types
        self.log = logger or logging.getLogger(__name__)
        self._throttle = _Throttled(self.log)
        if estimator is None:
            # Depth limits are applied here after scaling, so the estimator keeps everything.
            estimator = DepthPoseEstimator.load(
                cfg.checkpoint, device=cfg.device, fp16=cfg.fp16,
                resize_policy=cfg.resize_policy, min_depth=0.0, max_depth=float("inf"),
            )  # fmt: skip
        self.estimator = estimator
        self.odometry = OdometryIntegrator(T_BODY_OPTICAL, metric=cfg.scale_source == "fixed")
        self._extrinsics_given = self._assumption_logged = False
        self.scale_filter = ScaleFilter()
        self.odometry_scale = OdometryScale()
        self.stats = PipelineStats()
        self._camera_info: dict[str, tuple[np.ndarray, int, int]] = {}
        self._last: tuple[str, tuple[int, int], int] | None = None  # frame_id, (H, W), stamp
        self._stamps: deque[int] = deque(maxlen=30)
        self._latencies: deque[float] = deque(maxlen=30)
        self._ray_cache: tuple[tuple, np.ndarray] | None = None
        self.scale, self.metric = self._initial_scale()

    def _initial_scale(self) -> tuple[float, bool]:
        if self.cfg.scale_source == "none":
            return 1.0, False
        return self.cfg.scale_factor, self.cfg.scale_source == "fixed"

    # ------------------------------------------------------------------ side inputs
    def on_camera_info(self, msg: Any) -> None:
        """Keep the latest valid intrinsics per frame_id; invalid ones are not stored."""
        frame = msg.header.frame_id
        try:
            self._camera_info[frame] = cv.camera_info_to_K(msg)
        except InputError as exc:
            self._throttle.warn(f"camera_info:{frame}", f"ignoring CameraInfo: {exc}")

    def on_odometry(self, msg: Any) -> None:
        """External metric odometry (nav_msgs/Odometry) for ``scale_source: odometry``."""
        if self.cfg.scale_source != "odometry":
            return
        p = msg.pose.pose.position
        self.odometry_scale.add_reference(cv.stamp_to_ns(msg.header.stamp), [p.x, p.y, p.z])

    def set_camera_extrinsics(self, T_base_cam: np.ndarray | None) -> None:
        """``base_link <- camera optical`` (4, 4) from TF; None = the standard optical rotation."""
        if T_base_cam is None:
            self._assume_extrinsics()
        else:
            self.odometry.set_extrinsics(T_base_cam)
            self._extrinsics_given = True

    def _assume_extrinsics(self) -> None:
        if not self._assumption_logged:
            self.log.info(
                "no %s <- camera transform known: assuming the camera at the base origin, "
                "rotated by the standard optical rotation (z forward -> x forward)",
                self.cfg.base_frame,
            )
            self._assumption_logged = True
        self.odometry.set_extrinsics(T_BODY_OPTICAL)
        self._extrinsics_given = True

    def load_model(self, path: str | Path) -> int:
        """Swap in the weights of another checkpoint (same architecture); returns the version."""
        version = self.estimator.load_weights(path)
        self.log.info("loaded model %s (version %d)", path, version)
        return version

    def reset(self, reason: str) -> None:
        """Forget the pose history (estimator frames, odometry motion); odom stays continuous."""
        self.estimator.reset()
        self.odometry.reset()
        self.odometry_scale.reset()
        self._last = None
        self.stats.resets += 1
        self.log.warning("%s: pose history reset (odometry continues from its last pose)", reason)

    # ------------------------------------------------------------------ processing
    def _skip(self, reason: str, key: str, msg: str) -> None:
        self.stats.frames_skipped += 1
        self.stats.skipped_by_reason[reason] += 1
        self._throttle.warn(key, f"skipping image: {msg}")

    def _intrinsics(self, frame_id: str, width: int, height: int) -> np.ndarray | None:
        """K (3, 3) for an image, from its CameraInfo or the fallback; None (warned) if none."""
        info = self._camera_info.get(frame_id)
        if info is None and len(self._camera_info) == 1:
            other, info = next(iter(self._camera_info.items()))
            self._throttle.warn(
                "frame_mismatch",
                f"CameraInfo frame_id '{other}' differs from image frame_id '{frame_id}'; using it",
            )
        if info is not None:
            K, w, h = info
            if (w, h) != (width, height):
                self._throttle.warn(
                    f"info_size:{frame_id}",
                    f"CameraInfo is for {w}x{h} but the image is {width}x{height}; scaling K",
                )
                K = scale_intrinsics(K, width / w, height / h)
            return K
        if self.cfg.fallback_intrinsics:
            fx, fy, cx, cy = self.cfg.fallback_intrinsics
            return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        self._skip(
            "no_camera_info",
            "no_camera_info",
            f"no CameraInfo for frame_id '{frame_id}' and no fallback_intrinsics",
        )
        return None

    def _check_continuity(self, frame_id: str, shape: tuple[int, int], stamp_ns: int) -> None:
        if self._last is None:
            return
        last_frame, last_shape, last_stamp = self._last
        reason = None
        if frame_id != last_frame:
            reason = f"frame_id changed from '{last_frame}' to '{frame_id}'"
        elif shape != last_shape:
            reason = (
                f"image size changed from {last_shape[1]}x{last_shape[0]} to {shape[1]}x{shape[0]}"
            )
        elif stamp_ns <= last_stamp:
            reason = f"time went backwards ({(stamp_ns - last_stamp) * 1e-9:+.3f} s)"
        elif stamp_ns - last_stamp > self.cfg.max_time_gap_s * 1e9:
            reason = f"gap of {(stamp_ns - last_stamp) * 1e-9:.3f} s between frames"
        if reason:
            self.reset(reason)

    def _update_scale(
        self, depth_raw: np.ndarray, K: np.ndarray, T_raw: np.ndarray | None, stamp_ns: int
    ) -> None:
        src = self.cfg.scale_source
        if src == "camera_height":
            est = ground_plane_scale(
                depth_raw, K, self.cfg.camera_height_m, region=(self.cfg.ground_region, 1.0)
            )
            value = self.scale_filter.update(est.scale if est.valid else None)
        elif src == "odometry" and T_raw is not None:
            ratio = self.odometry_scale.add_visual(stamp_ns, float(np.linalg.norm(T_raw[:3, 3])))
            value = self.scale_filter.update(ratio)
        else:
            return
        if value is not None:
            if not self.metric:
                self.log.info("scale source %s: first scale estimate %.4f", src, value)
            self.scale, self.metric = value, True

    def enabled_outputs(self) -> set[str]:
        """Output names the configuration turns on."""
        cfg = self.cfg
        flags = {
            "depth_mm": cfg.publish_depth_mm,
            "depth/colormap": cfg.publish_colormap,
            "points": cfg.publish_points,
            "flow": cfg.publish_flow,
            "explainability": cfg.publish_explainability,
        }
        return {name for name in OUTPUTS if flags.get(name, True)}

    def process(self, image_msg: Any, outputs: set[str] | None = None) -> PipelineResult | None:
        """Run one ``sensor_msgs/Image`` or ``CompressedImage``; None when it is skipped.

        Args:
            outputs: output names wanted (e.g. those with subscribers); None = all enabled.
        """
        t0 = time.perf_counter()
        self.stats.frames_in += 1
        wanted = self.enabled_outputs()
        if outputs is not None:
            if unknown := set(outputs) - set(OUTPUTS):
                raise InputError(f"unknown outputs {sorted(unknown)}; known: {OUTPUTS}")
            wanted &= set(outputs)
        if not self._extrinsics_given:
            self._assume_extrinsics()

        stamp_ns = cv.stamp_to_ns(image_msg.header.stamp)
        in_frame = image_msg.header.frame_id
        self._stamps.append(stamp_ns)
        try:
            if hasattr(image_msg, "format"):
                image = cv.compressed_to_rgb8(image_msg)
            else:
                image = cv.image_to_rgb8(image_msg)
        except InputError as exc:
            self._skip("decode", "decode:" + str(exc).split(":")[0], str(exc))
            return None
        H, W = image.shape[:2]
        K = self._intrinsics(in_frame, W, H)
        if K is None:
            return None
        try:
            check_intrinsics(K, W, H)
        except InputError as exc:
            self._skip("intrinsics", "intrinsics", f"invalid intrinsics for {W}x{H}: {exc}")
            return None
        self._check_continuity(in_frame, (H, W), stamp_ns)
        t1 = time.perf_counter()

        try:
            out = self.estimator.step(image, K, stamp_ns, with_flow="flow" in wanted)
        except InputError as exc:
            self._skip("inference", "inference", str(exc))
            return None
        self._last = (in_frame, (H, W), stamp_ns)
        self._update_scale(out.depth_m, K, out.T_prev_cur, stamp_ns)
        scale = self.scale
        depth = out.depth_m * np.float32(scale)
        near, far = (scale * b for b in out.depth_bounds_m)
        if near < self.cfg.min_depth or far > self.cfg.max_depth:  # skip two passes when in range
            with np.errstate(invalid="ignore"):
                out_of_range = ~((depth >= self.cfg.min_depth) & (depth <= self.cfg.max_depth))
            depth[out_of_range] = np.nan
        T = None
        if out.T_prev_cur is not None:
            T = out.T_prev_cur.copy()
            T[:3, 3] *= scale
        t2 = time.perf_counter()

        self.odometry.metric = self.metric
        state = self.odometry.update(T, stamp_ns)
        frame = self.cfg.camera_frame or in_frame
        messages = self._messages(wanted, image, depth, K, out, state, stamp_ns, frame)
        transforms = []
        if self.cfg.publish_tf:
            hdr = cv.header(self.types, stamp_ns, self.cfg.odom_frame)
            transforms.append(
                cv.transform_stamped(self.types, hdr, self.cfg.base_frame, state.T_odom_base)
            )
        t3 = time.perf_counter()

        self.stats.frames_processed += 1
        self.stats.last_latency_s = t3 - t0
        self._latencies.append(t3 - t0)
        return PipelineResult(
            messages=messages,
            transforms=transforms,
            timings={"convert": t1 - t0, "inference": t2 - t1, "outputs": t3 - t2},
            scale=float(scale),
            scale_source=self.cfg.scale_source,
            stamp_ns=stamp_ns,
            metric=self.metric,
            depth_m=depth,
            image=image,
            odometry=state,
        )

    def _messages(
        self,
        wanted: set[str],
        image: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray,
        out: Any,
        state: OdometryState,
        stamp_ns: int,
        frame: str,
    ) -> dict[str, Any]:
        types, cfg = self.types, self.cfg
        H, W = depth.shape
        hdr = cv.header(types, stamp_ns, frame)
        msgs: dict[str, Any] = {}
        if "depth" in wanted:
            msgs["depth"] = cv.depth_to_image(types, depth, hdr)
        if "depth/camera_info" in wanted:
            msgs["depth/camera_info"] = cv.camera_info_msg(types, K, W, H, hdr)
        if "depth_mm" in wanted:
            msgs["depth_mm"] = cv.depth_to_mm_image(types, depth, hdr)
        if "depth/colormap" in wanted:
            colors = colormap_depth(depth, cfg.min_depth, cfg.max_depth)
            msgs["depth/colormap"] = cv.numpy_to_image(types, colors, "rgb8", hdr)
        if "points" in wanted:
            xyz, rgb = self._points(depth, K, image)
            msgs["points"] = cv.pointcloud2_msg(types, hdr, xyz, rgb)
        if "odom" in wanted:
            msgs["odom"] = cv.odometry_msg(
                types,
                cv.header(types, stamp_ns, cfg.odom_frame),
                cfg.base_frame,
                state.T_odom_base,
                state.twist_linear,
                state.twist_angular,
                state.pose_cov,
                state.twist_cov,
            )
        if "flow" in wanted and out.flow is not None:
            msgs["flow"] = cv.numpy_to_image(types, out.flow.astype(np.float32), "32FC2", hdr)
        if "explainability" in wanted and out.explainability is not None:
            mask = out.explainability.astype(np.float32)
            msgs["explainability"] = cv.numpy_to_image(types, mask, "32FC1", hdr)
        return msgs

    def _points(
        self, depth: np.ndarray, K: np.ndarray, image: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Decimated valid pixels -> (N, 3) camera-frame points and (N, 3) uint8 colours."""
        d = self.cfg.point_decimation
        z = depth[::d, ::d]
        xyz = (self._rays(depth.shape, K) * z[..., None]).reshape(-1, 3)
        rgb = image[::d, ::d].reshape(-1, 3) if self.cfg.point_color else None
        valid = np.isfinite(z).ravel()
        if not valid.all():  # boolean gathers are the slow part: only when needed
            xyz = xyz[valid]
            rgb = None if rgb is None else rgb[valid]
        return xyz, rgb

    def _rays(self, shape: tuple[int, int], K: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 points at depth 1 m of the decimated pixel grid (cached per K)."""
        d = self.cfg.point_decimation
        key = (shape, d, K.tobytes())
        if self._ray_cache is None or self._ray_cache[0] != key:
            v, u = np.mgrid[0 : shape[0] : d, 0 : shape[1] : d]
            x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
            rays = np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)
            self._ray_cache = (key, rays)
        return self._ray_cache[1]

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> dict[str, str]:
        """Key/values for a diagnostic_msgs/DiagnosticStatus."""
        s = self.stats
        stamps = list(self._stamps)
        span = (stamps[-1] - stamps[0]) * 1e-9 if len(stamps) > 1 else 0.0
        rate = (len(stamps) - 1) / span if span > 0 else 0.0
        latency = 1e3 * float(np.mean(self._latencies)) if self._latencies else 0.0
        est = self.estimator
        arch = getattr(est, "arch", {})
        return {
            "input rate (Hz)": f"{rate:.2f}",
            "latency (ms)": f"{latency:.1f}",
            "last latency (ms)": f"{1e3 * s.last_latency_s:.1f}",
            "frames in": str(s.frames_in),
            "frames processed": str(s.frames_processed),
            "frames skipped": str(s.frames_skipped),
            "skipped by reason": ", ".join(
                f"{k}={v}" for k, v in sorted(s.skipped_by_reason.items())
            )
            or "none",
            "resets": str(s.resets),
            "scale source": self.cfg.scale_source,
            "scale": f"{self.scale:.6g}",
            "scale known": "yes" if self.metric else "no",
            "model": getattr(est, "model_path", "") or "in memory",
            "backend": getattr(est, "backend", "?"),
            "model architecture": f"{arch.get('depth_net', '?')} {arch.get('width', '?')}x"
            f"{arch.get('height', '?')}",
            "model version": str(getattr(est, "model_version", 0)),
            "device": str(getattr(est, "device", "?")),
        }

"""Image message in, depth / point cloud / odometry messages out: the node's work without rclpy.

`DepthOdometryPipeline` is shared by the rclpy node and the offline bag tool (`sfm-ros bag`), so
both produce identical messages. It takes message objects (rclpy or rosbags, chosen by the
`MsgTypes` it is given), decodes them, runs `DepthPoseEstimator`, applies the configured scale
source, chains the motion into `odom -> base_link` and builds the output messages:

=====================  ==========================  ==========================================
output name            type                        content
=====================  ==========================  ==========================================
depth                  sensor_msgs/Image 32FC1     metres along optical z, NaN = no estimate
depth/camera_info      sensor_msgs/CameraInfo      camera of the depth pixels (D 0, P = [K|0])
depth/confidence       sensor_msgs/Image 32FC1     confidence of depth from geometry, [0, 1]
depth_mm               sensor_msgs/Image 16UC1     millimetres, 0 = invalid
depth/colormap         sensor_msgs/Image rgb8      Turbo on inverse depth (near red)
points                 sensor_msgs/PointCloud2     decimated cloud in the camera frame
odom                   nav_msgs/Odometry           odom -> base_link pose and twist
flow                   sensor_msgs/Image 32FC2     rigid flow to the previous frame (pixels)
explainability         sensor_msgs/Image 32FC1     explainability mask in [0, 1]
=====================  ==========================  ==========================================

``pose_source`` picks the motion that odometry chains: the pose network's, the refined one
(direct photometric alignment against a keyframe, `core/keyframes.py`) or, by default, the
network's, refined and classical VO's estimates fused by their measured variances
(`core/motion_fusion.py`, which says how). The tracker and classical VO run here; classical VO
in a worker thread beside the tracker.
``depth_source`` picks
the published depth: multi-view depth (the default: a plane sweep over the keyframe and recent
frames fused with the network's), or the depth network's. ``depth/confidence`` says how far
multi-view geometry supports the published depth: for multi-view depth, the confidence of the
geometric estimate in it (its weight is the square root); for the network's depth, the
multi-view confidence where the geometric estimate agrees with it, falling as they differ (0
where geometry says nothing, no texture or no parallax, and where it contradicts the network).
It needs the tracker, which runs whenever refinement, multi-view depth or the confidence output
is wanted.
``velocity_smoothing_s`` then smooths the motion's translational velocity over time (a
vehicle's inertia, `core/velocity_filter.py`).

An image identical to the previous one of its camera (a repeated frame) is skipped: it shows
no motion although the camera may have moved, so the next image's motion spans both intervals.
So is an image that shows nothing (`has_content`: a covered lens, a black or saturated
frame), whose depth and motion the networks would only guess (on KITTI 00 three black frames
turned the published heading by 5 degrees); a longer gap than ``max_time_gap_s`` then resets
the chain. A node slower than its camera processes the newest image and hands those it fell
behind on to `catch_up`: the pose network sees the ones that keep its pairs as long as the
motions it learnt.

Image outputs have the input image's stamp, frame_id and resolution (REP 118). A distorted
input (CameraInfo D not zero and ``rectified`` not "true") is undistorted first, so every output
and ``depth/camera_info`` (D zero, P = [K | 0]) describe the undistorted pixels.

Threading rule: the pipeline's state belongs to one thread, the one calling `process`,
`catch_up`, `observe`, `reset`, `load_model` and `set_camera_extrinsics` (the node's worker).
`on_camera_info` and `on_odometry` may be called from any thread: they only queue the message,
and `process` applies the queue, in arrival order, before each frame. `diagnostics` only reads
counters.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sfm_ros import messages as cv
from sfm_ros.core.camera import Camera
from sfm_ros.core.classical_vo import CLASSICAL_MAX_WIDTH, RELIABLE_INLIERS, OrbMotion
from sfm_ros.core.errors import InputError
from sfm_ros.core.frames import T_BODY_OPTICAL
from sfm_ros.core.gyro_gate import GyroGate
from sfm_ros.core.inference import DepthPoseEstimator, EstimatorOutput
from sfm_ros.core.keyframes import TRACK_REASONS, KeyframeConfig, KeyframeTracker, TrackDiagnostics
from sfm_ros.core.motion_fusion import MotionFusion, MotionFusionConfig, MotionSources
from sfm_ros.core.odometry import OdometryIntegrator, OdometryState
from sfm_ros.core.scale import OdometryScale, ScaleFilter, ground_plane_scale
from sfm_ros.core.undistort import undistorter_for
from sfm_ros.core.velocity_filter import VelocitySmoother
from sfm_ros.core.visualize import colormap_depth
from sfm_ros.pipeline.config import RECTIFIED, PipelineConfig

OUTPUT_TYPES = {
    "depth": "sensor_msgs/msg/Image",
    "depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "depth/confidence": "sensor_msgs/msg/Image",
    "depth_mm": "sensor_msgs/msg/Image",
    "depth/colormap": "sensor_msgs/msg/Image",
    "points": "sensor_msgs/msg/PointCloud2",
    "odom": "nav_msgs/msg/Odometry",
    "flow": "sensor_msgs/msg/Image",
    "explainability": "sensor_msgs/msg/Image",
}
"""Output name (topic relative to the node) -> message type."""
OUTPUTS = tuple(OUTPUT_TYPES)
WARN_PERIOD_S = 5.0
FALLBACKS = tuple(r for r in TRACK_REASONS if r not in ("ok", "first_frame", "unrefined"))
"""Tracker outcomes where refinement fell back to the initial motion."""
SIDE_INPUT_QUEUE = 10_000
"""Most CameraInfo/odometry messages kept between two frames (the oldest are dropped)."""


@dataclass
class PipelineStats:
    """Counters since the pipeline started."""

    frames_in: int = 0
    frames_processed: int = 0
    frames_observed: int = 0
    """Seen by the pose network only (`DepthOdometryPipeline.observe`)."""
    frames_passed_over: int = 0
    """Left out by `DepthOdometryPipeline.catch_up`: a longer pair measures the motion."""
    frames_skipped: int = 0
    resets: int = 0
    last_latency_s: float = 0.0
    skipped_by_reason: Counter = field(default_factory=Counter)


@dataclass
class Geometry:
    """One frame's depth and motion from the configured sources, in network units."""

    depth_m: np.ndarray
    """(H, W) depth to publish (network or multi-view)."""
    T_prev_cur: np.ndarray | None
    """(4, 4) optical-frame motion; None without a previous frame."""
    covariance: np.ndarray | None = None
    """(6, 6) covariance of the motion (`pose_source: refined`); None = the noise model."""
    rotation_variance: float | None = None
    """The fused rotation's measured variance per axis (rad^2), in place of the noise
    model's (`pose_source: fused`)."""
    confidence: np.ndarray | None = None
    """(H, W) confidence of ``depth_m`` from multi-view geometry in [0, 1]; None when not
    computed."""


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
    confidence: np.ndarray | None = None
    """(H, W) float32 confidence of ``depth_m`` from multi-view geometry in [0, 1] (0 where
    depth is NaN); None when the tracker did not run."""
    T_prev_cur: np.ndarray | None = None
    """(4, 4) scaled optical-frame motion chained into the odometry; None after a reset."""
    image: np.ndarray | None = None
    """(H, W, 3) uint8 RGB input image (undistorted when the input was distorted)."""
    camera: Camera | None = None
    """Pinhole camera of `image` and `depth_m` (what ``depth/camera_info`` describes)."""
    odometry: OdometryState | None = None


MIN_PAIR_BASELINE = 0.03
"""Translation over the scene's median depth below which a pair of frames is shorter than the
pose network learnt: between neighbouring frames of the synthetic domains it says 0.05-0.10,
of KITTI (10 Hz) 0.05-0.07; a handheld camera at 30 Hz moves a few thousandths a frame."""
MIN_CONTENT_GREY_LEVELS = 12
"""Spread of an image's grey levels (1st to 99th percentile of 4x4 block means, of 255) below
which it has nothing to measure: a covered lens, a black or saturated frame (sensor noise of
up to about 10 grey levels included). Camera frames of real scenes span 100 to 250."""


def has_content(image: np.ndarray) -> bool:
    """Whether an (H, W, 3) uint8 image shows anything (`MIN_CONTENT_GREY_LEVELS`)."""
    green = np.ascontiguousarray(image[..., 1])
    height, width = green.shape
    if min(height, width) >= 8:
        size = (width // 4, height // 4)
        green = cv2.resize(green, size, interpolation=cv2.INTER_AREA)
    low, high = np.percentile(green, [1, 99])
    return high - low >= MIN_CONTENT_GREY_LEVELS


def is_repeat(previous: np.ndarray | None, image: np.ndarray) -> bool:
    """True when ``image`` equals ``previous`` (the last processed image of its camera) pixel for
    pixel: a repeated frame shows no motion, whatever the camera did meanwhile. Uniform images
    (a covered lens, a saturated sensor) are no repeat: they are the same by nature."""
    return previous is not None and np.array_equal(previous, image) and image.min() != image.max()


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
        published = KeyframeConfig().multiview
        self.tracker = KeyframeTracker(
            KeyframeConfig(
                refine_poses=cfg.pose_source != "network",
                multiview=replace(published, carry_over=cfg.multiview_carry_over),
                source_pose_refinement=cfg.multiview_refine_sources,
                refine=replace(KeyframeConfig().refine, depth_uncertainty=cfg.depth_uncertainty),
            ),
            device=str(getattr(estimator, "device", "cpu")),
        )
        self.last_track: TrackDiagnostics | None = None
        self.last_sources: MotionSources | None = None
        """The last processed frame's motion estimates before fusion."""
        self.odometry = OdometryIntegrator(T_BODY_OPTICAL, metric=cfg.scale_source == "fixed")
        self.velocity_smoother = VelocitySmoother(cfg.velocity_smoothing_s)
        self.gyro_gate = GyroGate(self._throttle.warn)
        self.classical = OrbMotion(
            max_width=CLASSICAL_MAX_WIDTH,
            min_inliers=RELIABLE_INLIERS,
            detect_turns=True,
            closure=cfg.classical_closure,
        )
        self.fusion = MotionFusion(
            MotionFusionConfig(
                cfg.pose_source, cfg.fuse_classical, cfg.fuse_translation, cfg.anchor_length,
                cfg.fuse_length,
            ),
            self.classical,
            self.tracker.config.refine.max_rotation_deg,
            self._throttle.warn,
        )  # fmt: skip
        # OpenCV releases the GIL: the classical rotation runs beside the tracker
        self._classical_worker = ThreadPoolExecutor(1, thread_name_prefix="classical_vo")
        self._extrinsics_given = self._assumption_logged = False
        self.scale_filter = ScaleFilter()
        self.odometry_scale = OdometryScale()
        self.stats = PipelineStats()
        self.cameras = cv.CameraInfoCache(
            RECTIFIED[cfg.rectified], cfg.fallback_intrinsics, warn=self._throttle.warn
        )
        self._side_inputs: deque[tuple[str, Any]] = deque(maxlen=SIDE_INPUT_QUEUE)
        self._last: tuple[str, tuple[int, int], int] | None = None  # frame_id, (H, W), stamp
        self._last_processed_stamp: int | None = None  # the motion's start; None after a reset
        self._previous_image: tuple[str, np.ndarray] | None = None  # frame_id, decoded rgb8
        self._stamps: deque[int] = deque(maxlen=30)
        self._baselines: deque[float] = deque(maxlen=10)  # per camera interval (`catch_up`)
        self._latencies: deque[float] = deque(maxlen=30)
        self._ray_cache: tuple[tuple, np.ndarray] | None = None
        self.scale, self.metric = self._initial_scale()

    def _initial_scale(self) -> tuple[float, bool]:
        if self.cfg.scale_source == "none":
            return 1.0, False
        return self.cfg.scale_factor, self.cfg.scale_source == "fixed"

    # ------------------------------------------------------------------ side inputs
    def on_camera_info(self, msg: Any) -> None:
        """Queue a CameraInfo (any thread); the latest valid one per frame_id is used."""
        self._side_inputs.append(("camera_info", msg))

    def on_odometry(self, msg: Any) -> None:
        """Queue external metric odometry (nav_msgs/Odometry, any thread) for
        ``scale_source: odometry``."""
        if self.cfg.scale_source == "odometry":
            self._side_inputs.append(("odometry", msg))

    def on_imu(self, msg: Any) -> None:
        """Queue a ``sensor_msgs/Imu`` (any thread) for its angular velocity (``use_imu``)."""
        if self.cfg.use_imu:
            self._side_inputs.append(("imu", msg))

    def set_imu_extrinsics(self, T_cam_imu: np.ndarray) -> None:
        """``camera optical <- imu_frame_id`` (4, 4) from TF (only its rotation is used)."""
        self.gyro_gate.gyro.set_extrinsics(np.asarray(T_cam_imu, dtype=np.float64)[:3, :3])

    def _apply_side_inputs(self) -> None:
        """Apply the queued side inputs in arrival order (the processing thread)."""
        while self._side_inputs:
            kind, msg = self._side_inputs.popleft()
            if kind == "imu":
                self._add_imu(msg)
                continue
            if kind == "odometry":
                p = msg.pose.pose.position
                stamp_ns = cv.stamp_to_ns(msg.header.stamp)
                self.odometry_scale.add_reference(stamp_ns, [p.x, p.y, p.z])
                continue
            frame = msg.header.frame_id
            try:
                self.cameras.add(msg)
            except InputError as exc:
                self._throttle.warn(f"camera_info:{frame}", f"ignoring CameraInfo: {exc}")

    def _add_imu(self, msg: Any) -> None:
        try:
            sample = cv.angular_velocity(msg)
        except InputError as exc:
            self._throttle.warn("imu", f"ignoring Imu: {exc}")
            return
        if sample is None:
            self._throttle.warn("imu", "ignoring Imu: it has no angular velocity (covariance -1)")
            return
        self.gyro_gate.add(*sample)

    def set_camera_extrinsics(self, T_base_cam: np.ndarray | None, camera_frame: str = "") -> None:
        """``base_link <- camera optical`` (4, 4) from TF; None = the standard optical rotation.

        An optical axis within 30 degrees of the base's up axis is allowed (a camera looking up)
        but warned about: it is what a body-convention frame (x forward, as ``camera_link``) given
        as the image's frame looks like."""
        if T_base_cam is None:
            self._assume_extrinsics()
            return
        self.odometry.set_extrinsics(T_base_cam)
        self._extrinsics_given = True
        if self.odometry.T_base_cam[2, 2] > np.cos(np.radians(30.0)):
            self.log.warning(
                "%s <- %s puts the camera's optical axis (z) along %s's up axis: right for a "
                "camera looking up; if %s is a body-convention frame (x forward, REP 103) "
                "rather than the optical frame (z forward, x right, y down), set camera_frame "
                "to the optical frame",
                self.cfg.base_frame, camera_frame or "the camera", self.cfg.base_frame,
                repr(camera_frame) if camera_frame else "it",
            )  # fmt: skip

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
        self.fusion.reset_model()
        self.log.info("loaded model %s (version %d)", path, version)
        return version

    def reset(self, reason: str) -> None:
        """Forget the pose history (estimator frames, odometry motion); odom stays continuous."""
        self.estimator.reset()
        self.tracker.reset()
        self.classical.reset()
        self.fusion.restart()
        self.odometry.reset()
        self.velocity_smoother.reset()
        self.odometry_scale.reset()
        self._last = self._previous_image = self._last_processed_stamp = None
        self._baselines.clear()
        self.stats.resets += 1
        self.log.warning("%s: pose history reset (odometry continues from its last pose)", reason)

    # ------------------------------------------------------------------ processing
    def _skip(self, reason: str, key: str, msg: str) -> None:
        self.stats.frames_skipped += 1
        self.stats.skipped_by_reason[reason] += 1
        self._throttle.warn(key, f"skipping image: {msg}")

    def _pinhole(
        self, image: np.ndarray, frame_id: str
    ) -> tuple[np.ndarray, Camera, np.ndarray | None] | None:
        """The image as a pinhole image: (image, its camera, valid pixels or None = all).

        Distorted images are undistorted (or skipped when ``undistort`` is off); None (warned,
        counted) when the frame has to be skipped.
        """
        H, W = image.shape[:2]
        try:
            camera = self.cameras.camera_for(frame_id, W, H)
        except InputError as exc:
            self._skip("intrinsics", "intrinsics", f"invalid intrinsics for {W}x{H}: {exc}")
            return None
        if camera is None:
            self._skip(
                "no_camera_info",
                "no_camera_info",
                f"no CameraInfo for frame_id '{frame_id}' and no fallback_intrinsics",
            )
            return None
        if not camera.distorted:
            return image, camera, None
        if not self.cfg.undistort:
            self._skip(
                "distorted",
                "distorted",
                f"the image is distorted ({camera.distortion_model} D={list(camera.D)}) and "
                "undistort is false: set undistort true, or feed a rectified image "
                '(image_rect) with rectified "true"',
            )
            return None
        undistorter = undistorter_for(camera)  # built once per calibration
        return undistorter(image), undistorter.camera, undistorter.valid

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
        elif stamp_ns == last_stamp:
            reason = f"duplicate stamp ({stamp_ns} ns)"
        elif stamp_ns < last_stamp:
            reason = f"time went backwards ({(stamp_ns - last_stamp) * 1e-9:+.3f} s)"
        elif stamp_ns - last_stamp > self.cfg.max_time_gap_s * 1e9:
            reason = f"gap of {(stamp_ns - last_stamp) * 1e-9:.3f} s between frames"
        if reason:
            self.reset(reason)

    def _update_scale(
        self, depth_raw: np.ndarray, camera: Camera, T_raw: np.ndarray | None, stamp_ns: int
    ) -> None:
        src = self.cfg.scale_source
        if src == "camera_height":
            est = ground_plane_scale(
                depth_raw, camera.K, self.cfg.camera_height_m, region=(self.cfg.ground_region, 1.0)
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
            "depth/confidence": cfg.publish_confidence,
            "depth_mm": cfg.publish_depth_mm,
            "depth/colormap": cfg.publish_colormap,
            "points": cfg.publish_points,
            "flow": cfg.publish_flow,
            "explainability": cfg.publish_explainability,
        }
        return {name for name in OUTPUTS if flags.get(name, True)}

    def _admit(self, image_msg: Any) -> tuple[np.ndarray, Camera, np.ndarray | None, int] | None:
        """A new image's pinhole pixels, camera, valid mask (None: all valid) and stamp; None
        when it is skipped (undecodable, showing nothing, a repeat, no camera). The stream's
        continuity is checked against the last image admitted, processed or observed."""
        self._apply_side_inputs()
        stamp_ns = cv.stamp_to_ns(image_msg.header.stamp)
        in_frame = image_msg.header.frame_id
        self._stamps.append(stamp_ns)
        try:
            if hasattr(image_msg, "format"):
                decoded = cv.compressed_to_rgb8(image_msg)
            else:
                decoded = cv.image_to_rgb8(image_msg)
        except InputError as exc:
            self._skip("decode", "decode:" + str(exc).split(":")[0], str(exc))
            return None
        if not has_content(decoded):
            self._skip(
                "no_content",
                "no_content",
                f"the image shows nothing (its grey levels span under {MIN_CONTENT_GREY_LEVELS} "
                "of 255: a covered lens, a black or saturated frame); the next image's motion "
                "covers the interval",
            )
            return None
        previous = self._previous_image
        if previous is not None and previous[0] == in_frame and is_repeat(previous[1], decoded):
            self._skip(
                "repeated",
                "repeated",
                "identical to the previous image (the camera or the recording repeated a frame); "
                "the next image's motion covers both intervals",
            )
            return None
        pinhole = self._pinhole(decoded, in_frame)
        if pinhole is None:
            return None
        image, camera, valid = pinhole
        H, W = image.shape[:2]
        self._check_continuity(in_frame, (H, W), stamp_ns)
        self._last = (in_frame, (H, W), stamp_ns)
        self._previous_image = (in_frame, decoded.copy())  # the message's buffer may be reused
        return image, camera, valid, stamp_ns

    def observe(self, image_msg: Any) -> None:
        """An image that will not be processed (the node is behind its camera and keeps only
        the newest): the pose network still sees it (`DepthOdometryPipeline.process`'s next
        motion then chains motions between neighbouring frames, the baselines it learnt), and
        the stream's continuity is judged on the camera's intervals, not on how long a frame
        takes to process. Nothing is published."""
        self.stats.frames_in += 1
        admitted = self._admit(image_msg)
        if admitted is None:
            return
        image, camera, _, _ = admitted
        try:
            self.estimator.observe(image, camera)
        except InputError as exc:
            self._skip("inference", "inference", str(exc))
            return
        self.stats.frames_observed += 1

    def catch_up(self, image_msgs: list[Any]) -> None:
        """The images that arrived since the last one processed, oldest first, without the
        newest (processed next): the node fell behind its camera. The pose network sees every
        h-th of them (`observe`), counted back from the newest, h the camera intervals in which
        the camera moves `MIN_PAIR_BASELINE` of the scene's median depth, as measured on the
        frames processed (1 until then): a car at 10 Hz moves that in one interval, and the
        network then measures a chain of neighbouring pairs (across a gap it underestimated
        the motion by half); 7-Scenes' handheld camera at 30 Hz takes 2-20 (median 4), and one
        longer pair is measured better than a chain of short ones."""
        stride = self._observation_stride()
        chosen = set(range(len(image_msgs) - stride, -1, -stride))
        for k, msg in enumerate(image_msgs):
            if k in chosen:
                self.observe(msg)
            else:
                self._pass_over(msg)

    def _pass_over(self, image_msg: Any) -> None:
        """A frame left out by `catch_up`: not decoded, but the stream went on (its stamp
        counts for the gaps ``max_time_gap_s`` measures)."""
        self.stats.frames_in += 1
        self.stats.frames_passed_over += 1
        stamp_ns = cv.stamp_to_ns(image_msg.header.stamp)
        last = self._last
        if last is not None and last[0] == image_msg.header.frame_id and stamp_ns > last[2]:
            self._stamps.append(stamp_ns)
            self._last = (last[0], last[1], stamp_ns)

    def _observation_stride(self) -> int:
        """Camera intervals between the frames `catch_up` shows the pose network."""
        if not self._baselines:
            return 1
        per_interval = float(np.median(self._baselines))
        if not per_interval > 0:
            return 1
        return int(min(max(math.ceil(MIN_PAIR_BASELINE / per_interval), 1), 1000))

    def _measure_baseline(
        self, T: np.ndarray | None, depth: np.ndarray, stamp_ns: int, last_stamp: int | None
    ) -> None:
        """This frame's translation over the median depth (network units both) per camera
        interval, for `catch_up`."""
        stamps = np.diff(np.asarray(self._stamps, dtype=np.int64))
        stamps = stamps[stamps > 0]
        if T is None or last_stamp is None or not len(stamps) or not np.isfinite(T).all():
            return
        with np.errstate(all="ignore"):
            median_depth = float(np.nanmedian(depth[::8, ::8]))
        intervals = max((stamp_ns - last_stamp) / float(np.median(stamps)), 1.0)
        if math.isfinite(median_depth) and median_depth > 0:
            self._baselines.append(float(np.linalg.norm(T[:3, 3])) / median_depth / intervals)

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
        admitted = self._admit(image_msg)
        if admitted is None:
            return None
        image, camera, valid, stamp_ns = admitted
        in_frame = image_msg.header.frame_id
        t1 = time.perf_counter()

        try:
            out = self.estimator.step(image, camera, stamp_ns, with_flow="flow" in wanted)
        except InputError as exc:
            self._skip("inference", "inference", str(exc))
            return None
        last_stamp, self._last_processed_stamp = self._last_processed_stamp, stamp_ns
        if valid is not None:  # undistorted pixels sampled outside the raw image
            out.depth_m[~valid] = np.nan
        R_gyro, R_prior = None, None  # the gyro's rotation with its bias; without, if in use
        if self.cfg.use_imu:
            R_gyro, R_prior = self.gyro_gate.rotations(last_stamp, stamp_ns)
        interval_s = None if last_stamp is None else (stamp_ns - last_stamp) * 1e-9
        geometry = self._with_gyro(
            self._geometry(image, camera, out, wanted, R_prior, interval_s), R_gyro, interval_s
        )
        depth_raw, T_raw, cov_raw = geometry.depth_m, geometry.T_prev_cur, geometry.covariance
        self._measure_baseline(T_raw, depth_raw, stamp_ns, last_stamp)
        confidence = geometry.confidence
        if T_raw is None or interval_s is None:
            self.velocity_smoother.reset()
        else:
            T_raw = self.velocity_smoother.update(T_raw, interval_s)
        self._update_scale(depth_raw, camera, T_raw, stamp_ns)
        scale = self.scale
        depth = depth_raw * np.float32(scale)
        near, far = (scale * b for b in out.depth_bounds_m)
        if depth_raw is not out.depth_m:
            near, far = 0.0, math.inf  # multi-view depth: its range is not known
        if near < self.cfg.min_depth or far > self.cfg.max_depth:  # skip two passes when in range
            with np.errstate(invalid="ignore"):
                out_of_range = ~((depth >= self.cfg.min_depth) & (depth <= self.cfg.max_depth))
            depth[out_of_range] = np.nan
        T, cov = None, None
        if T_raw is not None:
            T = T_raw.copy()
            T[:3, 3] *= scale
        if cov_raw is not None:  # translation rows and columns are in network units too
            units = np.array([scale] * 3 + [1.0] * 3)
            cov = cov_raw * np.outer(units, units)
        if confidence is not None:
            confidence = np.where(np.isfinite(depth), confidence, 0.0).astype(np.float32)
        t2 = time.perf_counter()

        self.odometry.metric = self.metric
        state = self.odometry.update(T, stamp_ns, cov, geometry.rotation_variance)
        frame = self.cfg.camera_frame or in_frame
        messages = self._messages(
            wanted, image, depth, confidence, camera, out, state, stamp_ns, frame
        )
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
            confidence=confidence,
            T_prev_cur=T,
            image=image,
            camera=camera,
            odometry=state,
        )

    def _geometry(
        self,
        image: np.ndarray,
        camera: Camera,
        out: EstimatorOutput,
        wanted: set[str],
        R_prior: np.ndarray | None = None,
        interval_s: float | None = None,
    ) -> Geometry:
        """Depth, motion and their uncertainty from the configured sources; the tracker runs
        only when something needs it. ``R_prior``: the gyro's (3, 3) rotation of the frame
        interval where it is in use, for classical VO's translation and, where the network's
        refinement does not converge, as its other start (else classical VO's motion).
        ``interval_s``: the time since the last frame processed (None: the first)."""
        cfg = self.cfg
        gated_points = "points" in wanted and cfg.points_min_confidence > 0
        fuse = cfg.depth_source == "multiview" or "depth/confidence" in wanted or gated_points
        self.last_sources = MotionSources(out.T_prev_cur)
        if cfg.pose_source == "network" and not fuse:
            return Geometry(out.depth_m, out.T_prev_cur)
        classical = None
        if cfg.pose_source == "fused" and cfg.fuse_classical:
            prior = self.fusion.classical_prior(out.T_prev_cur)
            classical = self._classical_worker.submit(
                self.classical.step, image, camera.K, R_prior, prior
            )
        classical_motion = functools.cache(lambda: self._classical_result(classical))

        def start_elsewhere() -> np.ndarray | None:
            """The gyro's rotation where it is in use, else classical VO's motion unless it
            follows something other than the camera (`classical_start_rejected`)."""
            if R_prior is None:
                T_classical = classical_motion()
                if T_classical is None or self.fusion.classical_start_rejected(
                    out.T_prev_cur, T_classical
                ):
                    return None
                return T_classical
            T = np.eye(4)
            T[:3, :3] = R_prior
            return T

        try:
            track = self.tracker.track(
                image, out.depth_m, camera.K, out.T_prev_cur, fuse, start_elsewhere,
                stood_still=self.fusion.stopped,
            )  # fmt: skip
        except InputError as exc:  # the network's outputs still stand
            self._throttle.warn("tracker", f"pose refinement / multi-view depth skipped: {exc}")
            classical_motion()  # not left running
            self.tracker.reset()
            self.classical.reset()
            return Geometry(out.depth_m, self.fusion.network_only(out.T_prev_cur))
        T_classical = classical_motion()
        diag = self.last_track = track.diagnostics
        if cfg.pose_source != "network" and diag.reason in FALLBACKS:
            self._throttle.warn(
                "refine:" + diag.reason,
                f"pose refinement fell back to the {diag.init_source} motion: {diag.reason}",
            )
        motion = self.fusion.fuse(out.T_prev_cur, track, T_classical, interval_s, self.scale)
        self.last_sources = MotionSources(
            out.T_prev_cur,
            track.T_prev_cur if diag.reason == "ok" else None,
            T_classical,
            self.classical.last_length_ratio,  # NaN wherever T_classical is None
            self.fusion.classical_rejected,
        )
        multiview = cfg.depth_source == "multiview"
        depth = track.depth_m if multiview else out.depth_m
        confidence = None
        if fuse:  # the published depth's: the fused one's, or how far it confirms the network's
            confidence = track.confidence if multiview else track.prior_confidence
        return Geometry(
            depth, motion.T_prev_cur, motion.covariance, motion.rotation_variance, confidence
        )

    def _with_gyro(
        self,
        geometry: Geometry,
        R_raw: np.ndarray | None,
        interval_s: float | None,
    ) -> Geometry:
        """``geometry`` with the gyroscope's rotation since the last frame (``R_raw``, its
        bias not removed; ``interval_s`` ago, None: not known) in place of the camera's
        where `GyroGate` lets it."""
        gated = self.gyro_gate.apply(
            geometry.T_prev_cur,
            geometry.covariance,
            geometry.rotation_variance,
            R_raw,
            interval_s,
            self.last_sources,
            self.fusion.rotation_fusion,
        )
        if gated is None:
            return geometry
        return replace(
            geometry,
            T_prev_cur=gated.T_prev_cur,
            covariance=gated.covariance,
            rotation_variance=gated.rotation_variance,
        )

    def _classical_result(self, job: Future | None) -> np.ndarray | None:
        """The classical motion of this frame: None without one (off, the first frame, a
        failed pair, bad input). Its rotation is the essential matrix's (independent of the
        other estimates); its translation, where the gyro's rotation was in use, the one
        fitted with that rotation (`classical_vo.translation_given_rotation`)."""
        if job is None:
            return None
        try:
            T = job.result()
        except InputError as exc:
            self._throttle.warn("classical", f"classical rotation skipped: {exc}")
            self.classical.reset()
            return None
        t_known = self.classical.last_translation_given_rotation
        if T is not None and t_known is not None:
            T = T.copy()
            T[:3, 3] = t_known
        return T

    def _messages(
        self,
        wanted: set[str],
        image: np.ndarray,
        depth: np.ndarray,
        confidence: np.ndarray | None,
        camera: Camera,
        out: Any,
        state: OdometryState,
        stamp_ns: int,
        frame: str,
    ) -> dict[str, Any]:
        types, cfg = self.types, self.cfg
        hdr = cv.header(types, stamp_ns, frame)
        msgs: dict[str, Any] = {}
        if "depth" in wanted:
            msgs["depth"] = cv.depth_to_image(types, depth, hdr)
        if "depth/camera_info" in wanted:
            msgs["depth/camera_info"] = cv.camera_info_msg(types, camera, hdr)
        if "depth/confidence" in wanted and confidence is not None:
            msgs["depth/confidence"] = cv.numpy_to_image(types, confidence, "32FC1", hdr)
        if "depth_mm" in wanted:
            msgs["depth_mm"] = cv.depth_to_mm_image(types, depth, hdr)
        if "depth/colormap" in wanted:
            colors = colormap_depth(depth, cfg.min_depth, cfg.max_depth)
            msgs["depth/colormap"] = cv.numpy_to_image(types, colors, "rgb8", hdr)
        if "points" in wanted:
            xyz, rgb = self._points(depth, camera.K, image, confidence)
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
        self, depth: np.ndarray, K: np.ndarray, image: np.ndarray, confidence: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Decimated valid pixels (confident enough, with ``points_min_confidence``) -> (N, 3)
        camera-frame points and (N, 3) uint8 colours."""
        d, threshold = self.cfg.point_decimation, self.cfg.points_min_confidence
        z = depth[::d, ::d]
        xyz = (self._rays(depth.shape, K) * z[..., None]).reshape(-1, 3)
        rgb = image[::d, ::d].reshape(-1, 3) if self.cfg.point_color else None
        valid = np.isfinite(z).ravel()
        if threshold > 0:  # without a confidence, no pixel is trusted
            valid &= confidence is not None and (confidence[::d, ::d] >= threshold).ravel()
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
            "frames observed (pose network only)": str(s.frames_observed),
            "frames passed over (a longer pair)": str(s.frames_passed_over),
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
            "pose source": self.cfg.pose_source,
            "depth source": self.cfg.depth_source,
            **(self.gyro_gate.diagnostics() if self.cfg.use_imu else {}),
            **self.tracking_diagnostics(),
        }

    def tracking_diagnostics(self) -> dict[str, str]:
        """The keyframe tracker's last outcome and counts (empty before it ran)."""
        track = self.last_track
        if track is None:
            return {}
        counts = track.reason_counts
        fallbacks = {k: v for k, v in sorted(counts.items()) if k in FALLBACKS}
        return {
            "refinement iterations": str(track.iterations),
            "refinement residual": f"{track.final_cost:.4g}",
            "refinement outcome": track.reason,
            "refinement fallbacks": str(sum(fallbacks.values())),
            "fallbacks by reason": ", ".join(f"{k}={v}" for k, v in fallbacks.items()) or "none",
            "keyframe switches": str(track.keyframe_switches),
            "frames held still (something moving in view)": str(self.tracker.held_still_frames),
            **self.fusion.diagnostics(),
        }

"""The depth/odometry node's parameters (`PipelineConfig`), shared by the node, `sfm-ros bag`
and `sfm-ros eval`; names are the ROS parameter names."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.keyframes import NETWORK_DEPTH_UNCERTAINTY
from sfm_ros.core.motion_fusion import POSE_SOURCES
from sfm_ros.core.params import Params, param

SCALE_SOURCES = ("none", "fixed", "camera_height", "odometry")
RECTIFIED = {"auto": None, "true": True, "false": False}
"""Values of the ``rectified`` parameter -> ``camera_from_camera_info(rectified=...)``."""
DEPTH_SOURCES = ("network", "multiview")


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
    points_min_confidence: float = param(
        0.0,
        "keep only the points whose depth/confidence reaches this, in [0, 1] (0 = every valid "
        "pixel; above 0 the tracker runs as for publish_confidence, and a frame without a "
        "confidence has no points): a cloud a costmap can mark from",
    )
    publish_flow: bool = param(False, "publish the rigid optical flow (32FC2)")
    publish_explainability: bool = param(False, "publish the explainability mask (32FC1)")
    max_time_gap_s: float = param(
        0.5, "a larger gap between frames resets the pose history and the chain"
    )
    fallback_intrinsics: list = param(
        [], "fx, fy, cx, cy (pixels) used when no CameraInfo arrived; empty = none"
    )
    rectified: str = param(
        "auto",
        "the image is rectified (image_rect: CameraInfo P, no distortion) or raw (K and D): "
        "auto (rectified when D is all zero), true or false",
        choices=tuple(RECTIFIED),
    )
    undistort: bool = param(
        True, "undistort distorted (raw) images; false = skip them with a warning"
    )
    use_compressed: bool = param(
        False, "subscribe to <image>/compressed (sensor_msgs/CompressedImage)"
    )
    pose_source: str = param(
        "fused",
        "motion for odometry: network (pose network), refined (photometric refinement "
        "against a keyframe, covariance from its inverse Hessian), refined_rotation (the "
        "refined rotation with the network's translation) or fused (the network's rotation, "
        "scaled by its running gain and less its running offset from the other two where "
        "those are significant, the refined and the classical rotation fused by their "
        "variances, the translation's "
        "direction too with fuse_translation, its length the network's anchored to the depth "
        "with anchor_length and steadied from frame to frame with fuse_length; the fused "
        "rotation's measured variance is the odometry's rotation covariance)",
        choices=POSE_SOURCES,
    )
    depth_source: str = param(
        "multiview",
        "published depth: multiview (plane sweep over recent frames fused with the network's "
        "depth; two sweeps and a pose refinement of each source view every frame, about 210 ms "
        "on one CPU thread at 416 px wide) or network (the depth network's, the fastest)",
        choices=DEPTH_SOURCES,
    )
    multiview_refine_sources: bool = param(
        True,
        "depth_source multiview: refine the source views' poses against the frame before the "
        "published sweep (about 85 ms of its 210 on one CPU thread; on five held-out synthetic "
        "sequences the multi-view depth gained 31 % on the network's with it, 20 % without)",
    )
    multiview_carry_over: float = param(
        0.8,
        "depth_source multiview: weight, in [0, 1], the last frame's multi-view depth keeps when "
        "carried into the frame's sweep through the tracked motion (a depth filter over the "
        "frames; 0 = each frame on its own; 0.8 took the published depth from 23 to 25 % below "
        "the network's Abs Rel on 15 held-out synthetic sequences)",
    )
    fuse_classical: bool = param(
        True,
        "pose_source fused: add the motion of classical ORB + essential-matrix VO (OpenCV "
        "MAGSAC++, frames at most 1280 px wide) as a third estimate of the rotation and the "
        "translation's direction; the three pairwise disagreements then give each estimate's "
        "variance, so the weights no longer depend on how well the refinement's covariance is "
        "calibrated for this camera, and on frames whose refinement fails the network's and "
        "the classical estimate are still fused by them; the rotation error the network's and "
        "the refined estimate share (it stays over frames, classical VO's does not) is "
        "measured too and not charged to the classical rotation",
    )
    classical_closure: bool = param(
        True,
        "pose_source fused with fuse_classical: classical VO also fits the rotation over two "
        "frames, matched afresh, and its closure with the chain of the two steps measures the "
        "classical rotation's own error, which then sets its variance in the rotation fusion "
        "(the disagreements alone cannot tell it from an error the network's and the refined "
        "rotation share: KITTI 06 RE 0.0015 -> 0.0011, KITTI 00 0.0018 -> 0.0015, means of "
        "four runs; one more ORB matching and essential-matrix fit a frame, about 15 ms for a "
        "KITTI frame on one CPU thread); that fit over two frames also pulls each classical "
        "rotation towards what it says after the last fused rotation, by their variances, so "
        "the fused chain leans on it where classical VO is the better estimate",
    )
    fuse_translation: bool = param(
        True,
        "pose_source fused with fuse_classical: fuse the translation's direction too (the "
        "network's, less its running offset from the other two where that offset is "
        "significant, the refined and the classical one, weighted by the variances their "
        "disagreements give, with the error the network's and the refined direction share where "
        "that leaves the classical one the better); its length is set by anchor_length. While all "
        "three directions scatter by more than 20 degrees (a camera at 30 Hz) and the network's, "
        "chained over 15 frames, is more than 30 degrees off the refined displacement, the "
        "refined translation is published instead: aligned with the keyframe, its errors do not "
        "add up from frame to frame",
    )
    anchor_length: bool = param(
        True,
        "pose_source fused or refined_rotation: scale the network translation's length by the "
        "ratio of refined to network lengths over about the last 10 frames, so that the "
        "trajectory's scale follows the depth's (the pose network's scale wanders with the "
        "scene; the camera_height scale source assumes the depth's); a frame whose refined "
        "translation is under a quarter of the refined lengths' mean while the network's is "
        "under half of its own, or for three frames in a row, is a stop and publishes the "
        "refined motion whole (the pose network creeps on between views of a still scene); "
        "false = the network's",
    )
    fuse_length: bool = param(
        True,
        "pose_source fused with fuse_classical and anchor_length: steady the translation's "
        "length from frame to frame: its change is fused with the refined translation's and "
        "the classical VO's relative scale (how much longer each motion is than the one "
        "before, from the points both pairs triangulate), weighted by the variances their "
        "disagreements with each other and with a steady speed give (the network's and the "
        "refined length share the depth's errors, so neither is measured against the other); "
        "beyond a few frames the length stays the anchored network's",
    )
    use_imu: bool = param(
        True,
        "take the rotation between frames from a gyroscope (sensor_msgs/Imu on imu, its "
        "angular velocity; TF must give the camera <- IMU rotation): integrated between the "
        "image stamps, its bias (the steady offset from classical VO's or the refined "
        "rotation) removed, and used while it agrees with the camera's rotation (within 3 "
        "standard deviations plus a tenth of the rotation: a wrong transform, rates in "
        "degrees or a time offset hand the rotation back to the camera; /diagnostics says "
        "why); classical VO then also fits its translation with that rotation for the "
        "direction's fusion; needs the camera rotation's measured variance (pose_source "
        "fused or refined)",
    )
    depth_uncertainty: float = param(
        NETWORK_DEPTH_UNCERTAINTY,
        "relative error of the depth that pose refinement aligns with: residuals that a depth "
        "error would move (along the translation) count less; about 0.3 for a depth network, "
        "0 for exact depth",
    )
    velocity_smoothing_s: float = param(
        0.0,
        "time constant (s) smoothing the translational velocity of the odometry (a vehicle's "
        "inertia; rotation is never smoothed): about 0.5-1 for cars and wheeled robots, 0 (off) "
        "for handheld cameras and drones",
    )
    publish_confidence: bool = param(
        False,
        "publish depth/confidence (32FC1 in [0, 1]: how far multi-view geometry supports the "
        "published depth, 0 where it says nothing or contradicts it; runs the tracker, about "
        "3x the network's CPU time, unless pose_source or depth_source already do); only "
        "while subscribed",
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
        if not 0 <= self.points_min_confidence <= 1:
            raise ConfigError(
                f"points_min_confidence must be in [0, 1], got {self.points_min_confidence}"
            )
        if not 0 <= self.velocity_smoothing_s < math.inf:
            raise ConfigError(
                f"velocity_smoothing_s must be finite and >= 0, got {self.velocity_smoothing_s}"
            )
        if not 0 <= self.depth_uncertainty < math.inf:
            raise ConfigError(
                f"depth_uncertainty must be finite and >= 0, got {self.depth_uncertainty}"
            )
        if not 0 <= self.multiview_carry_over <= 1:
            raise ConfigError(
                f"multiview_carry_over must be in [0, 1], got {self.multiview_carry_over}"
            )
        if not self.max_time_gap_s > 0:
            raise ConfigError(f"max_time_gap_s must be > 0, got {self.max_time_gap_s}")
        if len(self.fallback_intrinsics) not in (0, 4):
            raise ConfigError(
                "fallback_intrinsics must be [] or [fx, fy, cx, cy], "
                f"got {self.fallback_intrinsics}"
            )

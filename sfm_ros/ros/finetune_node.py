"""``finetune``: online self-supervised fine-tuning of the depth and pose networks.

The node feeds the camera stream to :class:`~sfm_ros.core.online.OnlineAdapter`, which trains
in a background thread (own CUDA stream, ``threads`` CPU threads, bounded duty cycle) and
publishes only weights that pass its held-out check: the photometric loss and depth's own
statistics (a collapsed or saturating depth is never published); rollbacks are logged with
their reason.

Subscribed topics (the names, remappings and QoS options of ``depth_odometry``):
    image (sensor_msgs/Image), or image/compressed (sensor_msgs/CompressedImage) when
        ``use_compressed``; QoS ``image_qos`` (sensor_data by default).
    camera_info (sensor_msgs/CameraInfo): intrinsics, latest kept per frame_id; images whose
        CameraInfo has distortion (D not zero) are undistorted before training.

Published topics:
    model_update (std_msgs/String, reliable, transient local): path of each accepted
        checkpoint (``out_dir/adapted_<version>.pt``, weights only; the newest
        ``keep_versions`` are kept, ``latest.pt`` adds the optimiser state for resuming);
        ``depth_odometry`` swaps it in between frames. At start-up a resumed version is
        announced too.
    /diagnostics (diagnostic_msgs/DiagnosticArray): steps, loss, held-out loss, buffer fill and
        memory, version, rollbacks and the last rollback's reason, held-out depth statistics,
        memory Abs Rel against the starting weights', measured duty cycle.

Services:
    ~/save (std_srvs/Trigger): check the current weights now; publish them when they pass.
    ~/reset (std_srvs/Trigger): back to the starting checkpoint (published as a new version).
    ~/enable (std_srvs/SetBool): pause (false) or resume (true) training; frames still count.

Parameters: every field of :class:`~sfm_ros.core.online.OnlineConfig` (checkpoint, out_dir,
device, threads (1), lr, batch_size, buffer_size, duty_cycle, warmup_snippets, save_period,
keep_versions (5), min_motion, divergence_threshold, the depth guard's collapse_* and max_*
limits, scale_weight, replay_data (the five synthetic domains by default), memory_domains and
max_forgetting (the forgetting check on synthetic frames with true depth), adapt_resolution,
...; ``ros2 param describe /finetune <name>``),
plus use_compressed (false), fallback_intrinsics ([]), image_qos (sensor_data), queue_depth (5)
and diagnostics_period (1.0 s). An empty ``checkpoint`` means the packaged default model.
Defaults: config/sfm.yaml (key ``/**/finetune``). Resolution policy (``adapt_resolution``):
``checkpoint`` (default) adapts at the starting checkpoint's input size, camera images resized
to it as ``depth_odometry`` resizes them, so versions swap in live; ``camera_aspect`` adapts at
about the same pixel count with the camera's aspect ratio (sides multiples of 32, fixed by the
first frame) and records that size in the versions: ``depth_odometry`` must be started on such
a version (its live swap refuses another input size), and the single-process executable
refuses this policy.

Executables: ``finetune`` runs this node alone. ``depth_odometry_finetune``
(:func:`main_combined`) runs ``depth_odometry`` and ``finetune`` in one process with a
multi-threaded executor: accepted weights are swapped straight into the depth node's
estimator (no file hop, no ``model_update`` message; files are still written), and an empty
``checkpoint`` means the depth node's model.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from sfm_ros import messages as cv
from sfm_ros.core.camera import Camera
from sfm_ros.core.checkpoint import ARCH_KEYS, resolve_checkpoint
from sfm_ros.core.errors import ConfigError, InputError, SfmError
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.online import LATEST, OnlineAdapter, OnlineConfig
from sfm_ros.core.undistort import undistorter_for
from sfm_ros.messages.bag_dataset import BagSequence
from sfm_ros.ros.node_utils import (
    NodeConfig,
    declare_parameters,
    latched_qos,
    qos_profile,
    ros_logging_bridge,
    run_nodes,
    start_diagnostics,
)


@dataclass
class InputConfig:
    """Camera input settings shared with ``depth_odometry``."""

    use_compressed: bool = field(
        default=False,
        metadata={"description": "subscribe to <image>/compressed (sensor_msgs/CompressedImage)"},
    )
    fallback_intrinsics: list = field(
        default_factory=list,
        metadata={"description": "fx, fy, cx, cy (pixels) used when no CameraInfo arrived"},
    )

    def validate(self) -> None:
        if len(self.fallback_intrinsics) not in (0, 4):
            raise ConfigError(
                "fallback_intrinsics must be [] or [fx, fy, cx, cy], "
                f"got {self.fallback_intrinsics}"
            )


class FinetuneNode(Node):
    """Wraps :class:`OnlineAdapter`; see the module docstring for the interface.

    Args:
        estimator: the depth node's estimator in single-process mode: accepted weights are
            swapped into it directly instead of being announced on ``model_update``.
    """

    def __init__(self, estimator: DepthPoseEstimator | None = None, **kwargs: Any) -> None:
        super().__init__("finetune", **kwargs)
        values = declare_parameters(self, OnlineConfig)
        self.input_cfg = InputConfig(**declare_parameters(self, InputConfig))
        self.input_cfg.validate()
        self.node_cfg = NodeConfig(**declare_parameters(self, NodeConfig))
        self.node_cfg.validate()
        self.estimator = estimator
        if not values["checkpoint"]:
            own = estimator.checkpoint_path if estimator is not None else ""
            values["checkpoint"] = str(own or resolve_checkpoint(""))
        cfg = OnlineConfig().replace(**values)
        self._log = ros_logging_bridge(self.get_logger(), f"sfm_ros.{self.get_name()}")

        self._lock = threading.Lock()
        self._cameras = cv.CameraInfoCache(
            fallback_intrinsics=self.input_cfg.fallback_intrinsics,
            warn=lambda _, text: self.get_logger().warning(text, throttle_duration_sec=5.0),
        )
        self.frames_received = 0
        self.frames_rejected = 0
        self._closing = False
        self.update_pub = (
            self.create_publisher(String, "model_update", latched_qos())
            if estimator is None
            else None
        )
        self.adapter = OnlineAdapter(
            cfg, on_publish=self._on_publish, logger=self._log, bag_reader=BagSequence
        )
        if estimator is not None:
            if cfg.adapt_resolution != "checkpoint":
                raise ConfigError(
                    f"adapt_resolution {cfg.adapt_resolution!r} changes the network input size, "
                    "which a live swap into depth_odometry cannot follow; use 'checkpoint' with "
                    "depth_odometry_finetune"
                )
            diff = [k for k in ARCH_KEYS if self.adapter.arch.get(k) != estimator.arch.get(k)]
            if diff:
                raise ConfigError(
                    f"the fine-tuned model differs from the depth node's in {diff}; give both "
                    "nodes the same checkpoint"
                )

        camera_group = MutuallyExclusiveCallbackGroup()
        camera_qos = qos_profile(self.node_cfg.image_qos, self.node_cfg.queue_depth)
        if self.input_cfg.use_compressed:
            self.create_subscription(CompressedImage, "image/compressed", self._on_image,
                                     camera_qos, callback_group=camera_group)  # fmt: skip
        else:
            self.create_subscription(Image, "image", self._on_image, camera_qos,
                                     callback_group=camera_group)  # fmt: skip
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, camera_qos,
                                 callback_group=camera_group)  # fmt: skip
        service_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/save", self._save, callback_group=service_group)
        self.create_service(Trigger, "~/reset", self._reset, callback_group=service_group)
        self.create_service(SetBool, "~/enable", self._enable, callback_group=service_group)
        self.diagnostic_task = start_diagnostics(
            self, "finetune", self.node_cfg.diagnostics_period, self._diagnostics
        )
        if self.adapter.version:  # resumed: consumers should run the adapted weights
            path = self.adapter.out_dir / f"adapted_{self.adapter.version:06d}.pt"
            self._on_publish(path if path.is_file() else self.adapter.out_dir / LATEST,
                             self.adapter.version)  # fmt: skip
        self.adapter.start()
        mode = "direct swap into depth_odometry" if estimator is not None else "model_update"
        self.get_logger().info(
            f"fine-tuning {cfg.checkpoint} on {self.adapter.device} "
            f"({self.adapter.width}x{self.adapter.height}); versions -> {cfg.out_dir} ({mode})"
        )

    # ------------------------------------------------------------------ inputs
    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            with self._lock:
                self._cameras.add(msg)
        except InputError as exc:
            self.get_logger().warning(f"ignoring CameraInfo: {exc}", throttle_duration_sec=5.0)

    def _camera(self, frame_id: str, width: int, height: int) -> Camera | None:
        with self._lock:
            camera = self._cameras.camera_for(frame_id, width, height)
        if camera is None:
            self.get_logger().warning(
                f"no CameraInfo for frame_id '{frame_id}' and no fallback_intrinsics: "
                "frame skipped",
                throttle_duration_sec=5.0,
            )
        return camera

    def _on_image(self, msg: Any) -> None:
        """Decode and hand the frame to the adapter (resize and keyframe tests, no network)."""
        with self._lock:
            self.frames_received += 1
        try:
            compressed = hasattr(msg, "format")
            image = cv.compressed_to_rgb8(msg) if compressed else cv.image_to_rgb8(msg)
            camera = self._camera(msg.header.frame_id, image.shape[1], image.shape[0])
            if camera is not None:
                if camera.distorted:  # training needs pinhole images
                    undistorter = undistorter_for(camera)
                    image, camera = undistorter(image), undistorter.camera
                self.adapter.push(image, camera.K, cv.stamp_to_ns(msg.header.stamp))
                return
        except SfmError as exc:
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=5.0)
        with self._lock:
            self.frames_rejected += 1

    # ------------------------------------------------------------------ outputs
    def _on_publish(self, path: Path, version: int) -> None:
        """Called by the adapter (training thread) for each accepted version."""
        if self.estimator is not None:
            depth_net, pose_net = self.adapter.good_networks()
            self.estimator.swap_networks(depth_net, pose_net, source=str(path))
            self._log.info(f"version {version} swapped into depth_odometry ({path})")
        elif not self._closing:
            self.update_pub.publish(String(data=str(path)))

    def _save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.adapter.save()
        return response

    def _reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.message = self.adapter.reset()
        response.success = True
        return response

    def _enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.adapter.set_enabled(bool(request.data))
        response.success = True
        response.message = "training enabled" if request.data else "training paused"
        return response

    def _diagnostics(self) -> tuple[str, str, dict[str, str]]:
        values = self.adapter.status()
        with self._lock:
            received, rejected = self.frames_received, self.frames_rejected
        values.update({"frames received": str(received), "frames rejected": str(rejected)})
        values["model updates"] = "direct swap" if self.estimator is not None else "model_update"
        stats = self.adapter.stats
        if stats.error:
            return "ERROR", f"training stopped: {stats.error}", values
        if received == 0:
            return "WARN", "no image received yet", values
        if not self.adapter.enabled:
            return "OK", "paused (~/enable)", values
        if not self.adapter.ready():
            have, need = len(self.adapter.buffer), max(1, self.adapter.cfg.warmup_snippets)
            return "OK", f"warming up: {have}/{need} snippets (moving camera needed)", values
        return "OK", f"training, version {self.adapter.version}", values

    def destroy_node(self) -> None:
        """Stop training; keep the last weights that pass the check (written to out_dir)."""
        self._closing = True
        self.adapter.stop()
        if not self.context.ok():  # after Ctrl-C the context, and /rosout with it, is gone
            stderr = logging.StreamHandler()
            stderr.setFormatter(logging.Formatter(f"[{self.get_name()}] %(message)s"))
            self._log.handlers = [stderr]
        ok, message = self.adapter.save()
        self._log.info(f"final save: {message}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """The ``finetune`` node alone (announces versions on ``model_update``)."""
    return run_nodes("finetune", lambda _: FinetuneNode(), args=args)


def main_combined(args: list[str] | None = None) -> int:
    """``depth_odometry`` and ``finetune`` in one process sharing the GPU; direct swaps."""
    from sfm_ros.ros.depth_odometry_node import DepthOdometryNode

    return run_nodes(
        "depth_odometry_finetune",
        lambda _: DepthOdometryNode(),
        lambda nodes: FinetuneNode(estimator=nodes[0].pipeline.estimator),
        args=args,
    )


if __name__ == "__main__":
    sys.exit(main())

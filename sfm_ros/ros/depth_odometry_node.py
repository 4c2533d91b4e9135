"""``depth_odometry``: depth images, point cloud and visual odometry from one camera.

Subscribed topics:
    image (sensor_msgs/Image: colour or grey, 8 or 16 bits, raw Bayer or YUV 4:2:2), or
        image/compressed (sensor_msgs/CompressedImage) when ``use_compressed``; QoS
        ``image_qos`` (sensor_data by default).
    camera_info (sensor_msgs/CameraInfo): intrinsics, latest kept per frame_id.
    external_odom (nav_msgs/Odometry): metric reference, only when ``scale_source: odometry``.
    imu (sensor_msgs/Imu): angular velocity for the rotation between frames, when ``use_imu``;
        QoS ``image_qos`` with a history of max(queue_depth, 200) for a 200-400 Hz IMU.
    model_update (std_msgs/String): path of a checkpoint to swap in (reliable, transient local).
    /tf, /tf_static: ``base_frame <- camera frame`` extrinsics (optional); ``camera <- imu
        frame`` (the Imu's frame_id) for the gyroscope, which is not used without it.

Published topics (reliable):
    depth (sensor_msgs/Image 32FC1, metres, NaN invalid), depth/camera_info (CameraInfo),
    depth/confidence (32FC1 in [0, 1], multi-view support of depth, ``publish_confidence``),
    depth_mm (16UC1, when ``publish_depth_mm``), depth/colormap (rgb8, ``publish_colormap``),
    points (PointCloud2, ``publish_points``; only confident pixels with
    ``points_min_confidence``), odom (nav_msgs/Odometry),
    flow (32FC2, ``publish_flow``), explainability (32FC1, ``publish_explainability``);
    /tf ``odom_frame -> base_frame`` when ``publish_tf``; /diagnostics.
    The costly outputs (confidence, colormap, points, flow, explainability) are only computed
    while someone subscribes.

Parameters: every field of :class:`~sfm_ros.pipeline.config.PipelineConfig` (see its
descriptions, or ``ros2 param describe /depth_odometry <name>``) plus image_qos
(``sensor_data``), queue_depth (5), diagnostics_period (1.0 s) and max_observed_frames (30).
Defaults: config/sfm.yaml.

Images are decoded and run on a worker thread, so the executor never waits on the network: the
callback queues frames, and the worker processes the newest after showing the pose network
those that arrived while it was busy (`DepthOdometryPipeline.catch_up`, at most
``max_observed_frames``; older ones are dropped) that keep its pairs as long as the motions it
learnt. The camera_info,
external_odom and imu callbacks only queue their message for that worker (the pipeline's
threading rule: its state belongs to the worker).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, PointCloud2
from std_msgs.msg import String
from tf2_ros import Buffer, TransformBroadcaster, TransformException, TransformListener

from sfm_ros.core.errors import SfmError
from sfm_ros.messages import matrix_from_transform, rclpy_types
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.frame_pipeline import OUTPUT_TYPES, DepthOdometryPipeline
from sfm_ros.ros.node_utils import (
    DepthNodeConfig,
    declare_parameters,
    latched_qos,
    qos_profile,
    ros_logging_bridge,
    run_nodes,
    start_diagnostics,
)

MESSAGE_CLASSES = {
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CameraInfo": CameraInfo,
    "sensor_msgs/msg/PointCloud2": PointCloud2,
    "nav_msgs/msg/Odometry": Odometry,
}
ON_DEMAND = ("depth/confidence", "depth/colormap", "points", "flow", "explainability")
"""Outputs only computed while they have subscribers."""
IMU_QUEUE_DEPTH = 200
"""Least history depth of the imu subscription: 0.5-1 s of a 200-400 Hz IMU."""


class DepthOdometryNode(Node):
    """Wraps :class:`DepthOdometryPipeline`; see the module docstring for the interface."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("depth_odometry", **kwargs)
        self.cfg = PipelineConfig.from_mapping(declare_parameters(self, PipelineConfig))
        self.node_cfg = DepthNodeConfig(**declare_parameters(self, DepthNodeConfig))
        self.node_cfg.validate()
        log = ros_logging_bridge(self.get_logger(), f"sfm_ros.{self.get_name()}")
        self.pipeline = DepthOdometryPipeline(self.cfg, rclpy_types(), logger=log)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._frames: list[Any] = []  # arrived since the worker last took them, oldest first
        self._model_path: str | None = None
        self.frames_received = 0
        self.frames_dropped = 0
        self._worker_error: str | None = None

        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)
        self.tf_broadcaster = TransformBroadcaster(self) if self.cfg.publish_tf else None
        self._extrinsics_known = False

        depth = self.node_cfg.queue_depth
        self.outputs = {
            name: self.create_publisher(MESSAGE_CLASSES[OUTPUT_TYPES[name]], name, depth)
            for name in sorted(self.pipeline.enabled_outputs())
        }
        camera_qos = qos_profile(self.node_cfg.image_qos, depth)
        if self.cfg.use_compressed:
            self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, camera_qos
            )
        else:
            self.create_subscription(Image, "image", self._on_image, camera_qos)
        self.create_subscription(
            CameraInfo, "camera_info", self.pipeline.on_camera_info, camera_qos
        )
        if self.cfg.scale_source == "odometry":
            self.create_subscription(Odometry, "external_odom", self.pipeline.on_odometry, depth)
        if self.cfg.use_imu:
            imu_qos = qos_profile(self.node_cfg.image_qos, max(depth, IMU_QUEUE_DEPTH))
            self.create_subscription(Imu, "imu", self.pipeline.on_imu, imu_qos)
        self.create_subscription(String, "model_update", self._on_model_update, latched_qos())
        self.diagnostic_task = start_diagnostics(
            self, "depth_odometry", self.node_cfg.diagnostics_period, self._diagnostics
        )

        self._worker = threading.Thread(target=self._run, name="depth_odometry", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: scale source {self.cfg.scale_source}, outputs {sorted(self.outputs)}"
        )

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Any) -> None:
        """Queue the frame (the newest and at most ``max_observed_frames`` before it); the
        worker picks them up."""
        with self._lock:
            self.frames_received += 1
            self._frames.append(msg)
            if len(self._frames) > self.node_cfg.max_observed_frames + 1:
                self._frames.pop(0)
                self.frames_dropped += 1
        self._wake.set()

    def _on_model_update(self, msg: String) -> None:
        with self._lock:
            self._model_path = msg.data
        self._wake.set()

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()  # before taking the slots: a later frame sets it again
            with self._lock:
                frames, self._frames = self._frames, []
                model_path, self._model_path = self._model_path, None
            if self._stop.is_set():
                return
            if model_path:
                self._load_model(model_path)
            if not frames:
                continue
            try:
                self._catch_up(frames[:-1])
                self._process(frames[-1])
                self._worker_error = None
            except Exception as exc:  # e.g. CUDA out of memory: report, keep serving frames
                self._worker_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(
                    f"frame failed: {self._worker_error}", throttle_duration_sec=5.0
                )

    def _load_model(self, path: str) -> None:
        try:
            self.pipeline.load_model(path)
        except Exception as exc:  # a user's file: whatever it does, keep the worker alive
            reason = str(exc) if isinstance(exc, SfmError) else f"{type(exc).__name__}: {exc}"
            self.get_logger().error(
                f"model update {path} rejected: {reason}; the current model stays in service"
            )

    def _catch_up(self, msgs: list[Any]) -> None:
        try:
            self.pipeline.catch_up(msgs)
        except SfmError as exc:
            self.get_logger().warning(f"frames not observed: {exc}", throttle_duration_sec=5.0)

    def _process(self, msg: Any) -> None:
        camera_frame = self.cfg.camera_frame or msg.header.frame_id
        if not self._extrinsics_known:
            self._lookup_extrinsics(camera_frame)
        imu_frame = self.pipeline.gyro_gate.imu_frame_id
        if imu_frame is not None and self.pipeline.gyro_gate.gyro.R_cam_imu is None:
            self._lookup_imu_extrinsics(camera_frame, imu_frame)
        outputs = {
            name
            for name, pub in self.outputs.items()
            if name not in ON_DEMAND or pub.get_subscription_count() > 0
        }
        try:
            result = self.pipeline.process(msg, outputs)
        except SfmError as exc:
            self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        if result is None:
            return
        for name, out in result.messages.items():
            self.outputs[name].publish(out)
        if self.tf_broadcaster is not None and result.transforms:
            self.tf_broadcaster.sendTransform(result.transforms)

    def _lookup_extrinsics(self, camera_frame: str) -> None:
        """``base_frame <- camera_frame`` from TF, without waiting; cached once found."""
        if not camera_frame or camera_frame == self.cfg.base_frame:
            return
        try:
            tf = self.tf_buffer.lookup_transform(
                self.cfg.base_frame, camera_frame, Time(), timeout=Duration(seconds=0)
            )
        except TransformException:
            return  # the pipeline assumes the optical rotation and says so once
        self.pipeline.set_camera_extrinsics(matrix_from_transform(tf), camera_frame)
        self._extrinsics_known = True
        self.get_logger().info(
            f"camera extrinsics from TF: {self.cfg.base_frame} <- {camera_frame}"
        )

    def _lookup_imu_extrinsics(self, camera_frame: str, imu_frame: str) -> None:
        """``camera_frame <- imu_frame`` from TF, without waiting; until it is found, the
        gyroscope is not used and the pipeline's diagnostics say which transform is missing."""
        if not camera_frame or not imu_frame:
            return
        if imu_frame == camera_frame:
            T_cam_imu = np.eye(4)
        else:
            try:
                tf = self.tf_buffer.lookup_transform(
                    camera_frame, imu_frame, Time(), timeout=Duration(seconds=0)
                )
            except TransformException:
                return  # retried on the next frame
            T_cam_imu = matrix_from_transform(tf)
        self.pipeline.set_imu_extrinsics(T_cam_imu)
        self.get_logger().info(f"IMU extrinsics from TF: {camera_frame} <- {imu_frame}")

    # ------------------------------------------------------------------ diagnostics
    def _diagnostics(self) -> tuple[str, str, dict[str, str]]:
        with self._lock:
            received, dropped = self.frames_received, self.frames_dropped
        values = self.pipeline.diagnostics()
        values.update({"frames received": str(received), "frames dropped": str(dropped)})
        values["extrinsics"] = "tf" if self._extrinsics_known else "optical rotation (assumed)"
        if self._worker_error:
            return "ERROR", f"last frame failed: {self._worker_error}", values
        if received == 0:
            return "WARN", "no image received yet", values
        if self.pipeline.stats.frames_processed == 0:
            return "WARN", "no image processed yet (see 'skipped by reason')", values
        return "OK", "running", values

    def destroy_node(self) -> None:
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_nodes(
        "depth_odometry", lambda _: DepthOdometryNode(), args=args, multi_threaded=False
    )


if __name__ == "__main__":
    sys.exit(main())

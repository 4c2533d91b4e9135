"""The depth_odometry node under a real ROS 2 (Humble, Jazzy or Lyrical); skipped without rclpy.

The node runs in-process with the tiny checkpoint; a probe node publishes synthetic images and
CameraInfo and listens to the outputs.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Vector3  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, Imu  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from tf2_ros import StaticTransformBroadcaster  # noqa: E402

from sfm_ros.core.errors import ConfigError  # noqa: E402
from sfm_ros.core.frames import T_BODY_OPTICAL  # noqa: E402
from sfm_ros.core.lie import se3_inverse, so3_exp  # noqa: E402
from sfm_ros.core.synthetic import render_sequence  # noqa: E402
from sfm_ros.messages import (  # noqa: E402
    camera_info_msg,
    header,
    numpy_to_image,
    rclpy_types,
    stamp_to_ns,
    transform_stamped,
)
from sfm_ros.ros.depth_odometry_node import DepthOdometryNode  # noqa: E402
from sfm_ros.ros.node_utils import (  # noqa: E402
    latched_qos,
    qos_profile,
    ros_logging_bridge,
    run_nodes,
)

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
FRAME = "camera_optical_frame"


@pytest.fixture
def node_and_probe(ros, tiny_checkpoint):
    node = DepthOdometryNode(
        parameter_overrides=[
            Parameter("checkpoint", value=str(tiny_checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("diagnostics_period", value=0.2),
        ]
    )
    probe = rclpy.create_node("probe")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    yield node, probe, executor
    executor.shutdown()
    node.destroy_node()
    probe.destroy_node()


def spin_until(executor, condition, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return condition()


def test_node_publishes_depth_and_odometry(node_and_probe):
    node, probe, executor = node_and_probe
    got = {"depth": [], "depth/camera_info": [], "odom": []}
    for topic, cls in (("depth", Image), ("depth/camera_info", CameraInfo), ("odom", Odometry)):
        probe.create_subscription(cls, topic, got[topic].append, 10)
    image_pub = probe.create_publisher(Image, "image", qos_profile("sensor_data", 5))
    info_pub = probe.create_publisher(CameraInfo, "camera_info", qos_profile("sensor_data", 5))
    connected = [image_pub, info_pub] + [node.outputs[topic] for topic in got]
    assert spin_until(
        executor, lambda: all(pub.get_subscription_count() > 0 for pub in connected)
    ), "discovery failed"

    types = rclpy_types()
    seq = render_sequence("street", 5, seed=0, height=64, width=96)
    for image, stamp_ns in zip(seq.images, seq.stamps_ns, strict=True):
        hdr = header(types, int(stamp_ns), FRAME)
        info_pub.publish(camera_info_msg(types, seq.K, 96, 64, hdr))
        executor.spin_once(timeout_sec=0.05)  # CameraInfo before its image
        done = node.pipeline.stats.frames_in
        image_pub.publish(numpy_to_image(types, image, "rgb8", hdr))
        spin_until(executor, lambda d=done: node.pipeline.stats.frames_in > d)
    assert spin_until(executor, lambda: len(got["odom"]) == len(seq.images))

    stamps = [int(s) for s in seq.stamps_ns]
    depth = got["depth"][-1]
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", 96, 64)
    assert depth.header.frame_id == FRAME
    assert [stamp_to_ns(m.header.stamp) for m in got["depth"]] == stamps
    info = got["depth/camera_info"][-1]
    assert (info.width, info.height) == (96, 64)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), seq.K)
    odom = got["odom"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    p = odom.pose.pose.position
    assert np.all(np.isfinite([p.x, p.y, p.z]))
    assert node.frames_dropped == 0


@pytest.mark.parametrize("pose_source", ["refined", "refined_rotation", "fused"])
def test_refined_pose_and_confidence_on_demand(ros, tiny_checkpoint, pose_source):
    """pose_source refined (or its rotation only) and depth/confidence, published while
    subscribed."""
    node = DepthOdometryNode(
        parameter_overrides=[
            Parameter("checkpoint", value=str(tiny_checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("pose_source", value=pose_source),
            Parameter("publish_confidence", value=True),
            Parameter("rectified", value=True),  # a bool for the auto/true/false choice
        ]
    )
    probe = rclpy.create_node("probe_confidence")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    try:
        got = {"depth": [], "depth/confidence": [], "odom": []}
        for topic, cls in (("depth", Image), ("depth/confidence", Image), ("odom", Odometry)):
            probe.create_subscription(cls, topic, got[topic].append, 10)
        image_pub = probe.create_publisher(Image, "image", qos_profile("sensor_data", 5))
        info_pub = probe.create_publisher(CameraInfo, "camera_info", qos_profile("sensor_data", 5))
        connected = [image_pub, info_pub] + [node.outputs[topic] for topic in got]
        assert spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in connected))
        types = rclpy_types()
        seq = render_sequence("street", 4, seed=5, height=64, width=208)
        for image, stamp_ns in zip(seq.images, seq.stamps_ns, strict=True):
            hdr = header(types, int(stamp_ns), FRAME)
            info_pub.publish(camera_info_msg(types, seq.K, 208, 64, hdr))
            executor.spin_once(timeout_sec=0.05)
            done = node.pipeline.stats.frames_in
            image_pub.publish(numpy_to_image(types, image, "rgb8", hdr))
            spin_until(executor, lambda d=done: node.pipeline.stats.frames_in > d)
        assert spin_until(executor, lambda: len(got["depth/confidence"]) == len(seq.images))
        confidence, depth = got["depth/confidence"][-1], got["depth"][-1]
        assert confidence.encoding == "32FC1" and confidence.header == depth.header
        assert (confidence.width, confidence.height) == (depth.width, depth.height)
        values = np.frombuffer(bytes(confidence.data), np.float32)
        assert np.all((values >= 0) & (values <= 1))
        assert np.all(np.isfinite(got["odom"][-1].pose.covariance))
        assert node.cfg.rectified == "true"
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()


@pytest.mark.parametrize("max_observed", [30, 2])
def test_frames_that_arrive_while_busy_are_observed(ros, tiny_checkpoint, max_observed):
    """A worker slower than the camera processes the newest frame and shows the pose network
    those that arrived meanwhile (at most ``max_observed_frames``; older ones are dropped)."""
    node = DepthOdometryNode(
        parameter_overrides=[
            Parameter("checkpoint", value=str(tiny_checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("max_observed_frames", value=max_observed),
        ]
    )
    probe = rclpy.create_node("probe_busy")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)
    process = node.pipeline.process
    busy, all_sent = threading.Event(), threading.Event()

    def slow_process(*args, **kwargs):
        busy.set()
        all_sent.wait(timeout=30.0)  # the worker is busy until the other frames have arrived
        return process(*args, **kwargs)

    node.pipeline.process = slow_process
    try:
        image_pub = probe.create_publisher(Image, "image", qos_profile("sensor_data", 5))
        info_pub = probe.create_publisher(CameraInfo, "camera_info", qos_profile("sensor_data", 5))
        assert spin_until(executor, lambda: image_pub.get_subscription_count() > 0)
        assert spin_until(executor, lambda: info_pub.get_subscription_count() > 0)
        types = rclpy_types()
        seq = render_sequence("street", 8, seed=0, height=64, width=96)
        for k, (image, stamp_ns) in enumerate(zip(seq.images, seq.stamps_ns, strict=True)):
            hdr = header(types, int(stamp_ns), FRAME)
            info_pub.publish(camera_info_msg(types, seq.K, 96, 64, hdr))
            executor.spin_once(timeout_sec=0.05)
            received = node.frames_received
            image_pub.publish(numpy_to_image(types, image, "rgb8", hdr))
            assert spin_until(executor, lambda r=received: node.frames_received > r)
            if k == 0:
                assert busy.wait(timeout=20.0)  # the worker took the first frame
        all_sent.set()
        stats = node.pipeline.stats
        # the first frame, then the newest once the worker is free
        assert spin_until(executor, lambda: stats.frames_processed == 2)
        time.sleep(0.5)  # nothing more comes
        assert stats.frames_processed == 2 and stats.frames_in == 8 - node.frames_dropped
        assert stats.frames_observed + stats.frames_passed_over == min(6, max_observed)
        assert node.frames_dropped == 6 - min(6, max_observed)
        assert stats.resets == 0 or max_observed < 6  # a gap only where frames were dropped
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()


def test_model_update_and_diagnostics(node_and_probe, tiny_checkpoint):
    node, probe, executor = node_and_probe
    statuses = []
    probe.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10
    )
    update = probe.create_publisher(String, "model_update", latched_qos())
    version = node.pipeline.estimator.model_version
    update.publish(String(data="/does/not/exist.pt"))
    update.publish(String(data=str(tiny_checkpoint)))
    assert spin_until(executor, lambda: node.pipeline.estimator.model_version > version)

    def ours() -> list:
        keys = [{kv.key: kv.value for kv in s.values} for s in statuses]
        return [(s, k) for s, k in zip(statuses, keys, strict=True) if "frames dropped" in k]

    assert spin_until(executor, lambda: bool(ours()))
    status, values = ours()[-1]
    assert "depth_odometry" in status.name
    assert values["frames dropped"] == "0" and values["scale source"] == "none"
    assert status.message == "no image received yet"


def test_imu_and_its_mount_from_tf(node_and_probe):
    """Imu on ``imu`` between the images; ``camera <- imu_link`` looked up on /tf_static."""
    node, probe, executor = node_and_probe
    types = rclpy_types()
    T_base_camera = np.eye(4)
    T_base_camera[:3, :3] = so3_exp(np.radians([0.0, 5.0, 0.0]))
    T_base_camera = T_base_camera @ T_BODY_OPTICAL
    T_base_imu = np.eye(4)
    T_base_imu[:3, :3] = so3_exp(np.radians([180.0, 0.0, 0.0]))
    static = StaticTransformBroadcaster(probe)
    static.sendTransform(
        [
            transform_stamped(types, header(types, 0, "base_link"), FRAME, T_base_camera),
            transform_stamped(types, header(types, 0, "base_link"), "imu_link", T_base_imu),
        ]
    )
    image_pub = probe.create_publisher(Image, "image", qos_profile("sensor_data", 5))
    info_pub = probe.create_publisher(CameraInfo, "camera_info", qos_profile("sensor_data", 5))
    imu_pub = probe.create_publisher(Imu, "imu", qos_profile("sensor_data", 200))
    assert spin_until(
        executor, lambda: all(p.get_subscription_count() > 0 for p in (image_pub, imu_pub))
    )
    seq = render_sequence("street", 8, seed=0, height=64, width=96)
    imu_ns = int(seq.stamps_ns[0]) - 30_000_000
    for image, stamp_ns in zip(seq.images, seq.stamps_ns, strict=True):
        while imu_ns < stamp_ns:
            imu = Imu(header=header(types, imu_ns, "imu_link"), angular_velocity=Vector3(z=0.05))
            imu_pub.publish(imu)
            imu_ns += 10_000_000
        hdr = header(types, int(stamp_ns), FRAME)
        info_pub.publish(camera_info_msg(types, seq.K, 96, 64, hdr))
        executor.spin_once(timeout_sec=0.05)
        done = node.pipeline.stats.frames_in
        image_pub.publish(numpy_to_image(types, image, "rgb8", hdr))
        spin_until(executor, lambda d=done: node.pipeline.stats.frames_in > d)
        if node.pipeline.gyro_gate.gyro.R_cam_imu is not None:
            break
    # frames_in counts a frame when the worker starts it; the gyroscope's state is set later
    # in that frame, so wait until the worker is done with it
    stats = node.pipeline.stats
    assert spin_until(
        executor, lambda: stats.frames_processed + stats.frames_skipped >= stats.frames_in
    )
    assert node.pipeline.gyro_gate.imu_frame_id == "imu_link"
    R_cam_imu = node.pipeline.gyro_gate.gyro.R_cam_imu
    assert R_cam_imu is not None, node.pipeline.diagnostics()["gyroscope"]
    expected = (se3_inverse(T_base_camera) @ T_base_imu)[:3, :3]
    np.testing.assert_allclose(R_cam_imu, expected, atol=1e-6)
    assert "transform" not in node.pipeline.diagnostics()["gyroscope"]  # found, whatever next


@pytest.fixture
def keep_logger_class():
    """Importing `launch` makes every logger created later non-propagating (launch.logging
    sets its logger class), which would hide later tests' log records from caplog."""
    logger_class = logging.getLoggerClass()
    yield
    logging.setLoggerClass(logger_class)


def test_launch_description_loads_with_real_launch_ros(keep_logger_class):
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description import LaunchDescription

    for name in ("sfm.launch.py", "bag_replay.launch.py"):
        spec = importlib.util.spec_from_file_location("launch_file", ROOT / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        assert isinstance(description, LaunchDescription)
        names = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
        assert {"image", "camera_info", "checkpoint"} <= names


def test_logging_bridge_forwards_every_severity_to_rclpy(ros):
    # rclpy ties one severity to each calling line: a bridge that logs every severity from a
    # single line raises "Logger severity cannot be changed between calls" on a warning
    # that follows an info (and the frame or the training step that logged it is lost).
    node = rclpy.create_node("bridge_probe")
    try:
        log = ros_logging_bridge(node.get_logger(), "sfm_ros.test_bridge")
        for _ in range(2):
            log.info("info")
            log.warning("warning")
            log.error("error")
            log.debug("debug")
    finally:
        node.destroy_node()


def test_run_nodes_reports_a_node_that_cannot_start(capsys):
    built = []

    def first(nodes):
        built.append(rclpy.create_node("first_of_two"))
        return built[-1]

    def second(nodes):
        assert nodes == built  # each builder sees the nodes built before it
        raise ConfigError("bad parameter")

    assert run_nodes("two_nodes", first, second) == 2
    assert "two_nodes: bad parameter" in capsys.readouterr().err
    assert not rclpy.ok()  # the context is shut down again

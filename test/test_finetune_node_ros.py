"""The finetune node under a real ROS 2 (Humble, Jazzy or Lyrical); skipped without rclpy.

The node adapts the tiny checkpoint on synthetic corridor frames published by a probe node,
which also calls the services and listens to ``model_update`` and ``/diagnostics``. A second
test runs both nodes in one process as ``depth_odometry_finetune`` does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from sfm_ros.core.checkpoint import load_checkpoint  # noqa: E402
from sfm_ros.core.synthetic import render_sequence  # noqa: E402
from sfm_ros.messages import camera_info_msg, header, numpy_to_image, rclpy_types  # noqa: E402
from sfm_ros.ros.finetune_node import FinetuneNode, InputConfig  # noqa: E402
from sfm_ros.ros.node_utils import (  # noqa: E402
    NodeConfig,
    latched_qos,
    parameter_specs,
    qos_profile,
)

pytestmark = pytest.mark.ros

FRAME = "camera_optical_frame"


def overrides(tiny_checkpoint, out_dir) -> list:
    return [
        Parameter("checkpoint", value=str(tiny_checkpoint)),
        Parameter("out_dir", value=str(out_dir)),
        Parameter("device", value="cpu"),
        Parameter("lr", value=1e-4),
        Parameter("warmup_snippets", value=1),
        Parameter("holdout_every", value=3),
        Parameter("save_period", value=1000),
        Parameter("duty_cycle", value=1.0),
        Parameter("diagnostics_period", value=0.2),
        Parameter("replay_data", value=""),  # rendering the synthetic replay takes seconds
        Parameter("memory_domains", value=""),  # and so does rendering the memory frames
        Parameter("collapse_min_rel_std", value=1e-3),  # the tiny model's depth is near constant
    ]


def spin_until(executor, condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return condition()


def call(executor, client, request):
    assert client.wait_for_service(timeout_sec=10.0), client.srv_name
    future = client.call_async(request)
    assert spin_until(executor, future.done)
    return future.result()


def publish_frames(executor, probe, node, count: int) -> None:
    """Publish `count` frames, each after the node took the previous one (best-effort QoS
    drops what a busy subscriber has no room for)."""
    image_pub = probe.create_publisher(Image, "image", qos_profile("sensor_data", 5))
    info_pub = probe.create_publisher(CameraInfo, "camera_info", qos_profile("sensor_data", 5))
    assert spin_until(executor, lambda: image_pub.get_subscription_count() > 0)
    types = rclpy_types()
    seq = render_sequence("corridor", count, seed=0, height=64, width=96)
    for image, stamp_ns in zip(seq.images, seq.stamps_ns, strict=True):
        hdr = header(types, int(stamp_ns), FRAME)
        info_pub.publish(camera_info_msg(types, seq.K, 96, 64, hdr))
        executor.spin_once(timeout_sec=0.05)  # CameraInfo before its image
        done = node.frames_received
        image_pub.publish(numpy_to_image(types, image, "rgb8", hdr))
        assert spin_until(executor, lambda d=done: node.frames_received > d)


def test_input_parameters_match_the_params_file():
    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "config" / "sfm.yaml").read_text())["/**/finetune"]
    listed = set(params["ros__parameters"])
    specs = parameter_specs(InputConfig) + parameter_specs(NodeConfig)
    assert {s.name for s in specs if s.default != []} <= listed


def test_finetune_node_trains_saves_announces_and_reports(ros, tiny_checkpoint, tmp_path):
    node = FinetuneNode(parameter_overrides=overrides(tiny_checkpoint, tmp_path))
    probe = rclpy.create_node("probe")
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    executor.add_node(probe)
    updates, statuses = [], []
    probe.create_subscription(String, "model_update", updates.append, latched_qos())
    probe.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), 10
    )
    try:
        publish_frames(executor, probe, node, 24)
        adapter = node.adapter
        assert spin_until(executor, lambda: adapter.stats.frames_in == 24)
        assert spin_until(executor, lambda: adapter.stats.steps >= 3)

        enable = probe.create_client(SetBool, "/finetune/enable")
        assert call(executor, enable, SetBool.Request(data=False)).success
        assert not adapter.enabled
        save = probe.create_client(Trigger, "/finetune/save")
        saved = call(executor, save, Trigger.Request())
        assert saved.message  # published, or why not (held-out check)
        # One announcement per accepted version, naming a file of that version.
        assert spin_until(executor, lambda: len(updates) == adapter.version)
        if updates:
            assert load_checkpoint(updates[-1].data)["online"]["version"] == adapter.version

        reset = probe.create_client(Trigger, "/finetune/reset")
        assert call(executor, reset, Trigger.Request()).success
        assert len(adapter.buffer) == 0

        assert spin_until(executor, lambda: any("finetune" in s.name for s in statuses))
        status = [s for s in statuses if "finetune" in s.name][-1]
        keys = {kv.key for kv in status.values}
        assert {"steps", "loss", "buffer fill", "version", "rollbacks"} <= keys
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()


def test_single_process_swaps_weights_into_the_depth_node(ros, tiny_checkpoint, tmp_path):
    from sfm_ros.ros.depth_odometry_node import DepthOdometryNode

    depth = DepthOdometryNode(
        parameter_overrides=[
            Parameter("checkpoint", value=str(tiny_checkpoint)),
            Parameter("device", value="cpu"),
        ]
    )
    estimator = depth.pipeline.estimator
    node = FinetuneNode(
        estimator=estimator, parameter_overrides=overrides(tiny_checkpoint, tmp_path)
    )
    assert node.update_pub is None  # no file hop in one process
    executor = MultiThreadedExecutor(num_threads=4)
    for n in (depth, node):
        executor.add_node(n)
    try:
        version = estimator.model_version
        node._on_publish(tmp_path / "adapted_000001.pt", 1)  # as the adapter does on a pass
        assert estimator.model_version == version + 1
        assert estimator.checkpoint_path.endswith("adapted_000001.pt")
    finally:
        executor.shutdown()
        node.destroy_node()
        depth.destroy_node()


def test_single_process_refuses_the_camera_aspect_policy(ros, tiny_checkpoint, tmp_path):
    from sfm_ros.core.errors import ConfigError
    from sfm_ros.ros.depth_odometry_node import DepthOdometryNode

    depth = DepthOdometryNode(
        parameter_overrides=[
            Parameter("checkpoint", value=str(tiny_checkpoint)),
            Parameter("device", value="cpu"),
        ]
    )
    params = [
        *overrides(tiny_checkpoint, tmp_path),
        Parameter("adapt_resolution", value="camera_aspect"),
    ]
    try:
        with pytest.raises(ConfigError, match="adapt_resolution 'camera_aspect'"):
            FinetuneNode(estimator=depth.pipeline.estimator, parameter_overrides=params)
    finally:
        depth.destroy_node()

"""Monocular depth and visual odometry: the ``depth_odometry`` node, optionally with RViz and
online fine-tuning.

    ros2 launch sfm_ros sfm.launch.py image:=/camera/image_raw \\
        camera_info:=/camera/camera_info checkpoint:=/path/to/model.pt rviz:=true

Arguments: image, camera_info, params_file, checkpoint, publish_tf, namespace, use_sim_time,
rviz, finetune, single_process. ``checkpoint`` and ``publish_tf`` override the parameter file
only when given. ``finetune:=true`` also starts the ``finetune`` node (same inputs; it
announces adapted weights on ``model_update``); with ``single_process:=true`` both nodes run in
one process (``depth_odometry_finetune``) and the weights are swapped in memory.

When ``depth_odometry`` exits (a bad model, a crash) the whole launch shuts down rather than
leaving RViz or the fine-tuner running without it. ``rviz:=true`` on a machine without the
rviz2 package logs that and runs without RViz.
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "sfm_ros"

ARGUMENTS = [
    ("image", "/camera/image_raw", "Camera image topic (sensor_msgs/Image)"),
    ("camera_info", "/camera/camera_info", "CameraInfo topic of the image"),
    (
        "params_file",
        PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "sfm.yaml"]),
        "Parameter file of the depth_odometry and finetune nodes",
    ),
    ("checkpoint", "", "Model: checkpoint (.pt) or ONNX export folder; empty: params_file value"),
    ("publish_tf", "", "Broadcast odom -> base_link (true/false); empty: params_file"),
    ("namespace", "", "Namespace of the node and its topics"),
    ("use_sim_time", "false", "Use /clock (true when replaying a bag with --clock)"),
    ("rviz", "false", "Start RViz with config/sfm.rviz"),
    ("finetune", "false", "Also run the finetune node (online self-supervised fine-tuning)"),
    (
        "single_process",
        "false",
        "With finetune: both nodes in one process, adapted weights swapped in memory",
    ),
]


def _is_true(context, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).lower() == "true"


def _nodes(context):
    """depth_odometry (and finetune), with the optional overrides that were given; the launch
    ends when the process running depth_odometry does."""
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    if checkpoint:
        overrides["checkpoint"] = ParameterValue(checkpoint, value_type=str)
    finetune_overrides = dict(overrides)  # finetune starts from the same checkpoint
    publish_tf = LaunchConfiguration("publish_tf")
    if publish_tf.perform(context):
        overrides["publish_tf"] = ParameterValue(publish_tf, value_type=bool)
    image = LaunchConfiguration("image")
    common = {
        "package": PACKAGE,
        "namespace": LaunchConfiguration("namespace"),
        "remappings": [
            ("image", image),
            ("image/compressed", [image, "/compressed"]),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
        "output": "screen",
    }
    essential = {"on_exit": Shutdown(reason="depth_odometry exited")}
    params_file = LaunchConfiguration("params_file")
    finetune, single = _is_true(context, "finetune"), _is_true(context, "single_process")
    if finetune and single:
        # No `name`: it would rename both nodes of the process.
        return [
            Node(
                executable="depth_odometry_finetune",
                parameters=[params_file, overrides],
                **common,
                **essential,
            )
        ]
    actions = [
        Node(
            executable="depth_odometry",
            name="depth_odometry",
            parameters=[params_file, overrides],
            **common,
            **essential,
        )
    ]
    if finetune:
        actions.append(
            Node(
                executable="finetune",
                name="finetune",
                parameters=[params_file, finetune_overrides],
                **common,
            )
        )
    elif single:
        actions.append(LogInfo(msg="single_process:=true has no effect without finetune:=true"))
    return actions


def _rviz(context):
    """RViz with config/sfm.rviz when asked for and installed (a note in the log otherwise)."""
    if not _is_true(context, "rviz"):
        return []
    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="rviz:=true, but rviz2 is not installed: running without RViz")]
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),
            arguments=[
                "-d",
                PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "sfm.rviz"]),
            ],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            remappings=[("image", LaunchConfiguration("image"))],
        )
    ]


def _actions(context):
    return _nodes(context) + _rviz(context)


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description in ARGUMENTS
        ]
        + [OpaqueFunction(function=_actions)]
    )

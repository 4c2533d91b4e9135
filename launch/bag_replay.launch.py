"""Replay a bag into the depth_odometry node, on the bag's clock, with RViz when available.

    ros2 launch sfm_ros bag_replay.launch.py bag:=/path/to/bag checkpoint:=/path/to/model.pt

Runs ``ros2 bag play PATH --clock`` and includes ``sfm.launch.py`` with ``use_sim_time:=true``.
Arguments: bag (required), image, camera_info, checkpoint, params_file, publish_tf (default
true: a bag rarely has odom -> base_link; set false when it has), rviz (default true; without
rviz2 installed the replay runs without it), rate, delay (seconds before playing, while the
model loads).

When ``ros2 bag play`` fails (a wrong path, an unreadable bag) or ``depth_odometry`` exits, the
whole launch shuts down; when the bag has played to its end the nodes keep running for a look
at the result (Ctrl-C ends them).
"""

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    Shutdown,
)
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, ThisLaunchFileDir
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("image", "/camera/image_raw", "Camera image topic in the bag"),
    ("camera_info", "/camera/camera_info", "CameraInfo topic in the bag"),
    ("checkpoint", "", "Model: checkpoint (.pt) or ONNX export folder; empty: params_file value"),
    (
        "params_file",
        PathJoinSubstitution([FindPackageShare("sfm_ros"), "config", "sfm.yaml"]),
        "Parameter file of the depth_odometry node",
    ),
    ("publish_tf", "true", "Broadcast odom -> base_link; false if the bag already has it"),
    ("rviz", "true", "Start RViz with config/sfm.rviz (skipped when rviz2 is not installed)"),
]
PLAY_ARGUMENTS = [
    ("rate", "1.0", "Playback rate of the bag"),
    ("delay", "3.0", "Seconds to wait before playing, while the node loads its model"),
]


def on_player_exit(event, context):
    """A failed ``ros2 bag play`` ends the launch; a finished one leaves the nodes running."""
    if context.is_shutdown:
        return None
    if event.returncode != 0:
        reason = f"ros2 bag play failed (exit code {event.returncode})"
        return [LogInfo(msg=reason + ": shutting down"), Shutdown(reason=reason)]
    return [LogInfo(msg="the bag has played to its end; Ctrl-C stops the nodes")]


def generate_launch_description():
    bag = LaunchConfiguration("bag")
    sfm = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([ThisLaunchFileDir(), "sfm.launch.py"])),
        launch_arguments=[(name, LaunchConfiguration(name)) for name, _, _ in ARGUMENTS]
        + [("use_sim_time", "true")],
    )
    return LaunchDescription(
        [DeclareLaunchArgument("bag", description="Path of the bag to play (required)")]
        + [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description in ARGUMENTS + PLAY_ARGUMENTS
        ]
        + [
            sfm,
            ExecuteProcess(
                cmd=["ros2", "bag", "play", bag, "--clock"]
                + ["--rate", LaunchConfiguration("rate"), "--delay", LaunchConfiguration("delay")],
                output="screen",
                on_exit=on_player_exit,
            ),
        ]
    )

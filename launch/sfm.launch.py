"""Monocular depth and visual odometry: the ``depth_odometry`` node, optionally with RViz.

    ros2 launch sfm_ros sfm.launch.py image:=/camera/image_raw \\
        camera_info:=/camera/camera_info checkpoint:=/path/to/model.pt rviz:=true

Arguments: image, camera_info, params_file, checkpoint, publish_tf, namespace, use_sim_time,
rviz, finetune. ``checkpoint`` and ``publish_tf`` override the parameter file only when given.
"""

from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
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
        "Parameter file of the depth_odometry node",
    ),
    ("checkpoint", "", "Model checkpoint (.pt); empty: the value in params_file"),
    ("publish_tf", "", "Broadcast odom -> base_link (true/false); empty: params_file"),
    ("namespace", "", "Namespace of the node and its topics"),
    ("use_sim_time", "false", "Use /clock (true when replaying a bag with --clock)"),
    ("rviz", "false", "Start RViz with config/sfm.rviz"),
    (
        "finetune",
        "false",
        "Online fine-tuning; reserved: the fine-tuning node is not part of this release",
    ),
]


def _depth_node(context):
    """The node, with the optional overrides that were given (evaluated at launch time)."""
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    if checkpoint:
        overrides["checkpoint"] = ParameterValue(checkpoint, value_type=str)
    publish_tf = LaunchConfiguration("publish_tf")
    if publish_tf.perform(context):
        overrides["publish_tf"] = ParameterValue(publish_tf, value_type=bool)
    image = LaunchConfiguration("image")
    actions = [
        Node(
            package=PACKAGE,
            executable="depth_odometry",
            name="depth_odometry",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[
                ("image", image),
                ("image/compressed", [image, "/compressed"]),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
            output="screen",
        )
    ]
    if LaunchConfiguration("finetune").perform(context).lower() == "true":
        actions.append(LogInfo(msg="finetune:=true is ignored: no fine-tuning node yet"))
    return actions


def generate_launch_description():
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "sfm.rviz"])],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[("image", LaunchConfiguration("image"))],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description in ARGUMENTS
        ]
        + [OpaqueFunction(function=_depth_node), rviz]
    )

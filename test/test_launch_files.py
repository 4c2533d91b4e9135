"""Launch files, parameter file, RViz config and node helpers, checked without ROS.

The launch files run against small stand-ins of ``launch``/``launch_ros`` that record what they
are given, so argument names, remappings and overrides are checked, not only the syntax.
"""

from __future__ import annotations

import array
import ast
import importlib.util
import logging
import os
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.frames import quaternion_from_matrix
from sfm_ros.core.online import OnlineConfig
from sfm_ros.messages import matrix_from_transform
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.frame_pipeline import OUTPUT_TYPES, OUTPUTS
from sfm_ros.ros.node_utils import (
    DepthNodeConfig,
    NodeConfig,
    parameter_specs,
    parameter_value,
    ros_logging_bridge,
)

ROOT = Path(__file__).resolve().parents[1]
NODE_KEY = "/**/depth_odometry"
FINETUNE_KEY = "/**/finetune"


class Recorded:
    """Stand-in for a launch class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(self) is type(other) and (self.args, self.kwargs) == (
            other.args,
            other.kwargs,
        )

    def __repr__(self):
        return f"{type(self).__name__}{self.args}{self.kwargs}"


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context[self.args[0]]


FAKES = {
    "launch.actions": [
        "DeclareLaunchArgument",
        "ExecuteProcess",
        "IncludeLaunchDescription",
        "LogInfo",
        "OpaqueFunction",
        "Shutdown",
    ],
    "launch.launch_description": ["LaunchDescription"],
    "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
    "launch.substitutions": ["PathJoinSubstitution", "ThisLaunchFileDir"],
    "launch_ros.actions": ["Node"],
    "launch_ros.parameter_descriptions": ["ParameterValue"],
    "launch_ros.substitutions": ["FindPackageShare"],
}


INSTALLED = {"sfm_ros", "rviz2"}
"""Packages the stand-in of ament_index_python finds (tests remove rviz2 from it)."""


class PackageNotFoundError(KeyError):
    pass


def get_package_share_directory(name: str) -> str:
    if name not in INSTALLED:
        raise PackageNotFoundError(f"package '{name}' not found")
    return f"/opt/ros/share/{name}"


@pytest.fixture
def fake_launch(monkeypatch):
    """Replace launch, launch_ros and ament_index_python by recording stand-ins; returns
    {class name: class}."""
    classes = {"LaunchConfiguration": LaunchConfiguration}
    for package in ("launch", "launch_ros", "ament_index_python"):
        monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    index = types.ModuleType("ament_index_python.packages")
    index.PackageNotFoundError = PackageNotFoundError
    index.get_package_share_directory = get_package_share_directory
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", index)
    monkeypatch.setattr(sys.modules[__name__], "INSTALLED", set(INSTALLED))
    for module_name, names in FAKES.items():
        module = types.ModuleType(module_name)
        for name in names:
            classes[name] = type(name, (Recorded,), {})
            setattr(module, name, classes[name])
        if module_name == "launch.substitutions":
            module.LaunchConfiguration = LaunchConfiguration
        monkeypatch.setitem(sys.modules, module_name, module)
    return classes


def load_launch(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), ROOT / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entities(description, cls):
    return [e for e in description.args[0] if type(e).__name__ == cls]


def declared(description) -> dict:
    """Launch argument name -> DeclareLaunchArgument."""
    return {e.args[0]: e for e in entities(description, "DeclareLaunchArgument")}


# ---------------------------------------------------------------------- launch files
@pytest.mark.parametrize("name", ["sfm.launch.py", "bag_replay.launch.py"])
def test_launch_file_compiles_and_defines_entry_point(name):
    source = (ROOT / "launch" / name).read_text()
    tree = ast.parse(source)
    compile(source, name, "exec")
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    assert ast.get_docstring(tree)


def test_sfm_launch_arguments_and_node(fake_launch):
    description = load_launch("sfm.launch.py").generate_launch_description()
    args = declared(description)
    assert set(args) >= {
        "image",
        "camera_info",
        "params_file",
        "checkpoint",
        "namespace",
        "use_sim_time",
        "rviz",
        "finetune",
    }
    assert all(arg.kwargs.get("description") for arg in args.values())
    assert args["use_sim_time"].kwargs["default_value"] == "false"

    (opaque,) = entities(description, "OpaqueFunction")
    context = {name: "" for name in args}
    context.update(use_sim_time="false", rviz="false", finetune="false")
    (node,) = opaque.kwargs["function"](context)
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == (
        "sfm_ros",
        "depth_odometry",
        "depth_odometry",
    )
    remaps = dict(kw["remappings"])
    assert remaps["image"] == LaunchConfiguration("image")
    assert remaps["camera_info"] == LaunchConfiguration("camera_info")
    assert remaps["image/compressed"] == [LaunchConfiguration("image"), "/compressed"]
    params_file, overrides = kw["parameters"]
    assert params_file == LaunchConfiguration("params_file")
    # Empty launch arguments leave the parameter file in charge.
    assert set(overrides) == {"use_sim_time"}

    context.update(checkpoint="/models/m.pt", publish_tf="true")
    (node,) = opaque.kwargs["function"](context)
    overrides = node.kwargs["parameters"][1]
    assert overrides["checkpoint"] == fake_launch["ParameterValue"]("/models/m.pt", value_type=str)
    assert overrides["publish_tf"].kwargs == {"value_type": bool}


def test_sfm_launch_finetune_node_and_single_process(fake_launch):
    description = load_launch("sfm.launch.py").generate_launch_description()
    args = declared(description)
    assert args["finetune"].kwargs["default_value"] == "false"
    assert args["single_process"].kwargs["default_value"] == "false"
    (opaque,) = entities(description, "OpaqueFunction")
    context = {name: "" for name in args}
    context.update(use_sim_time="false", finetune="true", single_process="false")
    context.update(checkpoint="/models/m.pt", publish_tf="true")
    depth, finetune = opaque.kwargs["function"](context)
    assert (finetune.kwargs["executable"], finetune.kwargs["name"]) == ("finetune", "finetune")
    # Same inputs, namespace and parameter file; the same starting checkpoint.
    for key in ("package", "namespace", "remappings"):
        assert finetune.kwargs[key] == depth.kwargs[key], key
    params_file, overrides = finetune.kwargs["parameters"]
    assert params_file == LaunchConfiguration("params_file")
    assert set(overrides) == {"use_sim_time", "checkpoint"}
    assert overrides["checkpoint"] == depth.kwargs["parameters"][1]["checkpoint"]

    context.update(single_process="True")
    (combined,) = opaque.kwargs["function"](context)
    assert combined.kwargs["executable"] == "depth_odometry_finetune"
    assert "name" not in combined.kwargs  # a name would rename both nodes of the process
    assert combined.kwargs["remappings"] == depth.kwargs["remappings"]
    assert combined.kwargs["parameters"] == depth.kwargs["parameters"]

    context.update(finetune="false")
    actions = opaque.kwargs["function"](context)
    assert [type(a).__name__ for a in actions] == ["Node", "LogInfo"]


def test_sfm_launch_rviz_is_optional_and_needs_rviz2(fake_launch):
    description = load_launch("sfm.launch.py").generate_launch_description()
    assert declared(description)["rviz"].kwargs["default_value"] == "false"
    (opaque,) = entities(description, "OpaqueFunction")
    context = {name: "" for name in declared(description)}
    context.update(use_sim_time="false", rviz="true")
    depth, rviz = opaque.kwargs["function"](context)
    assert rviz.kwargs["executable"] == "rviz2" and depth.kwargs["executable"] == "depth_odometry"
    flag, path = rviz.kwargs["arguments"]
    assert flag == "-d" and path.args[0][1:] == ["config", "sfm.rviz"]
    assert "on_exit" not in rviz.kwargs  # closing RViz ends nothing else

    INSTALLED.discard("rviz2")  # a headless machine: a note instead of a failed launch
    depth, note = opaque.kwargs["function"](context)
    assert type(note).__name__ == "LogInfo" and "rviz2 is not installed" in note.kwargs["msg"]
    context.update(rviz="false")
    assert [a.kwargs["executable"] for a in opaque.kwargs["function"](context)] == [
        "depth_odometry"
    ]


def test_sfm_launch_ends_when_depth_odometry_exits(fake_launch):
    description = load_launch("sfm.launch.py").generate_launch_description()
    (opaque,) = entities(description, "OpaqueFunction")
    context = {name: "" for name in declared(description)}
    context.update(use_sim_time="false", finetune="true")
    shutdown = fake_launch["Shutdown"](reason="depth_odometry exited")
    depth, finetune = opaque.kwargs["function"](context)
    assert depth.kwargs["on_exit"] == shutdown
    assert "on_exit" not in finetune.kwargs  # the depth node keeps running without it
    context.update(single_process="true")
    (combined,) = opaque.kwargs["function"](context)
    assert combined.kwargs["on_exit"] == shutdown


def test_bag_replay_plays_with_clock_and_includes_sfm_launch(fake_launch):
    description = load_launch("bag_replay.launch.py").generate_launch_description()
    args = declared(description)
    assert "default_value" not in args["bag"].kwargs  # required
    assert args["image"].kwargs["default_value"] == "/camera/image_raw"
    assert args["camera_info"].kwargs["default_value"] == "/camera/camera_info"

    (play,) = entities(description, "ExecuteProcess")
    cmd = play.kwargs["cmd"]
    assert cmd[:5] == ["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock"]

    (include,) = entities(description, "IncludeLaunchDescription")
    source = include.args[0].args[0]
    assert source.args[0][-1] == "sfm.launch.py"
    passed = dict(include.kwargs["launch_arguments"])
    assert passed["use_sim_time"] == "true"
    assert args["rviz"].kwargs["default_value"] == "true"
    assert passed["rviz"] == LaunchConfiguration("rviz")  # rviz:=false replays without RViz
    # Everything passed on is an argument of sfm.launch.py.
    sfm_args = declared(load_launch("sfm.launch.py").generate_launch_description())
    assert set(passed) <= set(sfm_args)


def test_bag_replay_shuts_down_when_the_player_fails(fake_launch):
    module = load_launch("bag_replay.launch.py")
    (play,) = entities(module.generate_launch_description(), "ExecuteProcess")
    on_exit = play.kwargs["on_exit"]
    assert on_exit is module.on_player_exit
    running, stopping = SimpleNamespace(is_shutdown=False), SimpleNamespace(is_shutdown=True)
    note, shutdown = on_exit(SimpleNamespace(returncode=1), running)
    assert shutdown == fake_launch["Shutdown"](reason="ros2 bag play failed (exit code 1)")
    assert "shutting down" in note.kwargs["msg"]
    (note,) = on_exit(SimpleNamespace(returncode=0), running)  # played to the end
    assert type(note).__name__ == "LogInfo" and "Ctrl-C" in note.kwargs["msg"]
    assert on_exit(SimpleNamespace(returncode=-2), stopping) is None  # Ctrl-C: nothing to add


def test_console_script_points_at_node_main():
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and "=" in n.value
    ]
    assert "depth_odometry = sfm_ros.ros.depth_odometry_node:main" in scripts
    assert "finetune = sfm_ros.ros.finetune_node:main" in scripts
    assert "depth_odometry_finetune = sfm_ros.ros.finetune_node:main_combined" in scripts
    for module, mains in (("depth_odometry_node", {"main"}),
                          ("finetune_node", {"main", "main_combined"})):  # fmt: skip
        node = ast.parse((ROOT / "sfm_ros" / "ros" / f"{module}.py").read_text())
        assert mains <= {n.name for n in node.body if isinstance(n, ast.FunctionDef)}


# ---------------------------------------------------------------------- node source
def test_node_publishes_every_pipeline_output_and_documents_it():
    source = (ROOT / "sfm_ros" / "ros" / "depth_odometry_node.py").read_text()
    tree = ast.parse(source)
    (classes,) = [
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "MESSAGE_CLASSES"
    ]
    assert {k.value for k in classes.keys} == set(OUTPUT_TYPES.values())
    doc = ast.get_docstring(tree)
    for topic in [*OUTPUTS, "image", "camera_info", "external_odom", "imu", "model_update"]:
        assert topic in doc, topic


# ---------------------------------------------------------------------- parameter file
def load_params(key: str = NODE_KEY) -> dict:
    data = yaml.safe_load((ROOT / "config" / "sfm.yaml").read_text())
    assert list(data) == [NODE_KEY, FINETUNE_KEY]
    return data[key]["ros__parameters"]


def test_params_file_lists_every_parameter_with_its_default():
    params = load_params()
    specs = parameter_specs(PipelineConfig) + parameter_specs(DepthNodeConfig)
    # Empty lists cannot be written in a ROS parameter file: they stay commented out.
    listed = {s.name for s in specs if s.default != []}
    assert set(params) == listed
    commented = (ROOT / "config" / "sfm.yaml").read_text()
    for spec in specs:
        if spec.default == []:
            assert f"# {spec.name}:" in commented
            continue
        value = params[spec.name]
        assert type(value) is type(spec.default), spec.name  # rclpy rejects int for double
        assert value == spec.default, spec.name
    assert (
        PipelineConfig.from_mapping(
            {k: v for k, v in params.items() if k in PipelineConfig.defaults()}
        )
        == PipelineConfig()
    )


def test_params_file_lists_every_finetune_parameter_with_its_default():
    params = load_params(FINETUNE_KEY)
    specs = parameter_specs(OnlineConfig) + parameter_specs(NodeConfig)
    # The camera input options of finetune_node.InputConfig (rclpy-only module) are the
    # depth node's: use_compressed, and fallback_intrinsics commented out.
    assert set(params) == {s.name for s in specs} | {"use_compressed"}
    assert params["use_compressed"] is False
    for spec in specs:
        value = params[spec.name]
        assert type(value) is type(spec.default), spec.name
        assert value == spec.default, spec.name
    assert OnlineConfig().replace(**{s.name: params[s.name] for s in parameter_specs(OnlineConfig)})
    section = (ROOT / "config" / "sfm.yaml").read_text().split(FINETUNE_KEY)[1]
    assert "# fallback_intrinsics:" in section


def test_node_name_matches_params_file_key_in_any_namespace():
    # rclpy turns '/**' into the regex (/\w+)* when matching node names.
    pattern = NODE_KEY.replace("/**", r"(/\w+)*")
    import re

    assert re.fullmatch(pattern, "/depth_odometry")
    assert re.fullmatch(pattern, "/robot1/depth_odometry")
    assert not re.fullmatch(pattern, "/depth_odometry_2")


# ---------------------------------------------------------------------- rviz
def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load((ROOT / "config" / "sfm.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "odom"
    displays = {d["Name"]: d for d in manager["Displays"]}
    classes = [d["Class"] for d in displays.values()]
    for cls in ("Image", "PointCloud2", "Odometry", "TF"):
        assert f"rviz_default_plugins/{cls}" in classes
    topics = {d["Class"].split("/")[1]: [] for d in displays.values()}
    for d in displays.values():
        if "Topic" in d:
            topics[d["Class"].split("/")[1]].append(d["Topic"]["Value"])
    assert sorted(topics["Image"]) == ["depth/colormap", "image"]
    assert topics["PointCloud2"] == ["points"] and topics["Odometry"] == ["odom"]
    for d in displays.values():
        if "Topic" in d and d["Topic"]["Value"] != "image":
            assert d["Topic"]["Value"] in OUTPUTS


# ---------------------------------------------------------------------- node helpers
def test_parameter_specs_cover_every_field_with_a_type():
    specs = {s.name: s for s in parameter_specs(PipelineConfig)}
    assert set(specs) == set(PipelineConfig.defaults())
    assert specs["max_depth"].type_name == "DOUBLE"
    assert specs["point_decimation"].type_name == "INTEGER"
    assert specs["publish_tf"].type_name == "BOOL"
    assert specs["checkpoint"].type_name == "STRING"
    assert specs["fallback_intrinsics"].type_name is None  # dynamic: [] has no ROS type
    assert all(s.description for s in specs.values())


def test_parameter_specs_reject_undescribed_or_non_ros_fields():
    @dataclass
    class NoDescription:
        x: int = 1

    @dataclass
    class NotRos:
        x: dict = field(default_factory=dict, metadata={"description": "a dict"})

    with pytest.raises(ConfigError, match="'x'.*no description"):
        parameter_specs(NoDescription)
    with pytest.raises(ConfigError, match="'x'.*not a ROS value"):
        parameter_specs(NotRos)


def test_parameter_value_normalises_rclpy_values():
    assert parameter_value(None, [1.0]) == [1.0]
    assert parameter_value(array.array("d", [1.0, 2.5]), []) == [1.0, 2.5]
    assert parameter_value(array.array("q", [500, 320]), []) == [500, 320]
    assert parameter_value(False, True) is False
    values = {"fallback_intrinsics": parameter_value(array.array("q", [500, 500, 320, 240]), [])}
    cfg = PipelineConfig.from_mapping(values)
    assert cfg.fallback_intrinsics == [500.0, 500.0, 320.0, 240.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_qos": "fast"}, "image_qos"),
        ({"queue_depth": 0}, "queue_depth"),
        ({"diagnostics_period": 0.0}, "diagnostics_period"),
        ({"max_observed_frames": -1}, "max_observed_frames"),
    ],
)
def test_node_config_validation(kwargs, match):
    DepthNodeConfig().validate()
    with pytest.raises(ConfigError, match=match):
        DepthNodeConfig(**kwargs).validate()


def test_matrix_from_transform_round_trips():
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    msg = SimpleNamespace(
        transform=SimpleNamespace(
            translation=SimpleNamespace(x=0.1, y=-0.2, z=1.5),
            rotation=SimpleNamespace(x=x, y=y, z=z, w=w),
        )
    )
    T = matrix_from_transform(msg)
    np.testing.assert_allclose(T[:3, 3], [0.1, -0.2, 1.5])
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.abs(quaternion_from_matrix(T) @ q), 1.0, atol=1e-12)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


def test_logging_bridge_formats_and_maps_levels():
    calls = []
    ros_logger = SimpleNamespace(
        **{
            level: (lambda msg, level=level: calls.append((level, msg)))
            for level in ("debug", "info", "warning", "error")
        }
    )
    log = ros_logging_bridge(ros_logger, "sfm_ros.test_bridge")
    log.info("loaded %s (version %d)", "m.pt", 3)
    log.warning("skipping")
    log.error("bad")
    log.debug("detail")
    assert calls == [
        ("info", "loaded m.pt (version 3)"),
        ("warning", "skipping"),
        ("error", "bad"),
        ("debug", "detail"),
    ]
    assert not logging.getLogger("sfm_ros.test_bridge").propagate


# ---------------------------------------------------------------------- pytest on ROS machines
def test_pytest_ignores_the_launch_testing_plugins_of_ros(tmp_path):
    """ROS 2 installs pytest plugins named launch_testing (Humble: breaks pytest >= 8) and
    launch_ros (Jazzy: a hook pytest does not know). Stand-ins with that unknown hook must not
    stop a run that uses this package's pytest options, as colcon's run from the package does."""
    site = tmp_path / "site"
    dist = site / "fake_launch_testing_ros-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ltr\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest11]\nlaunch_ros = fake_ltr_entrypoint\nlaunch_testing = fake_lt_hooks\n"
    )
    for module in ("fake_ltr_entrypoint", "fake_lt_hooks"):
        (site / f"{module}.py").write_text(
            "def pytest_launch_collect_makemodule(path, parent, entrypoint):\n    return None\n"
        )
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_one.py").write_text("def test_one():\n    pass\n")
    (tmp_path / "plain.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(site)

    def pytest(config: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pytest", "-c", str(config), "--rootdir", str(tmp_path),
               "-p", "no:cacheprovider", str(tests)]  # fmt: skip
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    broken = pytest(tmp_path / "plain.ini")  # what Jazzy users saw
    assert broken.returncode != 0
    assert "pytest_launch_collect_makemodule" in broken.stdout + broken.stderr
    ours = pytest(ROOT / "pyproject.toml")
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert "1 passed" in ours.stdout

"""package.xml and setup.py declare what the package imports, under the keys that provide it."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from import_scan import absolute_imports

ROOT = Path(__file__).resolve().parents[1]

# Third-party Python modules: (rosdep key, pip distribution). The keys are rosdistro's
# (rosdep/base.yaml, rosdep/python.yaml); tensorboard and rosbags have pip keys only.
PYTHON = {
    "torch": ("python3-torch", "torch"),
    "numpy": ("python3-numpy", "numpy"),
    "yaml": ("python3-yaml", "pyyaml"),
    "tqdm": ("python3-tqdm", "tqdm"),
    "PIL": ("python3-pil", "pillow"),
    "cv2": ("python3-opencv", "opencv-python-headless"),
    "matplotlib": ("python3-matplotlib", "matplotlib"),
    "rosbags": ("python3-rosbags-pip", "rosbags"),
    "torch.utils.tensorboard": ("python3-tensorboard-pip", "tensorboard"),
}
# Imported only where installed (without it the same work runs in PyTorch): module ->
# (pip distribution, the setup.py extra that installs it for the tests). Triton comes with
# PyTorch's CUDA builds; rosdistro has no key for it.
OPTIONAL = {"triton": ("triton", "test")}
# ROS Python modules whose package has another name (the rest are their own package).
ROS_PACKAGE = {"tf2_ros": "tf2_ros_py"}
# Declared without an import: tools the launch files start.
RUN_ONLY = {"rviz2", "ros2bag"}


def _imports() -> set[str]:
    """Top-level third-party modules imported by the package and its launch files
    (``torch.utils.tensorboard`` kept whole: it needs its own distribution)."""
    files = [*(ROOT / "sfm_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py")]
    found = set()
    for path in files:
        for _, name in absolute_imports(path):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top != "sfm_ros":
                found.add(name if name.startswith("torch.utils.tensorboard") else top)
    return found


def _exec_depends() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root.iter("exec_depend")}


def _setup_keyword(name: str) -> list[str] | dict[str, list[str]]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py has no {name}")


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~ ;]", requirement)[0]


def _install_requires() -> set[str]:
    return {_distribution(req) for req in _setup_keyword("install_requires")}


def test_every_import_is_declared_under_the_key_that_provides_it():
    imports, depends, requires = _imports(), _exec_depends(), _install_requires()
    assert {"torch", "rclpy", "tf2_ros", "launch_ros"} <= imports  # the scan sees them
    missing = []
    for module in sorted(imports):
        if module in OPTIONAL:
            distribution, extra = OPTIONAL[module]
            extras = {_distribution(req) for req in _setup_keyword("extras_require")[extra]}
            missing += [f"setup.py extra {extra}: {distribution}"] * (distribution not in extras)
        elif module in PYTHON:
            key, distribution = PYTHON[module]
            missing += [f"package.xml {key}"] * (key not in depends)
            missing += [f"setup.py {distribution}"] * (distribution not in requires)
        else:  # a ROS package (rclpy, message packages, launch ...)
            key = ROS_PACKAGE.get(module, module)
            missing += [f"package.xml {key}"] * (key not in depends)
    assert not missing, f"imported but not declared: {missing}"


def test_every_declared_dependency_is_used():
    imports = _imports()
    provided = {PYTHON[m][0] if m in PYTHON else ROS_PACKAGE.get(m, m) for m in imports}
    unused = _exec_depends() - provided - RUN_ONLY
    assert not unused, f"declared in package.xml but never imported or run: {sorted(unused)}"
    distributions = {distribution for _, distribution in PYTHON.values()}
    assert _install_requires() <= distributions, "setup.py requires what nothing imports"

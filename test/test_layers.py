"""The package's layers: each imports only the ones below it (docs/ARCHITECTURE.md).

    core < messages < pipeline < ros < (cli, demo)

Checked twice: statically on every import statement (also the lazy ones inside functions), and
by importing each layer in a fresh interpreter where the layers above it cannot be imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from import_scan import absolute_imports

PACKAGE = Path(__file__).resolve().parents[1] / "sfm_ros"
LAYERS = ["core", "messages", "pipeline", "ros"]
TOP = len(LAYERS)
APPLICATIONS = ("cli", "demo")  # sfm_ros/cli.py, sfm_ros/demo.py: above every layer


def layer_of(module: str) -> int | None:
    """Rank of a dotted ``sfm_ros...`` name; None for ``sfm_ros`` itself (``__version__``)."""
    parts = module.split(".")
    if parts[0] != "sfm_ros" or len(parts) == 1:
        return None
    if parts[1] in APPLICATIONS:
        return TOP
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``sfm_ros`` or ``rclpy`` import in ``path``."""
    return [
        (line, n) for line, n in absolute_imports(path) if n.split(".")[0] in ("sfm_ros", "rclpy")
    ]


def test_every_import_points_down_the_layers():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = layer_of(module.removesuffix(".__init__"))
        for line, name in imported_modules(path):
            if name.startswith("rclpy"):
                if own != LAYERS.index("ros"):
                    violations.append(f"{path.name}:{line} imports {name} outside sfm_ros.ros")
                continue
            target = layer_of(name)
            if own is not None and target is not None and target > own:
                violations.append(f"{module}:{line} imports {name} (a higher layer)")
    assert not violations, "\n".join(violations)


def test_the_static_check_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sfm_ros.pipeline import frame_pipeline\n")
    assert imported_modules(bad) == [(2, "sfm_ros.pipeline")]
    assert layer_of("sfm_ros.pipeline") > layer_of("sfm_ros.core.geometry")


BLOCKER = """
import importlib.abc, sys
blocked = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError("layer rule: " + name + " is above the layer under test")
sys.meta_path.insert(0, Block())
import importlib, pkgutil
package = importlib.import_module({package!r})
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print("ok")
"""


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_each_layer_imports_with_the_layers_above_it_blocked(layer):
    above = [f"sfm_ros.{name}" for name in LAYERS[LAYERS.index(layer) + 1 :]]
    above += ["sfm_ros.cli", "sfm_ros.demo", "rclpy"]
    code = BLOCKER.format(blocked=above, package=f"sfm_ros.{layer}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]

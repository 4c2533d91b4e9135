"""Shared fixtures: tiny configurations, a tiny checkpoint, the optional real data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core.lie import so3_exp

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of small-tensor tests: faster, and immune to a loaded
    machine's stalls (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real KITTI/NYU clips); tests using it skip on users' clones."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real sample clips are not part of the repo)")
    return SHARED_DATA


def tiny_overrides(out_dir: Path, steps: int = 4, **extra: object) -> list[str]:
    """Config overrides for a seconds-long CPU run on a small synthetic street sequence."""
    values = {
        "data.train": "[synthetic:street:10:0]",
        "data.val": "[synthetic:street:6:100]",
        "data.height": 64,
        "data.width": 96,
        "data.min_motion": 0.0,
        "model.depth_net": "resnet18_half",
        "optim.steps": steps,
        "optim.batch_size": 2,
        "log.out_dir": str(out_dir),
        "log.log_every": 1,
        "log.image_every": 2,
        "log.val_every": 0,
        "log.save_every": 2,
        "log.val_max_snippets": 2,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a 4-step run (weights barely trained, but real and loadable)."""
    from sfm_ros.core.config import load_config
    from sfm_ros.core.train import Trainer

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = load_config(overrides=tiny_overrides(out))
    Trainer(cfg, progress=False).run()
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained 32x64 networks: cheap steps for the tests that do not need a trained model."""
    from sfm_ros.core.checkpoint import (
        arch_from_config,
        atomic_torch_save,
        build_networks,
        make_checkpoint,
    )
    from sfm_ros.core.config import TrainConfig

    cfg = TrainConfig.from_preset("default")
    cfg.data.height, cfg.data.width, cfg.model.depth_net = 32, 64, "resnet18_half"
    arch = arch_from_config(cfg.model, cfg.data)
    torch.manual_seed(0)
    depth_net, pose_net = build_networks(arch)
    path = tmp_path_factory.mktemp("small") / "small.pt"
    atomic_torch_save(make_checkpoint(7, arch, cfg.to_dict(), depth_net, pose_net), path)
    return path


@pytest.fixture
def ros():
    """An initialised rclpy context for the duration of a test (ROS machines only)."""
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    yield
    rclpy.try_shutdown()


def rigid(rotvec_deg: tuple[float, float, float], t: tuple[float, float, float]) -> np.ndarray:
    """(4, 4) transform of an axis-angle (degrees) and a translation (m)."""
    T = np.eye(4)
    T[:3, :3] = so3_exp(np.radians(np.asarray(rotvec_deg, dtype=np.float64)))
    T[:3, 3] = t
    return T


def tf_message(edges: list[tuple[str, str, np.ndarray]], stamp_ns: int = 0):
    """``tf2_msgs/TFMessage`` (rosbags) of (parent, child, T_parent_child) edges."""
    types = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
    return cv.tf_message(
        types,
        [cv.transform_stamped(types, cv.header(types, stamp_ns, p), c, T) for p, c, T in edges],
    )


def imu_message(stamp_ns: int, omega_rad_s, frame: str = "imu_link"):
    """``sensor_msgs/Imu`` (rosbags) with angular velocity only (orientation and acceleration
    marked absent, as Imu.msg defines)."""
    types = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
    return cv.imu_msg(types, cv.header(types, int(stamp_ns), frame), omega_rad_s)

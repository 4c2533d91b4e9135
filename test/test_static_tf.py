"""`TransformTree`: transforms between frames composed through their common ancestor."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from conftest import rigid, tf_message
from sfm_ros import messages as cv
from sfm_ros.core.errors import InputError
from sfm_ros.core.frames import T_BODY_OPTICAL
from sfm_ros.core.lie import se3_inverse
from sfm_ros.messages.static_tf import TransformTree

TYPES = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))


# base_link -> camera_link -> camera_optical_frame, base_link -> imu_link (upside down)
T_BASE_CAMLINK = rigid((0.0, 5.0, 0.0), (0.2, 0.0, 0.3))  # pitched 5 degrees down
T_CAMLINK_OPTICAL = np.array(T_BODY_OPTICAL)
T_BASE_IMU = rigid((180.0, 0.0, 0.0), (-0.1, 0.05, 0.1))
T_OPTICAL_IMU = se3_inverse(T_BASE_CAMLINK @ T_CAMLINK_OPTICAL) @ T_BASE_IMU


@pytest.fixture
def tree() -> TransformTree:
    tree = TransformTree()
    added = tree.add_message(
        tf_message(
            [
                ("base_link", "camera_link", T_BASE_CAMLINK),
                ("camera_link", "camera_optical_frame", T_CAMLINK_OPTICAL),
                ("base_link", "imu_link", T_BASE_IMU),
                ("map", "beacon", rigid((0.0, 0.0, 30.0), (1.0, 2.0, 0.0))),  # another tree
            ]
        )
    )
    assert added == len(tree) == 4
    return tree


def test_composes_a_chain_through_the_common_ancestor(tree):
    np.testing.assert_allclose(tree.lookup("camera_optical_frame", "imu_link"), T_OPTICAL_IMU,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(tree.lookup("imu_link", "camera_optical_frame"),
                               se3_inverse(T_OPTICAL_IMU), atol=1e-12)  # fmt: skip
    # along one branch, both ways, and a leading slash (ROS 1 names) ignored
    T_base_optical = T_BASE_CAMLINK @ T_CAMLINK_OPTICAL
    np.testing.assert_allclose(tree.lookup("base_link", "/camera_optical_frame"), T_base_optical,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(tree.lookup("camera_optical_frame", "base_link"),
                               se3_inverse(T_base_optical), atol=1e-12)  # fmt: skip
    # the rotation maps IMU axes into the optical frame: the IMU's z (upside down: pointing
    # down) is the optical y (down) tilted by the camera's pitch
    z_imu_in_optical = T_OPTICAL_IMU[:3, :3] @ [0.0, 0.0, 1.0]
    np.testing.assert_allclose(z_imu_in_optical @ [0.0, 1.0, 0.0], np.cos(np.radians(5.0)),
                               atol=1e-12)  # fmt: skip


def test_identity_and_unconnected_frames(tree):
    np.testing.assert_array_equal(tree.lookup("imu_link", "imu_link"), np.eye(4))
    np.testing.assert_array_equal(tree.lookup("not_in_tf", "not_in_tf"), np.eye(4))
    assert tree.lookup("camera_optical_frame", "beacon") is None  # two trees
    assert tree.lookup("map", "imu_link") is None
    assert tree.lookup("camera_optical_frame", "unknown") is None
    assert tree.lookup("", "imu_link") is None and tree.lookup("", "") is None
    np.testing.assert_allclose(tree.lookup("map", "beacon")[:3, 3], [1.0, 2.0, 0.0])


def test_overwrite_loops_and_invalid_transforms(tree, caplog):
    moved = rigid((0.0, 0.0, 90.0), (0.0, 0.0, 0.0))
    tree.add("base_link", "imu_link", moved, overwrite=False)  # the first one is kept
    np.testing.assert_allclose(tree.lookup("base_link", "imu_link"), T_BASE_IMU, atol=1e-12)
    tree.add("base_link", "imu_link", moved)
    np.testing.assert_allclose(tree.lookup("base_link", "imu_link"), moved, atol=1e-12)
    tree.add("camera_optical_frame", "base_link", np.eye(4))  # a loop: lookups still end
    assert tree.lookup("camera_optical_frame", "beacon") is None
    with pytest.raises(InputError):
        tree.add("a", "a", np.eye(4))
    with pytest.raises(InputError):
        tree.add("a", "b", np.full((4, 4), np.nan))
    msg = tf_message([("a", "b", np.eye(4)), ("a", "c", np.eye(4))])
    msg.transforms[0].transform.rotation = TYPES.Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)
    with caplog.at_level(logging.WARNING):
        assert TransformTree().add_message(msg) == 1
    assert "skipping a transform a <- b" in caplog.text

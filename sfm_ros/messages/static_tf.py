"""Transforms of a recording (``tf2_msgs/TFMessage`` on ``/tf_static``) -> ``T_target_source``.

TF is a tree: every child frame has one parent. `TransformTree` keeps one ``T_parent_child`` per
child and composes the transform between two frames through their nearest common ancestor, as
tf2's ``lookup_transform(target, source)`` does, without time: it is meant for rigid (static)
transforms. Frame names lose a leading ``/`` (ROS 1 bags).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.lie import se3_inverse
from sfm_ros.messages.motion import matrix_from_transform

log = logging.getLogger(__name__)

TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"


def _frame(name: str) -> str:
    return str(name).lstrip("/")


class TransformTree:
    """Parent -> child transforms; `lookup` composes them between any two connected frames."""

    def __init__(self) -> None:
        self._parents: dict[str, tuple[str, np.ndarray]] = {}
        """child -> (parent, (4, 4) T_parent_child)."""

    def __len__(self) -> int:
        return len(self._parents)

    def __contains__(self, frame: str) -> bool:
        """Whether ``frame`` is the child of a transform."""
        return _frame(frame) in self._parents

    def add(
        self, parent: str, child: str, T_parent_child: np.ndarray, overwrite: bool = True
    ) -> None:
        """Add one (4, 4) transform; with ``overwrite`` False a child's earlier one is kept."""
        parent, child = _frame(parent), _frame(child)
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise InputError(f"{parent} <- {child}: need a finite (4, 4) transform, got {T}")
        if not parent or not child or parent == child:
            raise InputError(f"a transform needs two different frames, got {parent!r} <- {child!r}")
        if overwrite or child not in self._parents:
            self._parents[child] = (parent, T)

    def add_message(self, msg: Any, overwrite: bool = True) -> int:
        """Add the transforms of a ``tf2_msgs/TFMessage`` (field-based); returns how many were
        added. Invalid ones (empty frames, a zero quaternion) are skipped with a warning."""
        added = 0
        for tf in msg.transforms:
            try:
                T = matrix_from_transform(tf)
                self.add(tf.header.frame_id, tf.child_frame_id, T, overwrite)
            except InputError as exc:
                log.warning("skipping a transform %s <- %s: %s", tf.header.frame_id,
                            tf.child_frame_id, exc)  # fmt: skip
                continue
            added += 1
        return added

    def _ancestors(self, frame: str) -> dict[str, np.ndarray]:
        """``frame`` and its ancestors -> ``T_ancestor_frame``, nearest first."""
        chain, T = {frame: np.eye(4)}, np.eye(4)
        while frame in self._parents:
            frame, T_parent_child = self._parents[frame]
            if frame in chain:  # a loop (not a tree): stop climbing
                break
            T = T_parent_child @ T
            chain[frame] = T
        return chain

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """(4, 4) ``T_target_source`` (maps source coordinates into target's); the identity for
        the same frame; None where the two frames are not connected (or a name is empty)."""
        target, source = _frame(target), _frame(source)
        if not target or not source:
            return None
        if target == source:
            return np.eye(4)
        up_source = self._ancestors(source)
        for ancestor, T_ancestor_target in self._ancestors(target).items():
            if ancestor in up_source:  # the nearest common ancestor
                return se3_inverse(T_ancestor_target) @ up_source[ancestor]
        return None

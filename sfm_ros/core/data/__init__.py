"""Frame sequences (KITTI, image folders, in-memory) and training snippets (bags: messages)."""

from sfm_ros.core.data.augment import (
    color_jitter,
    flip_pose,
    horizontal_flip,
    random_scale_crop,
    resize,
)
from sfm_ros.core.data.folder import FolderSequence, read_intrinsics_file
from sfm_ros.core.data.kitti import KittiOdometrySequence, KittiRawSequence, read_calib_file
from sfm_ros.core.data.sequence import (
    BagReader,
    Frame,
    FrameSequence,
    InMemorySequence,
    has_depth,
    has_poses,
    load_image,
    open_sequences,
    read_pose_file,
)
from sfm_ros.core.data.snippets import SnippetDataset

__all__ = [
    "BagReader",
    "Frame",
    "FrameSequence",
    "FolderSequence",
    "InMemorySequence",
    "KittiOdometrySequence",
    "KittiRawSequence",
    "SnippetDataset",
    "color_jitter",
    "flip_pose",
    "has_depth",
    "has_poses",
    "horizontal_flip",
    "load_image",
    "open_sequences",
    "random_scale_crop",
    "read_calib_file",
    "read_intrinsics_file",
    "read_pose_file",
    "resize",
]

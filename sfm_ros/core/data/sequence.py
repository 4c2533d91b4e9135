"""Frames, the `FrameSequence` protocol, an in-memory sequence and layout detection.

A `Frame` is one image with the intrinsics that go with it, its stamp and, when a dataset has
them, the ground-truth camera pose and depth. Readers for KITTI and image folders live
in sibling modules; `open_sequences` picks the right one from what a path contains. Bags are
read one layer up (`sfm_ros.messages.bag_dataset`), which hands its reader in as ``bag_reader``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from sfm_ros.core.errors import DatasetError

BagReader = Callable[..., "FrameSequence"]
"""Opens a bag path with the keywords of `open_sequences` (see `sfm_ros.messages`)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BAG_SUFFIXES = (".bag", ".db3", ".mcap")
DEFAULT_PERIOD_NS = 100_000_000  # 10 Hz, the KITTI frame rate

ACCEPTED_LAYOUTS = (
    "a rosbag2 folder (metadata.yaml), a .db3/.mcap file or a ROS 1 .bag file; "
    "a KITTI odometry root (sequences/NN/image_0|image_2 + calib.txt) or one sequence folder; "
    "a KITTI raw date folder (calib_cam_to_cam.txt + <drive>/image_02/data) or one drive folder; "
    "a folder of .png/.jpg images with intrinsics.txt, K.txt or calib.txt; "
    "or a folder whose sub-folders (two levels deep at most) are any of these"
)


@dataclass
class Frame:
    """One camera frame.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        K: (3, 3) float64 intrinsics of ``image``.
        stamp_ns: acquisition time in integer nanoseconds.
        T_world_cam: (4, 4) float64 camera-to-world pose (optical frame), or None.
        depth_m: (H, W) float32 depth in metres along z, 0 where unknown, or None.
    """

    image: np.ndarray
    K: np.ndarray
    stamp_ns: int
    T_world_cam: np.ndarray | None = None
    depth_m: np.ndarray | None = None


@runtime_checkable
class FrameSequence(Protocol):
    """A finite, randomly accessible sequence of frames in time order.

    Implementations may also expose ``has_poses`` and ``has_depth`` (bool) so that callers need
    not load a frame to learn whether ground truth exists.
    """

    name: str

    def __len__(self) -> int: ...

    def load(self, i: int) -> Frame: ...


def has_poses(seq: FrameSequence) -> bool:
    """Whether the frames of ``seq`` carry ``T_world_cam`` (loads frame 0 if not declared)."""
    flag = getattr(seq, "has_poses", None)
    return bool(flag) if flag is not None else seq.load(0).T_world_cam is not None


def has_depth(seq: FrameSequence) -> bool:
    """Whether the frames of ``seq`` carry ``depth_m`` (loads frame 0 if not declared)."""
    flag = getattr(seq, "has_depth", None)
    return bool(flag) if flag is not None else seq.load(0).depth_m is not None


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 RGB."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.dtype != np.uint8:
        raise DatasetError(
            f"expected a uint8 grey, RGB or RGBA image, got {image.dtype} "
            f"array of shape {image.shape}"
        )
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def load_image(path: Path | BinaryIO) -> np.ndarray:
    """Read a PNG/JPEG file (or file object) as (H, W, 3) uint8 RGB; grey is replicated.

    16-bit images keep their 8 most significant bits.
    """
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I"):
                return to_rgb((np.asarray(im, dtype=np.uint32) >> 8).astype(np.uint8))
            return to_rgb(np.asarray(im.convert("L" if im.mode in ("L", "1") else "RGB")))
    except OSError as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err


def list_images(folder: Path) -> list[Path]:
    """Image files (png/jpg) directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_pose_file(path: Path) -> np.ndarray:
    """KITTI pose file (12 numbers a line, row-major 3x4 ``T_world_cam``) -> (N, 4, 4) float64."""
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DatasetError(f"cannot parse pose file {path}: {err}") from err
    if rows.shape[1] != 12:
        raise DatasetError(f"pose file {path} must have 12 numbers a line, got {rows.shape[1]}")
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :] = rows.reshape(-1, 3, 4)
    return T


def read_times_file(path: Path) -> np.ndarray:
    """File with one time in seconds a line -> (N,) int64 nanoseconds."""
    try:
        seconds = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as err:
        raise DatasetError(f"cannot parse times file {path}: {err}") from err
    return np.round(seconds.reshape(-1) * 1e9).astype(np.int64)


def read_stamps(
    path: Path, n: int, reader: Callable[[Path], np.ndarray] = read_times_file
) -> np.ndarray:
    """Int64 nanosecond stamps of ``n`` frames from a side file (``reader``; at least ``n``
    entries), or ``DEFAULT_PERIOD_NS`` apart from 0 where the file does not exist."""
    if not path.is_file():
        return np.arange(n, dtype=np.int64) * DEFAULT_PERIOD_NS
    stamps = reader(path)
    check_length(path, path.name, len(stamps), n)
    return stamps


def check_length(path: Path, what: str, n: int, expected: int) -> None:
    """Raise `DatasetError` unless a side file of ``path`` has at least ``expected`` entries."""
    if n < expected:
        raise DatasetError(f"{path}: {what} has {n} entries but there are {expected} images")


class InMemorySequence:
    """Frames held in memory, e.g. from the synthetic renderer or a decoded bag.

    Args:
        name: sequence name.
        images: (N, H, W, 3) or (N, H, W) uint8, or a list of such frames (sizes may differ).
        K: (3, 3) intrinsics shared by all frames, or (N, 3, 3).
        stamps_ns: (N,) integer nanoseconds.
        T_world_cam: optional (N, 4, 4) camera-to-world poses.
        depth_m: optional (N, H, W) float32 depth in metres (0 = unknown), or a list.
    """

    def __init__(
        self,
        name: str,
        images: np.ndarray | Sequence[np.ndarray],
        K: np.ndarray,
        stamps_ns: np.ndarray | Sequence[int],
        T_world_cam: np.ndarray | None = None,
        depth_m: np.ndarray | Sequence[np.ndarray] | None = None,
    ) -> None:
        self.name = name
        self.images = [to_rgb(np.asarray(im)) for im in images]
        n = len(self.images)
        K = np.asarray(K, dtype=np.float64)
        self.K = np.broadcast_to(K, (n, 3, 3)) if K.shape == (3, 3) else K
        self.stamps_ns = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        self.T_world_cam = None if T_world_cam is None else np.asarray(T_world_cam, np.float64)
        self.depth_m = None if depth_m is None else [np.asarray(d, np.float32) for d in depth_m]
        lengths = {
            "K": len(self.K) if self.K.shape[1:] == (3, 3) else -1,
            "stamps_ns": len(self.stamps_ns),
            "T_world_cam": n if self.T_world_cam is None else len(self.T_world_cam),
            "depth_m": n if self.depth_m is None else len(self.depth_m),
        }
        if bad := {k: v for k, v in lengths.items() if v != n}:
            raise DatasetError(
                f"sequence {name!r} has {n} images but mismatched {bad} "
                "(K must be (3, 3) or (N, 3, 3))"
            )
        self.has_poses = self.T_world_cam is not None
        self.has_depth = self.depth_m is not None

    @classmethod
    def from_synthetic(cls, seq: object, name: str = "synthetic") -> InMemorySequence:
        """Wrap an object with ``images``, ``K``, ``stamps_ns``, ``T_world_cam``, ``depth_m``."""
        return cls(name, seq.images, seq.K, seq.stamps_ns, seq.T_world_cam, seq.depth_m)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> Frame:
        return Frame(
            image=self.images[i],
            K=self.K[i].copy(),
            stamp_ns=int(self.stamps_ns[i]),
            T_world_cam=None if self.T_world_cam is None else self.T_world_cam[i].copy(),
            depth_m=None if self.depth_m is None else self.depth_m[i],
        )


def open_sequences(
    path: Path | str,
    *,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    max_frames: int | None = None,
    max_width: int | None = None,
    camera: int | None = None,
    bag_reader: BagReader | None = None,
) -> list[FrameSequence]:
    """Open every frame sequence found at ``path``, detecting its layout.

    Args:
        path: a bag, a KITTI odometry/raw folder, an image folder or a folder of those.
        image_topic, camera_info_topic: bag topics (auto-detected when None).
        max_frames: keep at most this many frames per sequence.
        max_width: bags only: downscale decoded images to at most this width.
        camera: KITTI camera index (default: 2 when colour images exist, else 0).
        bag_reader: opens a bag (`sfm_ros.messages.BagSequence`); without it a bag is refused.

    Raises:
        DatasetError: ``path`` is missing, empty or has none of the accepted layouts.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist")
    bag_kw = dict(
        image_topic=image_topic,
        camera_info_topic=camera_info_topic,
        max_frames=max_frames,
        max_width=max_width,
    )

    def open_bag(bag: Path) -> FrameSequence:
        if bag_reader is None:
            raise DatasetError(
                f"{bag} is a bag: open it with sfm_ros.messages.open_sequences (reads rosbags)"
            )
        return bag_reader(bag, **bag_kw)

    seqs = _discover(path, open_bag, max_frames, camera, levels=2)
    if not seqs:
        raise DatasetError(
            f"no frame sequences found in {path}; accepted layouts: {ACCEPTED_LAYOUTS}"
        )
    return seqs


def _discover(
    path: Path,
    open_bag: Callable[[Path], FrameSequence],
    max_frames: int | None,
    camera: int | None,
    levels: int,
    parent_dir: Path | None = None,
) -> list[FrameSequence]:
    """Sequences at ``path``, else those found in its sub-folders down to ``levels`` deep."""
    seqs = _open(path, open_bag, max_frames, camera, parent_dir)
    if seqs is not None or levels == 0 or not path.is_dir():
        return seqs or []
    children = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    return [
        s for c in children for s in _discover(c, open_bag, max_frames, camera, levels - 1, path)
    ]


def _open(
    path: Path,
    open_bag: Callable[[Path], FrameSequence],
    max_frames: int | None,
    camera: int | None,
    parent_dir: Path | None = None,
) -> list[FrameSequence] | None:
    """Sequences at ``path`` if it has a known layout itself, else None."""
    # Imported here: the reader modules import this one.
    from sfm_ros.core.data.folder import FolderSequence, find_intrinsics_file
    from sfm_ros.core.data.kitti import (
        KittiOdometrySequence,
        KittiRawSequence,
        is_kitti_odometry_sequence,
        is_kitti_raw_drive,
    )

    if path.suffix.lower() in BAG_SUFFIXES or (path / "metadata.yaml").is_file():
        return [open_bag(path)]
    if not path.is_dir():
        return None
    if (path / "sequences").is_dir():
        seq_dirs = sorted(
            p for p in (path / "sequences").iterdir() if is_kitti_odometry_sequence(p)
        )
        return [KittiOdometrySequence(p, camera, max_frames) for p in seq_dirs] or None
    if is_kitti_odometry_sequence(path):
        return [KittiOdometrySequence(path, camera, max_frames)]
    if (path / "calib_cam_to_cam.txt").is_file():
        drives = sorted(p for p in path.iterdir() if is_kitti_raw_drive(p))
        return [KittiRawSequence(d, camera, max_frames) for d in drives] or None
    if is_kitti_raw_drive(path):
        return [KittiRawSequence(path, camera, max_frames)]
    if list_images(path) or list_images(path / "images"):
        intrinsics = find_intrinsics_file(path) or (parent_dir and find_intrinsics_file(parent_dir))
        return [FolderSequence(path, intrinsics_file=intrinsics or None, max_frames=max_frames)]
    return None

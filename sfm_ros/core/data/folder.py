"""A folder of images plus an intrinsics file, with optional poses, depth and times.

Layout (images directly in the folder or in ``images/``, sorted by name)::

    folder/000.png ...          .png / .jpg frames
    folder/intrinsics.txt       3x3 K (3 lines of 3), or fx fy cx cy (one line or one a line);
                                K.txt or calib.txt (KITTI ``P0: ...`` lines) are accepted too
    folder/poses.txt            optional, KITTI style: 12 numbers a line, T_world_cam 3x4
    folder/depth/*.npy          optional, (H, W) float32 metres, 0 = unknown; or depth.npz
    folder/times.txt            optional, seconds a line (else 10 Hz)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sfm_ros.core.data.kitti import read_calib_file
from sfm_ros.core.data.sequence import (
    Frame,
    check_length,
    list_images,
    load_image,
    read_pose_file,
    read_stamps,
)
from sfm_ros.core.errors import DatasetError

INTRINSICS_NAMES = ("intrinsics.txt", "K.txt", "calib.txt")


def find_intrinsics_file(folder: Path) -> Path | None:
    """The first of ``intrinsics.txt``, ``K.txt``, ``calib.txt`` present in ``folder``."""
    return next((folder / n for n in INTRINSICS_NAMES if (folder / n).is_file()), None)


def read_intrinsics_file(path: Path) -> np.ndarray:
    """Read (3, 3) float64 K from 9 numbers (K), 4 numbers (fx fy cx cy) or 12 numbers (P).

    Files with ``key: numbers`` lines use the first entry of 9 (K) or 12 (P) numbers.
    """
    text = path.read_text()
    if ":" in text:
        entries = [v for v in read_calib_file(path).values() if v.size in (9, 12)]
        values = entries[0] if entries else np.empty(0)
    else:
        try:
            values = np.array([float(v) for v in text.split()])
        except ValueError as err:
            raise DatasetError(f"cannot parse intrinsics file {path}: {err}") from err
    if values.size == 4:
        fx, fy, cx, cy = values
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if values.size in (9, 12):
        return values.reshape(3, -1)[:, :3].copy()
    raise DatasetError(
        f"intrinsics file {path} must hold 9 numbers (3x3 K), 4 (fx fy cx cy) "
        f"or 12 (3x4 P), got {values.size}"
    )


class FolderSequence:
    """Images of one folder with their intrinsics (see the module docstring for the layout).

    Args:
        folder: the folder.
        intrinsics_file: overrides the search for ``intrinsics.txt``/``K.txt``/``calib.txt``.
        max_frames: keep only the first frames.
    """

    def __init__(
        self,
        folder: Path,
        intrinsics_file: Path | None = None,
        max_frames: int | None = None,
    ) -> None:
        folder = Path(folder)
        self.name = folder.name
        self.paths = (list_images(folder) or list_images(folder / "images"))[:max_frames]
        if not self.paths:
            raise DatasetError(f"no .png/.jpg images in {folder} or {folder / 'images'}")
        n = len(self.paths)

        intrinsics_file = intrinsics_file or find_intrinsics_file(folder)
        if intrinsics_file is None:
            raise DatasetError(
                f"image folder {folder} has no intrinsics file; add one of "
                f"{', '.join(INTRINSICS_NAMES)} (3x3 K or fx fy cx cy)"
            )
        self.K = read_intrinsics_file(Path(intrinsics_file))

        self.stamps_ns = read_stamps(folder / "times.txt", n)

        self.T_world_cam = None
        if (folder / "poses.txt").is_file():
            self.T_world_cam = read_pose_file(folder / "poses.txt")
            check_length(folder / "poses.txt", "poses.txt", len(self.T_world_cam), n)

        self.depth_paths = sorted((folder / "depth").glob("*.npy"))
        self.depth_stack = None
        if self.depth_paths:
            check_length(folder / "depth", "depth/", len(self.depth_paths), n)
        elif (folder / "depth.npz").is_file():
            self.depth_stack = _read_depth_npz(folder / "depth.npz")
            check_length(folder / "depth.npz", "depth.npz", len(self.depth_stack), n)
        self.has_poses = self.T_world_cam is not None
        self.has_depth = bool(self.depth_paths) or self.depth_stack is not None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Frame:
        depth = None
        if self.depth_paths:
            depth = np.load(self.depth_paths[i]).astype(np.float32)
        elif self.depth_stack is not None:
            depth = self.depth_stack[i].astype(np.float32)
        return Frame(
            image=load_image(self.paths[i]),
            K=self.K.copy(),
            stamp_ns=int(self.stamps_ns[i]),
            T_world_cam=None if self.T_world_cam is None else self.T_world_cam[i].copy(),
            depth_m=depth,
        )


def _read_depth_npz(path: Path) -> np.ndarray:
    """(N, H, W) depth from ``depth.npz``: its ``depth_m`` or ``depth`` array, or its only one."""
    with np.load(path) as npz:
        key = next((k for k in ("depth_m", "depth") if k in npz), None)
        if key is None and len(npz.files) == 1:
            key = npz.files[0]
        if key is None:
            raise DatasetError(f"{path} must hold an array named depth_m or depth, got {npz.files}")
        depth = npz[key]
    if depth.ndim != 3:
        raise DatasetError(f"{path}: depth must be (N, H, W), got shape {depth.shape}")
    return depth

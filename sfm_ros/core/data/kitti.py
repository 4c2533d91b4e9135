"""KITTI odometry and KITTI raw sequences.

Odometry: ``sequences/NN/{calib.txt, times.txt, image_0..3/*.png}`` and ``poses/NN.txt``
(ground truth of camera 0, frame i to world = frame 0). Cameras 0/1 are grey, 2/3 colour.
Raw: ``<date>/calib_cam_to_cam.txt`` and ``<date>/<drive>/image_0X/{data/*.png,
timestamps.txt}``; raw drives have no pose or depth ground truth here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sfm_ros.core.data.sequence import (
    Frame,
    check_length,
    list_images,
    load_image,
    read_pose_file,
    read_stamps,
)
from sfm_ros.core.errors import DatasetError

CAMERA_PREFERENCE = (2, 0, 3, 1)  # colour left first


def read_calib_file(path: Path) -> dict[str, np.ndarray]:
    """``key: numbers`` lines of a KITTI calibration file -> {key: (n,) float64}.

    Lines whose values are not numbers (``calib_time: 09-Jan-2012 ...``) are skipped.
    """
    calib = {}
    for line in path.read_text().splitlines():
        key, sep, values = line.partition(":")
        if not sep:
            continue
        try:
            calib[key.strip()] = np.array([float(v) for v in values.split()])
        except ValueError:
            continue
    return calib


def _projection(calib: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    """(3, 4) projection matrix ``key`` of a calibration file."""
    if key not in calib or calib[key].size != 12:
        raise DatasetError(
            f"{path} has no 12-number projection matrix {key!r} (keys: {sorted(calib)})"
        )
    return calib[key].reshape(3, 4)


def _pick_camera(camera: int | None, image_dir: Callable[[int], Path]) -> int:
    """The requested camera, or the preferred one that has images; checks it has images."""
    if camera is None:
        camera = next((c for c in CAMERA_PREFERENCE if list_images(image_dir(c))), 0)
    if camera not in range(4):
        raise DatasetError(f"KITTI camera must be 0, 1, 2 or 3, got {camera}")
    if not list_images(image_dir(camera)):
        raise DatasetError(f"no images for KITTI camera {camera} in {image_dir(camera)}")
    return camera


def is_kitti_odometry_sequence(path: Path) -> bool:
    """Whether ``path`` looks like ``sequences/NN`` (calib.txt and an image_N folder)."""
    return (path / "calib.txt").is_file() and any(
        list_images(path / f"image_{c}") for c in range(4)
    )


def is_kitti_raw_drive(path: Path) -> bool:
    """Whether ``path`` is a raw drive folder (image_0X/data) next to calib_cam_to_cam.txt."""
    return (path.parent / "calib_cam_to_cam.txt").is_file() and any(
        list_images(path / f"image_0{c}" / "data") for c in range(4)
    )


class KittiOdometrySequence:
    """One KITTI odometry sequence folder ``sequences/NN``.

    Args:
        seq_dir: the ``NN`` folder with ``calib.txt`` and ``image_C``.
        camera: 0-3 (default: 2 when present, else 0). K is the left 3x3 of ``P{camera}``.
        max_frames: keep only the first frames.

    Poses (``<root>/poses/NN.txt``) are loaded when present; for cameras other than 0 they
    are moved to that camera with the rectified baseline of ``P{camera}``.
    Stamps come from ``times.txt`` when present, else 10 Hz.
    """

    def __init__(self, seq_dir: Path, camera: int | None = None, max_frames: int | None = None):
        seq_dir = Path(seq_dir)
        self.camera = _pick_camera(camera, lambda c: seq_dir / f"image_{c}")
        self.name = f"kitti_odometry_{seq_dir.name}_cam{self.camera}"
        self.paths = list_images(seq_dir / f"image_{self.camera}")[:max_frames]
        n = len(self.paths)

        calib_path = seq_dir / "calib.txt"
        P = _projection(read_calib_file(calib_path), f"P{self.camera}", calib_path)
        self.K = P[:, :3].copy()

        self.stamps_ns = read_stamps(seq_dir / "times.txt", n)

        self.T_world_cam = None
        pose_path = seq_dir.parent.parent / "poses" / f"{seq_dir.name}.txt"
        if pose_path.is_file():
            T_world_cam0 = read_pose_file(pose_path)
            check_length(pose_path, "pose file", len(T_world_cam0), n)
            T_cam0_cam = np.eye(4)
            T_cam0_cam[:3, 3] = -np.linalg.solve(self.K, P[:, 3])
            self.T_world_cam = T_world_cam0 @ T_cam0_cam
        self.has_poses = self.T_world_cam is not None
        self.has_depth = False

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Frame:
        return Frame(
            image=load_image(self.paths[i]),
            K=self.K.copy(),
            stamp_ns=int(self.stamps_ns[i]),
            T_world_cam=None if self.T_world_cam is None else self.T_world_cam[i].copy(),
        )


def read_raw_timestamps(path: Path) -> np.ndarray:
    """KITTI raw ``timestamps.txt`` (``2011-09-26 13:02:25.964389445``, UTC) -> (N,) int64 ns."""
    stamps = []
    for line in path.read_text().split("\n"):
        if not line.strip():
            continue
        try:
            whole, _, frac = line.strip().partition(".")
            t = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            stamps.append(int(t.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]))
        except ValueError as err:
            raise DatasetError(f"cannot parse timestamp {line!r} in {path}") from err
    return np.array(stamps, dtype=np.int64)


class KittiRawSequence:
    """One KITTI raw drive, e.g. ``2011_09_26/2011_09_26_drive_0001_sync``.

    Args:
        drive_dir: drive folder; ``calib_cam_to_cam.txt`` must be in its parent.
        camera: 0-3 (default: 2 when present, else 0). K is the left 3x3 of ``P_rect_0C``.
        max_frames: keep only the first frames.

    Stamps come from ``image_0C/timestamps.txt`` when present, else 10 Hz.
    """

    def __init__(self, drive_dir: Path, camera: int | None = None, max_frames: int | None = None):
        drive_dir = Path(drive_dir)
        self.camera = _pick_camera(camera, lambda c: drive_dir / f"image_0{c}" / "data")
        self.name = f"{drive_dir.name}_cam{self.camera}"
        cam_dir = drive_dir / f"image_0{self.camera}"
        self.paths = list_images(cam_dir / "data")[:max_frames]
        n = len(self.paths)

        calib_path = drive_dir.parent / "calib_cam_to_cam.txt"
        if not calib_path.is_file():
            raise DatasetError(f"KITTI raw drive {drive_dir} needs {calib_path}")
        P = _projection(read_calib_file(calib_path), f"P_rect_0{self.camera}", calib_path)
        self.K = P[:, :3].copy()

        self.stamps_ns = read_stamps(cam_dir / "timestamps.txt", n, read_raw_timestamps)
        self.has_poses = False
        self.has_depth = False

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Frame:
        return Frame(load_image(self.paths[i]), self.K.copy(), int(self.stamps_ns[i]))

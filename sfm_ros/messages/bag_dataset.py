"""Frames from rosbag2 (sqlite3, mcap) and ROS 1 bags, read with ``rosbags`` (no ROS needed).

Bags are read sequentially, so `BagSequence` decodes every frame on construction and keeps it
in memory (use ``max_frames`` and ``max_width`` for long or large recordings).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader

from sfm_ros.core.camera import Camera
from sfm_ros.core.data.augment import resize_image
from sfm_ros.core.data.sequence import InMemorySequence
from sfm_ros.core.errors import DatasetError, InputError
from sfm_ros.core.undistort import undistorter_for
from sfm_ros.messages.bag_io import CAMERA_INFO_TYPE, IMAGE_TYPES, open_reader
from sfm_ros.messages.camera import camera_from_camera_info
from sfm_ros.messages.image import compressed_to_rgb8, image_to_rgb8

log = logging.getLogger(__name__)


def _decode_image(msg: object) -> np.ndarray:
    """sensor_msgs Image or CompressedImage -> (H, W, 3) uint8 RGB (see `sfm_ros.messages`)."""
    try:
        return compressed_to_rgb8(msg) if hasattr(msg, "format") else image_to_rgb8(msg)
    except InputError as err:
        raise DatasetError(str(err)) from err


def _camera(msg: object) -> Camera | None:
    """The camera of the images published with a CameraInfo, or None if it is unusable."""
    try:
        return camera_from_camera_info(msg)
    except InputError:
        return None


def _pinhole(image: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(image, K) of a pinhole camera: distorted images are undistorted (same K and size)."""
    if camera.distorted:
        image = undistorter_for(camera)(image)
    return image, np.array(camera.K)


def _pick_topic(
    topics: dict[str, str], wanted: str | None, types: tuple[str, ...], what: str, path: Path
) -> str:
    """The requested topic (checked) or the only topic of one of ``types``."""
    if wanted is not None:
        if wanted not in topics:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"
            raise DatasetError(f"{what} topic {wanted!r} is not in bag {path}; topics: {listing}")
        if topics[wanted] not in types:
            raise DatasetError(
                f"topic {wanted!r} in {path} has type {topics[wanted]}, "
                f"expected {' or '.join(types)}"
            )
        return wanted
    candidates = sorted(t for t, m in topics.items() if m in types)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(
            f"bag {path} has no {what} topic ({' or '.join(types)}); "
            f"topics: {', '.join(sorted(topics)) or 'none'}"
        )
    raise DatasetError(f"bag {path} has several {what} topics, choose one: {', '.join(candidates)}")


def _stamp_ns(msg: object, bag_time_ns: int) -> int:
    """Header stamp in ns, or the bag's receive time when the header stamp is zero."""
    stamp = msg.header.stamp
    ns = int(stamp.sec) * 1_000_000_000 + int(getattr(stamp, "nanosec", 0))
    return ns or bag_time_ns


class BagSequence(InMemorySequence):
    """All frames of one image topic of a bag, with intrinsics from its CameraInfo topic.

    Args:
        path: rosbag2 folder (metadata.yaml), .db3/.mcap file, or ROS 1 .bag file.
        image_topic: sensor_msgs Image or CompressedImage topic; auto when the bag has one.
        camera_info_topic: CameraInfo topic; auto: ``<image namespace>/camera_info`` or the
            only CameraInfo topic.
        max_frames: stop after this many frames.
        max_width: downscale wider images to this width (bilinear, K scaled exactly).

    Each image gets the latest CameraInfo at or before it; images before the first CameraInfo
    get the first valid one. Images whose latest CameraInfo has an invalid (e.g. all-zero) K
    are skipped with a warning. A raw (distorted) camera's images are undistorted, so every
    frame is a pinhole image with its K (as `sfm_ros.core.undistort` defines it).
    """

    def __init__(
        self,
        path: Path | str,
        image_topic: str | None = None,
        camera_info_topic: str | None = None,
        max_frames: int | None = None,
        max_width: int | None = None,
    ) -> None:
        path = Path(path)
        reader = open_reader(path)
        try:
            images, Ks, stamps = self._read(
                reader, path, image_topic, camera_info_topic, max_frames, max_width
            )
        finally:
            reader.close()
        super().__init__(path.stem if path.is_file() else path.name, images, Ks, stamps)

    def _read(
        self,
        reader: AnyReader,
        path: Path,
        image_topic: str | None,
        camera_info_topic: str | None,
        max_frames: int | None,
        max_width: int | None,
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Decode frames -> (images list, K (N, 3, 3), stamps (N,))."""
        topics = {c.topic: c.msgtype for c in reader.connections}
        self.image_topic = _pick_topic(topics, image_topic, IMAGE_TYPES, "image", path)
        if camera_info_topic is None:
            base = self.image_topic.removesuffix("/compressed")
            sibling = base.rsplit("/", 1)[0] + "/camera_info"
            camera_info_topic = sibling if topics.get(sibling) == CAMERA_INFO_TYPE else None
        self.camera_info_topic = _pick_topic(
            topics, camera_info_topic, (CAMERA_INFO_TYPE,), "camera info", path
        )
        wanted = {self.image_topic, self.camera_info_topic}
        connections = [c for c in reader.connections if c.topic in wanted]

        raw_images: list[np.ndarray] = []
        cameras: list[Camera | None] = []
        stamps: list[int] = []
        latest: Camera | None = None  # None before the first usable CameraInfo
        seen_info = skipped = 0
        for conn, bag_time_ns, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == self.camera_info_topic:
                seen_info += 1
                latest = _camera(msg)
                continue
            if max_frames is not None and len(raw_images) >= max_frames:
                if latest is not None:
                    break
                continue  # frames are full but wait for their first CameraInfo
            if seen_info and latest is None:
                skipped += 1
                continue
            raw_images.append(_decode_image(msg))
            cameras.append(latest)
            stamps.append(_stamp_ns(msg, bag_time_ns))
        if skipped:
            log.warning("%s: skipped %d images whose CameraInfo has an invalid K", path, skipped)
        first_valid = next((c for c in cameras if c is not None), latest)
        if not raw_images:
            raise DatasetError(
                f"bag {path} has no usable images on {self.image_topic} "
                f"({skipped} skipped for invalid CameraInfo)"
            )
        if first_valid is None:
            raise DatasetError(
                f"bag {path} has no valid CameraInfo on {self.camera_info_topic} "
                "(K missing or all zero)"
            )
        images, Ks = [], []
        for raw, camera in zip(raw_images, cameras, strict=True):
            camera = camera or first_valid
            h, w = raw.shape[:2]
            if (w, h) != camera.size:
                raise DatasetError(
                    f"bag {path}: a {w}x{h} image on {self.image_topic} has a CameraInfo of "
                    f"{camera.width}x{camera.height}"
                )
            image, K = _pinhole(raw, camera)
            if max_width is not None and w > max_width:
                size = (max_width, max(1, round(h * max_width / w)))
                image = resize_image(image, size[1], size[0])
                K = np.array(Camera(K, w, h).resized(*size).K)
            images.append(image)
            Ks.append(K)
        return images, np.stack(Ks), np.array(stamps, dtype=np.int64)

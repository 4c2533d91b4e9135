"""Reading and safely writing rosbag2 recordings, and `make_bag` (``sfm-ros make-bag``).

Every tool writes its outputs through `BagOutput`, which keeps the user's files safe:

- the output may not be an input, lie inside one, or contain one;
- an existing output is replaced only with ``overwrite`` and only if this package wrote it
  (its folder holds `MARKER`); a regular file or someone else's folder is never deleted;
- the bag is written to a hidden sibling (``.NAME.sfm_ros-partial``) and renamed into place on
  success, so a failed or interrupted run leaves the old output intact, and its partial folder
  (recognised by name) is removed by the next run.

`clear_previews` deletes only the preview files this package writes, never other files.

`make_bag` writes a synthetic or recorded sequence as a rosbag2 with ``/camera/image_raw``
(rgb8), ``/camera/camera_info`` and, when poses are known, ``/ground_truth/odom`` (REP 103 body
frame, relative to the first frame) and, on request, a simulated gyroscope on ``/imu`` with the
camera's and the IMU's mounts on ``/tf_static``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sfm_ros import __version__
from sfm_ros.core.errors import ConfigError, DatasetError
from sfm_ros.core.frames import R_OPTICAL_BODY, T_BODY_OPTICAL
from sfm_ros.core.lie import se3_inverse, se3_log
from sfm_ros.messages.camera import camera_info_msg
from sfm_ros.messages.image import numpy_to_image
from sfm_ros.messages.imu import imu_msg
from sfm_ros.messages.motion import odometry_msg, tf_message, transform_stamped
from sfm_ros.messages.msg_types import MsgTypes, header, rosbags_types
from sfm_ros.messages.static_tf import TF_STATIC_TOPIC, TF_TYPE

log = logging.getLogger(__name__)

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
BAG_VERSION = 8
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
IMU_TYPE = "sensor_msgs/msg/Imu"
IMU_TOPIC, IMU_FRAME = "/imu", "imu_link"
TF_STATIC_QOS = Qos(
    QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
    QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False,
)  # fmt: skip
"""What tf2's static broadcaster offers: a late subscriber (``ros2 bag play``) gets the mounts."""
START_NS = 1_700_000_000 * 1_000_000_000
"""First stamp of bags made from sequences without absolute time (2023-11-14)."""
MARKER = "sfm_ros_output.json"
"""File in every bag folder this package writes: what `overwrite` may replace."""
PREVIEW_FILES = re.compile(r"^(depth_\d{6}\.png|trajectory\.png|summary\.json)$")
"""Names of the files `sfm-ros bag` writes into ``OUTPUT_previews/``."""


def open_reader(path: Path) -> AnyReader:
    """An opened `AnyReader` of a rosbag2 folder/file or ROS 1 bag; DatasetError if unreadable."""
    if not path.exists():
        raise DatasetError(f"cannot open bag {path}: it does not exist")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except (AnyReaderError, FileNotFoundError, OSError) as exc:
        raise DatasetError(f"cannot open bag {path}: {exc}") from exc
    return reader


def check_storage(storage: str) -> StoragePlugin:
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
    return STORAGES[storage]


def refuse_overlap(output: Path, inputs: list[Path]) -> None:
    """DatasetError if ``output`` is, lies inside or contains one of ``inputs``."""
    out = output.expanduser().resolve()
    for given in inputs:
        src = given.expanduser().resolve()
        if out == src or src in out.parents or out in src.parents:
            raise DatasetError(
                f"refusing to write {output}: it would overlap the input {given}; "
                "choose an output outside the input"
            )


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


class BagOutput:
    """Context manager giving the temporary folder to write a bag into; see the module doc.

    Usage::

        with BagOutput(out, overwrite, inputs=[bag]) as tmp:
            with Writer(tmp, ...) as writer: ...
        # out now holds the finished bag (and MARKER)
    """

    def __init__(self, path: Path, overwrite: bool, inputs: list[Path], tool: str) -> None:
        self.path, self.tool = Path(path), tool
        refuse_overlap(self.path, inputs)
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            raise DatasetError(f"output {self.path} exists and is not a folder; not replacing it")
        if self.path.exists():
            if not overwrite:
                raise DatasetError(
                    f"output {self.path} already exists; pass --overwrite to replace it"
                )
            if not (self.path / MARKER).is_file():
                raise DatasetError(
                    f"refusing to overwrite {self.path}: it was not written by sfm_ros "
                    f"(no {MARKER}); remove it yourself or choose another output"
                )
        self.tmp = self.path.parent / f".{self.path.name}.sfm_ros-partial"
        self.old = self.path.parent / f".{self.path.name}.sfm_ros-old"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for leftover in (self.tmp, self.old):  # from a killed run: ours by name
                if leftover.exists() or leftover.is_symlink():
                    log.info("removing %s left by an interrupted run", leftover)
                    _remove(leftover)
        except OSError as exc:
            raise DatasetError(f"cannot write the output {self.path}: {exc}") from None

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            if self.tmp.exists():
                _remove(self.tmp)
            if isinstance(exc, OSError):
                raise DatasetError(f"cannot write the output {self.path}: {exc}") from None
            return
        try:
            marker = {"tool": self.tool, "sfm_ros_version": __version__}
            (self.tmp / MARKER).write_text(json.dumps(marker) + "\n")
            if self.path.exists():
                self.path.rename(self.old)
            self.tmp.rename(self.path)
            if self.old.exists():
                _remove(self.old)
        except OSError as exc:
            raise DatasetError(f"cannot write the output {self.path}: {exc}") from None


def clear_previews(folder: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Make ``folder`` ready for previews: delete only files named like ours, with ``overwrite``."""
    refuse_overlap(folder, inputs)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DatasetError(f"previews folder {folder} exists and is not a folder")
    if not folder.is_dir():
        return
    ours = [p for p in folder.iterdir() if PREVIEW_FILES.match(p.name) and p.is_file()]
    if ours and not overwrite:
        raise DatasetError(f"previews {folder} already exist; pass --overwrite to replace them")
    for path in ours:
        path.unlink()


# ---------------------------------------------------------------------------- sfm-ros make-bag
def _frames_from_source(
    synthetic: str | None, images: str | None, frames: int, seed: int, height: int, width: int,
    fps: float,
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray | None]:  # fmt: skip
    """(images, Ks, stamps_ns, T_world_cam or None) of the requested source."""
    period = int(round(1e9 / fps))
    if synthetic:
        from sfm_ros.core.synthetic import render_sequence

        seq = render_sequence(synthetic, frames, seed=seed, height=height, width=width)
        stamps = START_NS + np.arange(len(seq.images), dtype=np.int64) * period
        return list(seq.images), [seq.K] * len(seq.images), stamps, seq.T_world_cam
    from sfm_ros.messages.sources import open_source

    seqs = open_source(str(images))
    if len(seqs) > 1:
        log.warning("%s holds %d sequences; using the first, %s", images, len(seqs), seqs[0].name)
    seq = seqs[0]
    if len(seq) > frames:
        log.warning("%s has %d frames; writing the first %d (--frames)", images, len(seq), frames)
    loaded = [seq.load(i) for i in range(min(frames, len(seq)))]
    stamps = np.array([f.stamp_ns for f in loaded], dtype=np.int64)
    if len(stamps) > 1 and not np.all(np.diff(stamps) > 0):
        log.warning("%s: stamps are not increasing; using %g Hz instead", images, fps)
        stamps = np.arange(len(loaded), dtype=np.int64) * period
    if stamps[0] < START_NS // 2:  # relative times (e.g. KITTI times.txt starts at 0)
        stamps = stamps + START_NS
    poses = [f.T_world_cam for f in loaded]
    T_world_cam = np.stack(poses) if all(p is not None for p in poses) else None
    return [f.image for f in loaded], [f.K for f in loaded], stamps, T_world_cam


def make_bag(
    out: str | Path,
    synthetic: str | None = None,
    images: str | None = None,
    frames: int = 100,
    seed: int = 0,
    height: int = 128,
    width: int = 416,
    fps: float = 10.0,
    storage: str = "sqlite3",
    overwrite: bool = False,
    camera_frame: str = "camera_optical_frame",
    imu_rate_hz: float = 0.0,
) -> Path:
    """Write a rosbag2 of a synthetic sequence (``synthetic`` = domain) or of ``images``.

    ``images`` is anything `sfm_ros.messages.sources.open_source` reads (image folder, KITTI
    sequence or drive, bag); the first sequence found is used, at its own resolution, and at
    most ``frames`` of its frames. With ``imu_rate_hz``, the bag also holds ``/imu`` and
    ``/tf_static`` (`_imu_events`); the source needs poses.
    """
    if (synthetic is None) == (images is None):
        raise ConfigError("make-bag needs exactly one of --synthetic DOMAIN or --images PATH")
    plugin = check_storage(storage)
    if frames < 1 or fps <= 0 or imu_rate_hz < 0:
        raise ConfigError(
            f"need frames >= 1, fps > 0 and imu rate >= 0, got {frames}, {fps}, {imu_rate_hz}"
        )
    out = Path(out)
    output = BagOutput(out, overwrite, [Path(images)] if images else [], "sfm-ros make-bag")
    rgb, Ks, stamps, T_world_cam = _frames_from_source(
        synthetic, images, frames, seed, height, width, fps
    )
    if imu_rate_hz and (T_world_cam is None or len(stamps) < 2):
        raise ConfigError(
            f"--imu-rate simulates the gyro on the true trajectory: {images} has no poses for "
            "its frames (or fewer than two frames)"
        )
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types = rosbags_types(typestore)
    T_world_base = None
    if T_world_cam is not None:  # body frame at the camera, relative to the first frame
        T_world_body = T_world_cam @ se3_inverse(T_BODY_OPTICAL)
        T_world_base = se3_inverse(T_world_body[0]) @ T_world_body
    topics = {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera_info": CAMERA_INFO_TYPE,
        "/ground_truth/odom": ODOMETRY_TYPE,
    }
    imu = deque(_imu_events(types, T_world_cam, stamps, imu_rate_hz, camera_frame, seed))
    with output as tmp, Writer(tmp, version=BAG_VERSION, storage_plugin=plugin) as writer:
        conns = {t: writer.add_connection(t, m, typestore=typestore) for t, m in topics.items()}
        if imu:
            conns[IMU_TOPIC] = writer.add_connection(IMU_TOPIC, IMU_TYPE, typestore=typestore)
            conns[TF_STATIC_TOPIC] = writer.add_connection(
                TF_STATIC_TOPIC, TF_TYPE, typestore=typestore, offered_qos_profiles=[TF_STATIC_QOS]
            )

        def write(topic: str, msg: Any, t_ns: int) -> None:
            writer.write(conns[topic], t_ns, typestore.serialize_cdr(msg, msg.__msgtype__))

        for i, (image, K, t_ns) in enumerate(zip(rgb, Ks, stamps, strict=True)):
            t_ns = int(t_ns)
            while imu and imu[0][0] <= t_ns:  # the IMU's messages up to the image, in time order
                t_imu, msg, topic = imu.popleft()
                write(topic, msg, t_imu)
            hdr = header(types, t_ns, camera_frame)
            h, w = image.shape[:2]
            write("/camera/camera_info", camera_info_msg(types, K, w, h, hdr), t_ns)
            write("/camera/image_raw", numpy_to_image(types, image, "rgb8", hdr), t_ns)
            if T_world_base is not None:
                write("/ground_truth/odom", _gt_odometry(types, T_world_base, stamps, i), t_ns)
    return out


def _imu_events(
    types: MsgTypes,
    T_world_cam: np.ndarray | None,
    stamps: np.ndarray,
    rate_hz: float,
    camera_frame: str,
    seed: int,
) -> list[tuple[int, Any, str]]:
    """(log time, message, topic) of a simulated IMU, in time order; empty for rate 0.

    A gyroscope at ``rate_hz`` on the true trajectory (`gyro_samples`: a BMI088's white noise
    and a constant 0.5 deg/s bias in a direction drawn from ``seed``), in ``imu_link`` with
    base_link's axes, and one ``/tf_static`` message (transient local, as tf2's static
    broadcaster offers it) with ``base_link <- camera_frame`` (the camera at the base origin,
    as the ground-truth odometry has it) and ``base_link <- imu_link`` (the identity), at the
    first image's time.
    """
    if not rate_hz or T_world_cam is None:
        return []
    from sfm_ros.core.synthetic.imu import NOISE_DENSITY_RAD_S, gyro_samples, random_bias

    rng = np.random.default_rng(seed)
    bias = random_bias(rng)
    times, rates = gyro_samples(
        T_world_cam, stamps, rate_hz, R_OPTICAL_BODY, bias, NOISE_DENSITY_RAD_S, rng
    )
    start = int(stamps[0])
    mounts = [
        transform_stamped(types, header(types, start, "base_link"), camera_frame, T_BODY_OPTICAL),
        transform_stamped(types, header(types, start, "base_link"), IMU_FRAME, np.eye(4)),
    ]
    events = [(start, tf_message(types, mounts), TF_STATIC_TOPIC)]
    variance = NOISE_DENSITY_RAD_S**2 * rate_hz
    for t, w in zip(times, rates, strict=True):
        events.append(
            (int(t), imu_msg(types, header(types, int(t), IMU_FRAME), w, variance), IMU_TOPIC)
        )
    return events


def _gt_odometry(types: MsgTypes, T_odom_base: np.ndarray, stamps: np.ndarray, i: int) -> Any:
    """Ground-truth Odometry of frame ``i`` (twist from the previous frame, tiny covariance)."""
    v = w = np.zeros(3)
    if i > 0:
        dt = (stamps[i] - stamps[i - 1]) * 1e-9
        xi = se3_log(se3_inverse(T_odom_base[i - 1]) @ T_odom_base[i]) / dt
        v, w = xi[:3], xi[3:]
    cov = np.eye(6) * 1e-9
    hdr = header(types, int(stamps[i]), "odom_gt")
    return odometry_msg(types, hdr, "base_link_gt", T_odom_base[i], v, w, cov, cov)

"""Offline bag tools without ROS: run the node's pipeline over a bag, and make test bags.

`process_bag` (``sfm-ros bag``) reads a rosbag2 (sqlite3 or mcap) or ROS 1 bag in time order,
feeds `DepthOdometryPipeline` exactly as the node would, and writes a rosbag2 holding the input
topics (copied raw; ROS 1 inputs are not copied) plus the outputs under a namespace::

    <ns>/depth  <ns>/depth/camera_info  <ns>/depth/colormap  <ns>/points  <ns>/odom
    <ns>/depth_mm  <ns>/flow  <ns>/explainability   (when enabled)
    /tf                                              (when publish_tf)

Output messages carry the input image's header stamp and are logged at the image's bag time.
Next to the output bag, in the sibling folder ``OUTPUT_previews/``, go a few depth previews
(``depth_NNNNNN.png``: image above depth), ``trajectory.png`` (with any nav_msgs/Odometry topic
of the input, e.g. ground truth, for comparison) and ``summary.json``.

`make_bag` (``sfm-ros make-bag``) writes a synthetic or recorded sequence as a rosbag2 with
``/camera/image_raw`` (rgb8), ``/camera/camera_info`` and, when poses are known,
``/ground_truth/odom`` (REP 103 body frame, relative to the first frame).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sfm_ros.core.errors import ConfigError, DatasetError
from sfm_ros.core.odometry import invert_se3, se3_log
from sfm_ros.ros import convert as cv
from sfm_ros.ros.frames import R_BODY_OPTICAL, T_BODY_OPTICAL
from sfm_ros.ros.pipeline import DepthOdometryPipeline, PipelineConfig

log = logging.getLogger(__name__)

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
BAG_VERSION = 8
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
OUTPUT_TYPES = {
    "depth": "sensor_msgs/msg/Image",
    "depth/camera_info": CAMERA_INFO_TYPE,
    "depth_mm": "sensor_msgs/msg/Image",
    "depth/colormap": "sensor_msgs/msg/Image",
    "points": "sensor_msgs/msg/PointCloud2",
    "odom": ODOMETRY_TYPE,
    "flow": "sensor_msgs/msg/Image",
    "explainability": "sensor_msgs/msg/Image",
}
START_NS = 1_700_000_000 * 1_000_000_000
"""First stamp of bags made from sequences without absolute time (2023-11-14)."""


# ---------------------------------------------------------------------------- parameters
def load_params_file(path: str | Path, node: str = "depth_odometry") -> dict[str, Any]:
    """``ros__parameters`` that a ROS 2 params file gives the node ``node``.

    Entries apply when their key is ``/**`` or names the node (``node``, ``/ns/node``,
    ``/**/node``); node-specific entries override wildcard ones, as rcl does. A file with a
    single entry is used whatever its node name.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from None
    entries = [
        (str(key), value["ros__parameters"] or {})
        for key, value in (data.items() if isinstance(data, dict) else [])
        if isinstance(value, dict) and "ros__parameters" in value
    ]
    wildcard = [params for key, params in entries if key.strip("/") == "**"]
    named = [params for key, params in entries if key.rstrip("/").split("/")[-1] == node]
    if not wildcard and not named and len(entries) == 1:
        named = [entries[0][1]]
    if not wildcard and not named:
        raise ConfigError(
            f"params file {path} has no '{node}: ros__parameters: {{...}}' (or '/**') entry"
        )
    merged: dict[str, Any] = {}
    for params in wildcard + named:
        merged.update(params)
    return merged


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as YAML (``true``, ``0.5``, ``[1, 2]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse the value ({exc})") from None
    return out


def pipeline_config(
    params_file: str | Path | None = None,
    overrides: list[str] | None = None,
    checkpoint: str | None = None,
) -> PipelineConfig:
    """Config from a params file (unknown node parameters ignored), then strict overrides."""
    cfg = PipelineConfig()
    if params_file:
        values = load_params_file(params_file)
        if unknown := sorted(set(values) - set(PipelineConfig.defaults())):
            log.info("params file: ignoring node-only parameters %s", ", ".join(unknown))
        cfg = PipelineConfig.from_mapping(values, cfg, strict=False)
    cfg = PipelineConfig.from_mapping(parse_overrides(overrides or []), cfg)
    if checkpoint:
        cfg = PipelineConfig.from_mapping({"checkpoint": str(checkpoint)}, cfg)
    return cfg


# ---------------------------------------------------------------------------- helpers
def _open_reader(path: Path) -> AnyReader:
    if not path.exists():
        raise DatasetError(f"input bag {path} does not exist")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except (AnyReaderError, FileNotFoundError, OSError) as exc:
        raise DatasetError(f"cannot open bag {path}: {exc}") from exc
    return reader


def _prepare_output(output: Path, overwrite: bool, extra: list[Path]) -> None:
    """Refuse an existing output unless ``overwrite``; then delete only bag-like folders."""
    for path in [output, *extra]:
        if not path.exists():
            continue
        if not overwrite:
            raise DatasetError(f"output {path} already exists; pass --overwrite to replace it")
        is_bag = (path / "metadata.yaml").is_file()
        if path is output and path.is_dir() and not is_bag and any(path.iterdir()):
            raise DatasetError(f"refusing to overwrite {path}: it is not a rosbag2 folder")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    output.parent.mkdir(parents=True, exist_ok=True)


def _topic_listing(reader: AnyReader) -> str:
    return ", ".join(
        f"{c.topic} ({c.msgtype})" for c in sorted(reader.connections, key=lambda c: c.topic)
    )


def _body_xy_for_plot(T_odom_base: np.ndarray) -> np.ndarray:
    """Body-frame positions (N, 4, 4) -> optical-convention (N, 3) for `plot_trajectories`."""
    return T_odom_base[:, :3, 3] @ R_BODY_OPTICAL  # R_OPTICAL_BODY @ p for each row


@dataclass
class BagSummary:
    """What `process_bag` did."""

    output: str
    frames_in: int
    frames_processed: int
    frames_skipped: int
    resets: int
    skipped_by_reason: dict[str, int]
    wall_s: float
    fps: float
    stage_ms: dict[str, float]
    """Mean milliseconds per processed frame: convert, inference, outputs, write."""
    topics: dict[str, int]
    """Output bag topic -> message count."""
    scale_source: str
    scale: float
    previews: list[str] = field(default_factory=list)
    plot: str | None = None

    def format(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_ms.items())
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped_by_reason.items()))
        lines = [
            f"wrote {self.output}",
            f"frames: {self.frames_in} in, {self.frames_processed} processed, "
            f"{self.frames_skipped} skipped{f' ({reasons})' if reasons else ''}, "
            f"{self.resets} resets",
            f"throughput: {self.fps:.1f} frames/s ({self.wall_s:.1f} s)",
            f"per frame (ms): {stages}",
            f"scale: {self.scale_source} = {self.scale:.4g}",
        ]
        if self.plot:
            lines.append(f"previews and trajectory plot in {Path(self.plot).parent}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- sfm-ros bag
def process_bag(
    input_path: str | Path,
    output_path: str | Path,
    image_topic: str,
    camera_info_topic: str | None = None,
    cfg: PipelineConfig | None = None,
    odometry_topic: str | None = None,
    storage: str = "sqlite3",
    namespace: str = "/sfm",
    overwrite: bool = False,
    num_previews: int = 4,
    progress: bool = True,
    estimator: Any = None,
) -> BagSummary:
    """Run `DepthOdometryPipeline` over ``image_topic`` of a bag and write a rosbag2.

    Args:
        camera_info_topic: default ``<image namespace>/camera_info`` when the bag has it.
        cfg: pipeline parameters (default `PipelineConfig()`; its checkpoint is loaded).
        odometry_topic: external nav_msgs/Odometry for ``scale_source: odometry``.
        storage: "sqlite3" or "mcap".
        namespace: prefix of the output topics.
        num_previews: depth previews written next to the output (0 = none, and no plot).
        estimator: a ready `DepthPoseEstimator` (tests); default loaded from ``cfg``.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    cfg = cfg or PipelineConfig()
    input_path, output = Path(input_path), Path(output_path)
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
    previews_dir = output.parent / f"{output.name}_previews"
    reader = _open_reader(input_path)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        if image_topic not in topics or topics[image_topic] not in IMAGE_TYPES:
            raise DatasetError(
                f"image topic {image_topic!r} ({topics.get(image_topic, 'missing')}) is not an "
                f"Image or CompressedImage topic of {input_path}; topics: {_topic_listing(reader)}"
            )
        if camera_info_topic is None:
            sibling = image_topic.removesuffix("/compressed").rsplit("/", 1)[0] + "/camera_info"
            camera_info_topic = sibling if topics.get(sibling) == CAMERA_INFO_TYPE else None
        elif topics.get(camera_info_topic) != CAMERA_INFO_TYPE:
            raise DatasetError(
                f"camera info topic {camera_info_topic!r} is not a CameraInfo topic of "
                f"{input_path}; topics: {_topic_listing(reader)}"
            )
        if camera_info_topic is None and not cfg.fallback_intrinsics:
            raise DatasetError(
                f"no CameraInfo topic found for {image_topic} in {input_path}; pass "
                "--camera-info-topic or --set fallback_intrinsics=[fx,fy,cx,cy]"
            )
        if odometry_topic is not None and topics.get(odometry_topic) != ODOMETRY_TYPE:
            raise DatasetError(
                f"odometry topic {odometry_topic!r} is not a nav_msgs/Odometry topic of "
                f"{input_path}; topics: {_topic_listing(reader)}"
            )
        _prepare_output(output, overwrite, [previews_dir] if num_previews else [])
        typestore = get_typestore(Stores.ROS2_HUMBLE)
        pipeline = DepthOdometryPipeline(cfg, cv.rosbags_types(typestore), estimator)
        total = sum(c.msgcount for c in reader.connections if c.topic == image_topic)
        with (
            Writer(output, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer,
            logging_redirect_tqdm(),
        ):
            bar = tqdm(total=total, unit="frame", disable=not progress, desc="sfm-ros bag")
            run = _BagRun(reader, writer, typestore, pipeline, namespace, total, num_previews)
            try:
                run.loop(image_topic, camera_info_topic, odometry_topic, bar)
            finally:
                bar.close()
        summary = run.summary(output)
        if num_previews:
            summary.previews = run.write_previews(previews_dir)
            summary.plot = run.write_plot(previews_dir, cfg.scale_source)
            (previews_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
        return summary
    finally:
        reader.close()


class _BagRun:
    """State of one `process_bag` run: writer connections, counters, preview material."""

    def __init__(
        self,
        reader: AnyReader,
        writer: Writer,
        typestore: Any,
        pipeline: DepthOdometryPipeline,
        namespace: str,
        total: int,
        num_previews: int,
    ) -> None:
        self.reader, self.writer, self.typestore, self.pipeline = (
            reader,
            writer,
            typestore,
            pipeline,
        )
        self.namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.conns: dict[tuple[str, str], Any] = {}
        self.counts: Counter = Counter()
        self.frames_in = self.decode_errors = 0
        self.write_s = 0.0
        self.stage_s: Counter = Counter()
        self.poses: list[np.ndarray] = []
        self.references: dict[str, list[np.ndarray]] = {}
        picks = np.linspace(0, max(total - 1, 0), num_previews).round() if num_previews else []
        self.preview_at = sorted({int(i) for i in picks})
        self.previews: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.start = time.perf_counter()

    def _conn(self, topic: str, msgtype: str, **kwargs: Any) -> Any:
        key = (topic, msgtype)
        if key not in self.conns:
            store = kwargs.pop("typestore", self.typestore)
            self.conns[key] = self.writer.add_connection(topic, msgtype, typestore=store, **kwargs)
        return self.conns[key]

    def _write(self, topic: str, msg: Any, t_ns: int) -> None:
        conn = self._conn(topic, msg.__msgtype__)
        self.writer.write(conn, t_ns, self.typestore.serialize_cdr(msg, msg.__msgtype__))
        self.counts[topic] += 1

    def loop(
        self, image_topic: str, info_topic: str | None, odom_topic: str | None, bar: Any
    ) -> None:
        reader, pipeline = self.reader, self.pipeline
        if not reader.is2:
            log.warning("ROS 1 bag: input topics are not copied to the output (outputs only)")
        for conn, t_ns, raw in reader.messages():
            if reader.is2:
                out_conn = self._conn(
                    conn.topic, conn.msgtype, typestore=reader.typestore,
                    offered_qos_profiles=conn.ext.offered_qos_profiles,
                )  # fmt: skip
                self.writer.write(out_conn, t_ns, raw)
                self.counts[conn.topic] += 1
            wanted = (image_topic, info_topic, odom_topic)
            if conn.topic not in wanted and conn.msgtype != ODOMETRY_TYPE:
                continue
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - rosbags raises assorted errors on bad CDR
                log.warning(
                    "cannot deserialize a %s message on %s: %s", conn.msgtype, conn.topic, exc
                )
                if conn.topic == image_topic:
                    self.frames_in += 1
                    self.decode_errors += 1
                    bar.update()
                continue
            if conn.topic == info_topic:
                pipeline.on_camera_info(msg)  # ROS 1 ``K``/``P`` names too
            elif conn.topic == image_topic:
                self._image(msg, t_ns)
                bar.update()
            if conn.msgtype == ODOMETRY_TYPE:
                if conn.topic == odom_topic:
                    pipeline.on_odometry(msg)
                self._reference(conn.topic, msg)

    def _image(self, msg: Any, t_ns: int) -> None:
        index = self.frames_in
        self.frames_in += 1
        result = self.pipeline.process(msg)
        if result is None:
            return
        t0 = time.perf_counter()
        for name, out in result.messages.items():
            self._write(f"{self.namespace}/{name}", out, t_ns)
        if result.transforms:
            self._write("/tf", cv.tf_message(self.pipeline.types, result.transforms), t_ns)
        self.write_s += time.perf_counter() - t0
        self.stage_s.update(result.timings)
        self.poses.append(result.odometry.T_odom_base)
        if self.preview_at and index >= self.preview_at[0]:
            self.preview_at.pop(0)
            self.previews.append((index, result.image, result.depth_m))

    def _reference(self, topic: str, msg: Any) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        T = np.eye(4)
        T[:3, :3] = cv.matrix_from_quaternion([q.x, q.y, q.z, q.w])
        T[:3, 3] = [p.x, p.y, p.z]
        self.references.setdefault(topic, []).append(T)

    def summary(self, output: Path) -> BagSummary:
        stats = self.pipeline.stats
        wall = time.perf_counter() - self.start
        n = max(stats.frames_processed, 1)
        stage_ms = {k: 1e3 * self.stage_s[k] / n for k in ("convert", "inference", "outputs")}
        stage_ms["write"] = 1e3 * self.write_s / n
        reasons = dict(stats.skipped_by_reason)
        if self.decode_errors:
            reasons["deserialize"] = self.decode_errors
        return BagSummary(
            output=str(output),
            frames_in=self.frames_in,
            frames_processed=stats.frames_processed,
            frames_skipped=stats.frames_skipped + self.decode_errors,
            resets=stats.resets,
            skipped_by_reason=reasons,
            wall_s=wall,
            fps=stats.frames_processed / wall if wall > 0 else 0.0,
            stage_ms=stage_ms,
            topics=dict(self.counts),
            scale_source=self.pipeline.cfg.scale_source,
            scale=self.pipeline.scale,
        )

    def write_previews(self, folder: Path) -> list[str]:
        from sfm_ros.core.visualize import colorize_depth, save_png

        paths = []
        for index, image, depth in self.previews:
            panel = np.concatenate([image, colorize_depth(depth)], axis=0)
            paths.append(str(save_png(folder / f"depth_{index:06d}.png", panel)))
        return paths

    def write_plot(self, folder: Path, scale_source: str) -> str | None:
        from sfm_ros.core.visualize import plot_trajectories

        if not self.poses:
            return None
        trajectories = {f"sfm_ros ({scale_source} scale)": _body_xy_for_plot(np.stack(self.poses))}
        for topic, poses in self.references.items():
            T = np.stack(poses)
            trajectories[topic] = _body_xy_for_plot(invert_se3(T[0]) @ T)
        path = plot_trajectories(
            folder / "trajectory.png", trajectories, title="odometry (top view, first pose at 0)"
        )
        return str(path)


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
    from sfm_ros.core.sources import open_source

    seqs = open_source(str(images))
    if len(seqs) > 1:
        log.warning("%s holds %d sequences; using the first, %s", images, len(seqs), seqs[0].name)
    seq = seqs[0]
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
) -> Path:
    """Write a rosbag2 of a synthetic sequence (``synthetic`` = domain) or of ``images``.

    ``images`` is anything `sfm_ros.core.sources.open_source` reads (image folder, KITTI
    sequence or drive, bag); the first sequence found is used, at its own resolution.
    """
    if (synthetic is None) == (images is None):
        raise ConfigError("make-bag needs exactly one of --synthetic DOMAIN or --images PATH")
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
    if frames < 1 or fps <= 0:
        raise ConfigError(f"need frames >= 1 and fps > 0, got {frames}, {fps}")
    out = Path(out)
    _prepare_output(out, overwrite, [])
    rgb, Ks, stamps, T_world_cam = _frames_from_source(
        synthetic, images, frames, seed, height, width, fps
    )
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    types = cv.rosbags_types(typestore)
    T_world_base = None
    if T_world_cam is not None:  # body frame at the camera, relative to the first frame
        T_world_body = T_world_cam @ invert_se3(T_BODY_OPTICAL)
        T_world_base = invert_se3(T_world_body[0]) @ T_world_body
    topics = {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera_info": CAMERA_INFO_TYPE,
        "/ground_truth/odom": ODOMETRY_TYPE,
    }
    with Writer(out, version=BAG_VERSION, storage_plugin=STORAGES[storage]) as writer:
        conns = {t: writer.add_connection(t, m, typestore=typestore) for t, m in topics.items()}

        def write(topic: str, msg: Any, t_ns: int) -> None:
            writer.write(conns[topic], t_ns, typestore.serialize_cdr(msg, msg.__msgtype__))

        for i, (image, K, t_ns) in enumerate(zip(rgb, Ks, stamps, strict=True)):
            t_ns = int(t_ns)
            hdr = cv.header(types, t_ns, camera_frame)
            h, w = image.shape[:2]
            write("/camera/camera_info", cv.camera_info_msg(types, K, w, h, hdr), t_ns)
            write("/camera/image_raw", cv.numpy_to_image(types, image, "rgb8", hdr), t_ns)
            if T_world_base is not None:
                write("/ground_truth/odom", _gt_odometry(types, T_world_base, stamps, i), t_ns)
    return out


def _gt_odometry(types: cv.MsgTypes, T_odom_base: np.ndarray, stamps: np.ndarray, i: int) -> Any:
    """Ground-truth Odometry of frame ``i`` (twist from the previous frame, tiny covariance)."""
    v = w = np.zeros(3)
    if i > 0:
        dt = (stamps[i] - stamps[i - 1]) * 1e-9
        v, w = se3_log(invert_se3(T_odom_base[i - 1]) @ T_odom_base[i])
        v, w = v / dt, w / dt
    cov = np.eye(6) * 1e-9
    hdr = cv.header(types, int(stamps[i]), "odom_gt")
    return cv.odometry_msg(types, hdr, "base_link_gt", T_odom_base[i], v, w, cov, cov)

"""``sfm-ros bag``: the node's pipeline over a recorded bag, without ROS.

`process_bag` (``sfm-ros bag``) reads a rosbag2 (sqlite3 or mcap) or ROS 1 bag in time order,
feeds `DepthOdometryPipeline` exactly as the node would, and writes a rosbag2 holding the input
topics (copied raw; ROS 1 inputs are not copied) plus the outputs under a namespace::

    <ns>/depth  <ns>/depth/camera_info  <ns>/depth/colormap  <ns>/points  <ns>/odom
    <ns>/depth_mm  <ns>/flow  <ns>/explainability   (when enabled)
    /tf                                              (when publish_tf)

Output messages carry the input image's header stamp and are logged at the image's bag time.
As in the node, the odometry is ``base_frame``'s: ``base_frame <- camera`` comes from the bag's
``/tf_static`` (then ``/tf``); until it is found, the standard optical rotation at the base origin.
With ``imu_topic`` (``--imu-topic``), its sensor_msgs/Imu messages reach the pipeline's gyroscope
in bag order, between the images, and the ``camera <- IMU`` rotation comes from the bag's
``/tf_static`` (then ``/tf``), composed through the frames' common ancestor; without one the
gyroscope is not used (one warning).
Next to the output bag, in the sibling folder ``OUTPUT_previews/``, go a few depth previews
(``depth_NNNNNN.png``: image above depth, above ``depth/confidence`` when it is published:
Turbo from 0, blue, to 1, red), ``trajectory.png`` (with any nav_msgs/Odometry topic
of the input, e.g. ground truth, for comparison) and ``summary.json``. The output is written
through `sfm_ros.messages.bag_io.BagOutput`: never over an input or a file this package did not
write, and only renamed into place when the run succeeded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core.errors import ConfigError, DatasetError
from sfm_ros.core.frames import R_BODY_OPTICAL
from sfm_ros.core.lie import se3_inverse
from sfm_ros.messages.bag_io import (
    BAG_VERSION,
    CAMERA_INFO_TYPE,
    IMAGE_TYPES,
    IMU_TYPE,
    ODOMETRY_TYPE,
    BagOutput,
    check_storage,
    clear_previews,
    open_reader,
)
from sfm_ros.messages.static_tf import TF_STATIC_TOPIC, TF_TOPIC, TF_TYPE, TransformTree
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.frame_pipeline import DepthOdometryPipeline

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- helpers
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
    pose_source: str
    gyroscope_frames: int | None = None
    """Frames whose rotation is the gyroscope's (None without an IMU topic)."""
    gyroscope: dict[str, str] = field(default_factory=dict)
    """The gyroscope's state at the end, as on `/diagnostics`; empty without an IMU topic."""
    tracking: dict[str, str] = field(default_factory=dict)
    """The keyframe tracker's counts at the end (refinement fallbacks, keyframe switches, the
    fused rotation's weight), as on `/diagnostics`; empty for ``pose_source: network``."""
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
            f"pose source: {self.pose_source}",
        ]
        if self.tracking:
            keys = ("refinement fallbacks", "fallbacks by reason", "keyframe switches")
            lines[-1] += " (" + ", ".join(f"{k} {self.tracking[k]}" for k in keys) + ")"
        if self.gyroscope_frames is not None:
            state = self.gyroscope.get("gyroscope", "off (use_imu false)")
            lines.append(
                f"gyroscope: rotation of {self.gyroscope_frames} of {self.frames_processed} "
                f"frames (at the end: {state})"
            )
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
    imu_topic: str | None = None,
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
        imu_topic: sensor_msgs/Imu for the gyroscope (``use_imu``); ``camera <- IMU`` from the
            bag's ``/tf_static`` (or ``/tf``).
        storage: "sqlite3" or "mcap".
        namespace: prefix of the output topics.
        num_previews: depth previews written next to the output (0 = none, and no plot).
        estimator: a ready `DepthPoseEstimator` (tests); default loaded from ``cfg``.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    cfg = cfg or PipelineConfig()
    input_path, output = Path(input_path), Path(output_path)
    plugin = check_storage(storage)
    if num_previews < 0:
        raise ConfigError(f"--previews must be >= 0, got {num_previews}")
    previews_dir = output.parent / f"{output.name}_previews"
    bag_output = BagOutput(output, overwrite, [input_path], "sfm-ros bag")
    if num_previews:
        clear_previews(previews_dir, overwrite, [input_path])
    reader = open_reader(input_path)
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
        if imu_topic is not None and topics.get(imu_topic) != IMU_TYPE:
            raise DatasetError(
                f"IMU topic {imu_topic!r} is not a sensor_msgs/msg/Imu topic of "
                f"{input_path}; topics: {_topic_listing(reader)}"
            )
        if imu_topic is not None and not cfg.use_imu:
            log.warning("use_imu is false: %s is copied but the gyroscope is not used", imu_topic)
        transforms = _BagTransforms(reader, cfg, use_imu=bool(imu_topic) and cfg.use_imu)
        typestore = get_typestore(Stores.ROS2_HUMBLE)
        pipeline = DepthOdometryPipeline(cfg, cv.rosbags_types(typestore), estimator)
        total = sum(c.msgcount for c in reader.connections if c.topic == image_topic)
        with (
            bag_output as tmp,
            Writer(tmp, version=BAG_VERSION, storage_plugin=plugin) as writer,
            logging_redirect_tqdm(),
        ):
            bar = tqdm(total=total, unit="frame", disable=not progress, desc="sfm-ros bag")
            run = _BagRun(
                reader, writer, typestore, pipeline, namespace, total, num_previews, transforms
            )
            try:
                run.loop(image_topic, camera_info_topic, odometry_topic, imu_topic, bar)
            finally:
                bar.close()
            if pipeline.stats.frames_processed == 0:
                reasons = dict(pipeline.stats.skipped_by_reason)
                raise DatasetError(
                    f"no frame of {image_topic} in {input_path} could be processed "
                    f"({run.frames_in} read; skipped: {reasons or 'none'}); no output written"
                )
        summary = run.summary(output)
        if imu_topic is not None:
            summary.gyroscope_frames = run.gyro_frames
            summary.gyroscope = {
                k: v for k, v in pipeline.diagnostics().items() if k.startswith("gyroscope")
            }
        if num_previews:
            summary.previews = run.write_previews(previews_dir)
            summary.plot = run.write_plot(previews_dir, cfg.scale_source)
            (previews_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
        return summary
    finally:
        reader.close()


class _BagTransforms:
    """Gives the pipeline its extrinsics from the bag's transforms, as the node does with TF:
    ``base_frame <- camera`` before each frame until found (until then the pipeline assumes the
    standard optical rotation and says so once), ``camera <- IMU`` once the IMU's frame is
    known. ``/tf_static`` is read up front, ``/tf`` (assumed rigid between the frames looked
    up) as it comes while a transform is missing, never over a static transform."""

    def __init__(self, reader: AnyReader, cfg: PipelineConfig, use_imu: bool) -> None:
        self.camera_frame, self.base_frame, self.use_imu = cfg.camera_frame, cfg.base_frame, use_imu
        self.camera_known = False
        self.tree = TransformTree()
        static = [
            c for c in reader.connections if c.topic == TF_STATIC_TOPIC and c.msgtype == TF_TYPE
        ]
        for conn, _, raw in reader.messages(connections=static) if static else ():
            try:
                self.tree.add_message(reader.deserialize(raw, conn.msgtype))
            except Exception as exc:  # noqa: BLE001 - rosbags raises assorted errors on bad CDR
                log.warning("cannot deserialize a /tf_static message: %s", exc)
        self._warned: set[tuple[str, str]] = set()

    def missing(self, pipeline: DepthOdometryPipeline) -> bool:
        """Whether a transform is still looked for (then ``/tf`` is worth reading)."""
        return not self.camera_known or (self.use_imu and pipeline.gyro_gate.gyro.R_cam_imu is None)

    def add_tf(self, msg: Any) -> None:
        """A ``/tf`` message: its transforms for frames no static transform gives."""
        self.tree.add_message(msg, overwrite=False)

    def before_frame(self, pipeline: DepthOdometryPipeline, image_frame: str) -> None:
        """Set ``base_frame <- camera`` on the pipeline once the bag's transforms give it."""
        camera = self.camera_frame or image_frame
        if self.camera_known or not camera:
            return
        if camera == self.base_frame:  # nothing to look up: the pipeline's assumption stands
            self.camera_known = True
            return
        T_base_cam = self.tree.lookup(self.base_frame, camera)
        if T_base_cam is not None:
            pipeline.set_camera_extrinsics(T_base_cam, camera)
            self.camera_known = True
            log.info("camera extrinsics from the bag's transforms: '%s' <- '%s'",
                     self.base_frame, camera)  # fmt: skip

    def after_frame(self, pipeline: DepthOdometryPipeline, image_frame: str) -> None:
        """Set the pipeline's ``camera <- IMU`` once its IMU frame is known and it has none."""
        imu_frame = pipeline.gyro_gate.imu_frame_id
        if not self.use_imu or imu_frame is None or pipeline.gyro_gate.gyro.R_cam_imu is not None:
            return
        camera = self.camera_frame or image_frame
        T_cam_imu = self.tree.lookup(camera, imu_frame)
        if T_cam_imu is None:
            if (camera, imu_frame) not in self._warned:
                self._warned.add((camera, imu_frame))
                log.warning(
                    "no '%s' <- '%s' transform in /tf_static or /tf: the gyroscope is not used",
                    camera, imu_frame,
                )  # fmt: skip
            return
        pipeline.set_imu_extrinsics(T_cam_imu)
        late = " (from /tf, after all: the gyroscope is used from now on)"
        log.info(
            "IMU extrinsics from the bag's transforms: '%s' <- '%s'%s",
            camera, imu_frame, late if (camera, imu_frame) in self._warned else "",
        )  # fmt: skip


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
        transforms: _BagTransforms,
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
        self.transforms = transforms
        self.gyro_frames = 0
        picks = np.linspace(0, max(total - 1, 0), num_previews).round() if num_previews else []
        self.preview_at = sorted({int(i) for i in picks})
        self.previews: list[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]] = []
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
        self,
        image_topic: str,
        info_topic: str | None,
        odom_topic: str | None,
        imu_topic: str | None,
        bar: Any,
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
            wanted = (image_topic, info_topic, odom_topic, imu_topic)
            tf = (conn.topic, conn.msgtype) == (TF_TOPIC, TF_TYPE) and self.transforms.missing(
                pipeline
            )  # /tf only while an extrinsic transform is missing
            if conn.topic not in wanted and conn.msgtype != ODOMETRY_TYPE and not tf:
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
            elif conn.topic == imu_topic:
                pipeline.on_imu(msg)
            elif tf:
                self.transforms.add_tf(msg)
            if conn.msgtype == ODOMETRY_TYPE:
                if conn.topic == odom_topic:
                    pipeline.on_odometry(msg)
                self._reference(conn.topic, msg)

    def _image(self, msg: Any, t_ns: int) -> None:
        index = self.frames_in
        self.frames_in += 1
        self.transforms.before_frame(self.pipeline, msg.header.frame_id)
        result = self.pipeline.process(msg)
        self.transforms.after_frame(self.pipeline, msg.header.frame_id)
        if result is None:
            return
        self.gyro_frames += self.pipeline.gyro_gate.used
        t0 = time.perf_counter()
        for name, out in result.messages.items():
            self._write(f"{self.namespace}/{name}", out, t_ns)
        if result.transforms:
            self._write(TF_TOPIC, cv.tf_message(self.pipeline.types, result.transforms), t_ns)
        self.write_s += time.perf_counter() - t0
        self.stage_s.update(result.timings)
        self.poses.append(result.odometry.T_odom_base)
        if self.preview_at and index >= self.preview_at[0]:
            self.preview_at.pop(0)
            self.previews.append((index, result.image, result.depth_m, result.confidence))

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
            pose_source=self.pipeline.cfg.pose_source,
            tracking=self.pipeline.tracking_diagnostics(),
        )

    def write_previews(self, folder: Path) -> list[str]:
        from sfm_ros.core.visualize import colorize, colorize_depth, save_png

        paths = []
        for index, image, depth, confidence in self.previews:
            panels = [image, colorize_depth(depth)]
            if confidence is not None:
                panels.append(colorize(confidence, 0.0, 1.0))
            panel = np.concatenate(panels, axis=0)
            paths.append(str(save_png(folder / f"depth_{index:06d}.png", panel)))
        return paths

    def write_plot(self, folder: Path, scale_source: str) -> str | None:
        from sfm_ros.core.visualize import plot_trajectories

        if not self.poses:
            return None
        trajectories = {f"sfm_ros ({scale_source} scale)": _body_xy_for_plot(np.stack(self.poses))}
        for topic, poses in self.references.items():
            T = np.stack(poses)
            trajectories[topic] = _body_xy_for_plot(se3_inverse(T[0]) @ T)
        path = plot_trajectories(
            folder / "trajectory.png", trajectories, title="odometry (top view, first pose at 0)"
        )
        return str(path)

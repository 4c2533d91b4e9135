"""`sfm-ros make-bag` and `sfm-ros bag` end to end (no ROS): bags written and read with rosbags."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from conftest import imu_message, rigid, tf_message
from sfm_ros import messages as cv
from sfm_ros.cli import main
from sfm_ros.core import checkpoint
from sfm_ros.core.config import parse_overrides
from sfm_ros.core.errors import ConfigError
from sfm_ros.core.frames import T_BODY_OPTICAL
from sfm_ros.core.lie import se3_inverse
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.pipeline import frame_pipeline as pl
from sfm_ros.pipeline.params_file import load_params_file, pipeline_config

FRAMES = 4
IMAGE = "/camera/image_raw"
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
TYPES = cv.rosbags_types(TYPESTORE)


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time, message)] in time order."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=TYPESTORE) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
    return out


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    """Synthetic input bags, one per storage plugin."""
    out = {}
    for storage in ("sqlite3", "mcap"):
        out[storage] = tmp_path_factory.mktemp(storage) / "in_bag"
        args = ["make-bag", "--synthetic", "street", "--frames", str(FRAMES), "--height", "32",
                "--width", "96", "--fps", "5", "--storage", storage,
                "--out", str(out[storage])]  # fmt: skip
        assert main(args) == 0
    return out


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_make_bag_contents(bags, storage):
    assert next(bags[storage].glob(f"*.{'db3' if storage == 'sqlite3' else 'mcap'}"))
    msgs = read_bag(bags[storage])
    assert set(msgs) == {IMAGE, "/camera/camera_info", "/ground_truth/odom"}
    images = [m for _, m in msgs[IMAGE]]
    assert len(images) == FRAMES and all(m.encoding == "rgb8" for m in images)
    assert {m.header.frame_id for m in images} == {"camera_optical_frame"}
    stamps = [cv.stamp_to_ns(m.header.stamp) for m in images]
    assert np.all(np.diff(stamps) == 200_000_000)  # 5 fps
    gt = [m for _, m in msgs["/ground_truth/odom"]]
    x = [m.pose.pose.position.x for m in gt]
    assert x[0] == 0.0 and np.all(np.diff(x) > 0.3)  # the street camera drives forward (+x)
    assert gt[-1].twist.twist.linear.x > 0


def test_bag_end_to_end(bags, tiny_checkpoint, tmp_path, capsys):
    """mcap in, sqlite3 out (the default)."""
    synthetic_bag, out = bags["mcap"], tmp_path / "out_bag"
    args = ["bag", str(synthetic_bag), str(out), "--image-topic", IMAGE, "--checkpoint",
            str(tiny_checkpoint), "--no-progress", "--set", "publish_tf=true",
            "publish_depth_mm=true"]  # fmt: skip
    assert main([*args, "--previews", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"frames: {FRAMES} in, {FRAMES} processed, 0 skipped" in printed
    assert "frames/s" in printed and "inference" in printed

    inputs = read_bag(synthetic_bag)
    outputs = read_bag(out)
    expected = {"/sfm/depth", "/sfm/depth/camera_info", "/sfm/depth_mm", "/sfm/depth/colormap",
                "/sfm/points", "/sfm/odom", "/tf"}  # fmt: skip
    assert set(outputs) == set(inputs) | expected
    in_stamps = [cv.stamp_to_ns(m.header.stamp) for _, m in inputs[IMAGE]]
    in_times = [t for t, _ in inputs[IMAGE]]
    for topic in expected - {"/tf"}:
        assert len(outputs[topic]) == FRAMES, topic
        assert [cv.stamp_to_ns(m.header.stamp) for _, m in outputs[topic]] == in_stamps
        assert [t for t, _ in outputs[topic]] == in_times
    for (_, depth), (_, image) in zip(outputs["/sfm/depth"], inputs[IMAGE], strict=True):
        assert (depth.encoding, depth.height, depth.width) == ("32FC1", image.height, image.width)
        assert depth.header.frame_id == image.header.frame_id
        assert cv.image_to_numpy(depth).shape == (image.height, image.width)
    assert {m.encoding for _, m in outputs["/sfm/depth_mm"]} == {"16UC1"}
    odom = [m for _, m in outputs["/sfm/odom"]]
    assert np.all(np.diff([cv.stamp_to_ns(m.header.stamp) for m in odom]) > 0)
    assert {(m.header.frame_id, m.child_frame_id) for m in odom} == {("odom", "base_link")}
    tfs = [m.transforms[0] for _, m in outputs["/tf"]]
    assert len(tfs) == FRAMES and tfs[0].child_frame_id == "base_link"

    previews = out.parent / "out_bag_previews"
    assert (previews / "trajectory.png").stat().st_size > 1000
    assert len(list(previews.glob("depth_*.png"))) == 2
    summary = json.loads((previews / "summary.json").read_text())
    assert summary["frames_processed"] == FRAMES and summary["topics"]["/sfm/odom"] == FRAMES
    assert summary["pose_source"] == "fused"  # the default: the tracker ran, its counts are kept
    assert summary["tracking"]["refinement outcome"] in pl.TRACK_REASONS

    # The output exists now: refused without --overwrite, replaced with it.
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--previews", "0", "--overwrite"]) == 0
    assert len(read_bag(out)["/sfm/odom"]) == FRAMES
    # with depth/confidence, the previews show it under the depth
    confident = [*args, "publish_confidence=true", "--previews", "1", "--overwrite"]
    assert main(confident) == 0
    assert len(read_bag(out)["/sfm/depth/confidence"]) == FRAMES
    (preview,) = previews.glob("depth_*.png")
    height = inputs[IMAGE][0][1].height
    assert np.asarray(Image.open(preview)).shape[0] == 3 * height


def test_bag_errors(bags, tmp_path, capsys, monkeypatch):
    synthetic_bag = bags["sqlite3"]
    missing = ["bag", str(tmp_path / "nope"), str(tmp_path / "o"), "--image-topic", IMAGE]
    assert main(missing) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bag", str(synthetic_bag), str(tmp_path / "o"), "--image-topic", "/cam"]) == 2
    err = capsys.readouterr().err
    assert "'/cam'" in err and IMAGE in err and "/ground_truth/odom" in err  # lists the topics
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", tmp_path / "absent.pt")
    assert main(["bag", str(synthetic_bag), str(tmp_path / "o"), "--image-topic", IMAGE]) == 2
    assert "sfm-ros train" in capsys.readouterr().err
    for imu in ("/camera/camera_info", "/imu"):  # a wrong type, a missing topic
        assert main(["bag", str(synthetic_bag), str(tmp_path / "o"), "--image-topic", IMAGE,
                     "--imu-topic", imu]) == 2  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert f"IMU topic '{imu}' is not a sensor_msgs/msg/Imu topic" in err and "\n" not in err
        assert IMAGE in err and "/ground_truth/odom" in err  # lists the topics
    bad_set = ["bag", str(synthetic_bag), str(tmp_path / "o"), "--image-topic", IMAGE,
               "--set", "scale_source=lidar"]  # fmt: skip
    assert main(bad_set) == 2
    assert "scale_source" in capsys.readouterr().err


def test_params_file_and_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "sfm_depth_node:\n  ros__parameters:\n    scale_source: fixed\n    scale_factor: 2\n"
        "    image_qos: sensor_data\n"  # a node-only parameter: ignored here
    )
    assert load_params_file(params)["scale_factor"] == 2
    cfg = pipeline_config(params, ["publish_tf=true", "fallback_intrinsics=[1, 2, 3, 4]"], "c.pt")
    assert (cfg.scale_source, cfg.scale_factor, cfg.publish_tf) == ("fixed", 2.0, True)
    assert cfg.fallback_intrinsics == [1.0, 2.0, 3.0, 4.0] and cfg.checkpoint == "c.pt"
    assert parse_overrides(["a= 0.5"]) == {"a": 0.5}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])
    with pytest.raises(ConfigError, match="unknown parameter"):
        pipeline_config(None, ["image_qos=x"])
    both = tmp_path / "both.yaml"
    both.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: false\n"
        "/**/depth_odometry:\n  ros__parameters:\n    checkpoint: mine.pt\n"
        "/**/finetune:\n  ros__parameters:\n    checkpoint: ''\n"
    )
    assert load_params_file(both) == {"use_sim_time": False, "checkpoint": "mine.pt"}
    (tmp_path / "flat.yaml").write_text("scale_source: fixed\n")
    with pytest.raises(ConfigError, match="ros__parameters"):
        load_params_file(tmp_path / "flat.yaml")


def write_bad_bag(path: Path) -> list[int]:
    """A bag with one problem after another; returns the stamps of the frames that are usable.

    0: only a zero-K CameraInfo before it (skipped)      5: 64x96 with its CameraInfo (reset)
    1, 2: fine                                           6: stamp earlier than frame 5 (reset)
    3: encoding nv21 (skipped)                           7: fine
    4: truncated data (skipped)
    """
    small = render_sequence("street", 8, seed=4, height=32, width=96)
    big = np.repeat(small.images, 2, axis=1)
    K_big = small.K * np.array([[1.0], [2.0], [1.0]])
    K_big[1, 2] = (small.K[1, 2] + 0.5) * 2 - 0.5
    period = 100_000_000
    stamps = [10**9 + i * period for i in range(8)]
    stamps[6] = stamps[5] - period // 2
    good = [stamps[i] for i in (1, 2, 5, 6, 7)]
    with Writer(path, version=8) as writer:
        c_img = writer.add_connection(IMAGE, "sensor_msgs/msg/Image", typestore=TYPESTORE)
        c_info = writer.add_connection(
            "/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TYPESTORE
        )

        def write(conn, msg, t):
            writer.write(conn, t, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

        for i, stamp in enumerate(stamps):
            t_log = 10**9 + i * period  # log time keeps increasing
            hdr = cv.header(TYPES, stamp, "cam")
            image, K = (big[i], K_big) if i >= 5 else (small.images[i], small.K)
            info_K = np.zeros((3, 3)) if i == 0 else K
            write(c_info, cv.camera_info_msg(TYPES, info_K, 96, image.shape[0], hdr), t_log)
            msg = cv.numpy_to_image(TYPES, image, "rgb8", hdr)
            if i == 3:
                msg.encoding = "nv21"
            if i == 4:
                msg.data = msg.data[: len(msg.data) // 2]
            write(c_img, msg, t_log)
    return good


def test_bad_bag_completes_with_skips_and_resets(tiny_checkpoint, tmp_path, capsys):
    good = write_bad_bag(tmp_path / "bad")
    out = tmp_path / "bad_out"
    args = ["bag", str(tmp_path / "bad"), str(out), "--image-topic", IMAGE, "--checkpoint",
            str(tiny_checkpoint), "--no-progress", "--previews", "1"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "frames: 8 in, 5 processed, 3 skipped" in printed and "2 resets" in printed
    assert "decode: 2" in printed and "no_camera_info: 1" in printed
    outputs = read_bag(out)
    depth = [m for _, m in outputs["/sfm/depth"]]
    assert [cv.stamp_to_ns(m.header.stamp) for m in depth] == good
    assert [m.height for m in depth] == [32, 32, 64, 64, 64]
    assert len(outputs[IMAGE]) == 8  # every input message is copied, bad ones included
    summary = json.loads((tmp_path / "bad_out_previews" / "summary.json").read_text())
    assert summary["skipped_by_reason"] == {"decode": 2, "no_camera_info": 1}


def test_unwritable_outputs_and_bad_preview_count_are_one_line_errors(bags, tmp_path, capsys):
    """An output below a regular file cannot be created (chmod tricks do not stop root)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    out = blocker / "out_bag"
    make = ["make-bag", "--synthetic", "street", "--frames", "2", "--height", "32", "--width",
            "96", "--out", str(out)]  # fmt: skip
    bag = ["bag", str(bags["sqlite3"]), str(out), "--image-topic", IMAGE, "--no-progress"]
    for args in (make, bag, [*bag[:2], str(tmp_path / "fine"), *bag[3:], "--previews", "-1"]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("sfm-ros: error:") and "\n" not in err, err
        assert ("cannot write the output" in err) or ("--previews must be >= 0" in err), err
    assert blocker.read_text() == "user data" and not (tmp_path / "fine").exists()


# ---------------------------------------------------------------------------- --imu-topic
IMU = "/imu"


T_BASE_CAMLINK = rigid((0.0, 5.0, 0.0), (0.2, 0.0, 0.3))  # pitched 5 degrees down
T_BASE_IMU = rigid((180.0, 0.0, 90.0), (-0.1, 0.05, 0.1))
T_OPTICAL_IMU = se3_inverse(T_BASE_CAMLINK @ T_BODY_OPTICAL) @ T_BASE_IMU


def with_imu(src: Path, dst: Path, imu_on_tf: bool = False) -> list[int]:
    """``src`` (a `bags` bag) plus ``/imu`` at 100 Hz (imu_link, 5 ms off the image times) and
    the camera's and IMU's mounts on ``/tf_static``; with ``imu_on_tf`` the IMU's comes on
    ``/tf`` after the second image instead. Returns the IMU's log times."""
    events = [(t, topic, msg) for topic, msgs in read_bag(src).items() for t, msg in msgs]
    image_times = sorted(t for t, topic, _ in events if topic == IMAGE)
    camera = [("base_link", "camera_link", T_BASE_CAMLINK),
              ("camera_link", "camera_optical_frame", T_BODY_OPTICAL)]  # fmt: skip
    imu_mount = [("base_link", "imu_link", T_BASE_IMU)]
    start = image_times[0] - 1_000_000
    events.append((start, "/tf_static", tf_message(camera + ([] if imu_on_tf else imu_mount), 0)))
    if imu_on_tf:
        events.append((image_times[1] + 1_000_000, "/tf", tf_message(imu_mount, image_times[1])))
    imu_times = list(range(image_times[0] - 25_000_000, image_times[-1] + 30_000_000, 10_000_000))
    for t in imu_times:
        imu = imu_message(t, (0.0, 0.0, 0.05))
        events.append((t, IMU, imu))
    with Writer(dst, version=8) as writer:
        conns = {}
        for t, topic, msg in sorted(events, key=lambda e: e[0]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=TYPESTORE)
            writer.write(conns[topic], t, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return imu_times


@pytest.fixture
def spy(monkeypatch) -> dict[str, list]:
    """Records the pipeline's set_imu_extrinsics calls and the Imu messages queued before each
    image is processed."""
    seen: dict[str, list] = {"imu": [], "before_frame": [], "extrinsics": []}
    cls = pl.DepthOdometryPipeline
    on_imu, process, set_imu = cls.on_imu, cls.process, cls.set_imu_extrinsics

    def spy_on_imu(self, msg):
        seen["imu"].append(cv.stamp_to_ns(msg.header.stamp))
        on_imu(self, msg)

    def spy_process(self, msg, outputs=None):
        seen["before_frame"].append(len(seen["imu"]))
        return process(self, msg, outputs)

    def spy_set_imu(self, T_cam_imu):
        seen["extrinsics"].append((len(seen["before_frame"]), np.array(T_cam_imu)))
        set_imu(self, T_cam_imu)

    monkeypatch.setattr(cls, "on_imu", spy_on_imu)
    monkeypatch.setattr(cls, "process", spy_process)
    monkeypatch.setattr(cls, "set_imu_extrinsics", spy_set_imu)
    return seen


def test_bag_feeds_the_imu_between_images_with_the_static_mounts(
    bags, tiny_checkpoint, tmp_path, capsys, spy
):
    imu_times = with_imu(bags["sqlite3"], tmp_path / "imu_bag")
    out = tmp_path / "imu_out"
    args = ["bag", str(tmp_path / "imu_bag"), str(out), "--image-topic", IMAGE, "--imu-topic",
            IMU, "--checkpoint", str(tiny_checkpoint), "--no-progress",
            "--previews", "0"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"frames: {FRAMES} in, {FRAMES} processed" in printed
    # four tiny frames: too few to check the gyro against the camera, whose rotation's
    # variance the tiny model's failed refinements leave unmeasured
    assert f"gyroscope: rotation of 0 of {FRAMES} frames (at the end: not used" in printed

    # every Imu message, in bag order, the ones logged before an image queued before it
    assert spy["imu"] == imu_times
    image_times = [t for t, _ in read_bag(tmp_path / "imu_bag")[IMAGE]]
    assert spy["before_frame"] == [sum(t < t_img for t in imu_times) for t_img in image_times]
    # camera_optical_frame <- imu_link through base_link, set after the first frame
    ((after_frames, T),) = spy["extrinsics"]
    assert after_frames == 1
    np.testing.assert_allclose(T, T_OPTICAL_IMU, atol=1e-9)
    # the IMU and the static transforms are copied into the output
    outputs = read_bag(out)
    assert [t for t, _ in outputs[IMU]] == imu_times
    assert {m.header.frame_id for _, m in outputs[IMU]} == {"imu_link"}
    assert [tf.child_frame_id for tf in outputs["/tf_static"][0][1].transforms] == [
        "camera_link", "camera_optical_frame", "imu_link"]  # fmt: skip


FROM_TF = "camera extrinsics from the bag's transforms: 'base_link' <- 'camera_optical_frame'"


def pose_matrix(pose) -> np.ndarray:
    """geometry_msgs/Pose -> (4, 4)."""
    T = np.eye(4)
    T[:3, :3] = cv.matrix_from_quaternion([pose.orientation.x, pose.orientation.y,
                                           pose.orientation.z, pose.orientation.w])  # fmt: skip
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return T


def test_bag_takes_the_camera_mount_from_tf_static(bags, tiny_checkpoint, tmp_path, caplog):
    """The odometry of base_link, not of the assumed optical rotation at its origin: the same
    camera motion conjugated by the mount (pitched, offset) that /tf_static gives. The fixed
    scale blows the tiny model's motion up to decimetres."""
    with_imu(bags["sqlite3"], tmp_path / "mounted")
    poses = {}
    for name, bag in (("assumed", bags["sqlite3"]), ("mounted", tmp_path / "mounted")):
        args = ["bag", str(bag), str(tmp_path / f"{name}_out"), "--image-topic", IMAGE,
                "--checkpoint", str(tiny_checkpoint), "--no-progress", "--previews", "0",
                "--set", "scale_source=fixed", "scale_factor=1000"]  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert main(args) == 0
        odom = read_bag(tmp_path / f"{name}_out")["/sfm/odom"]
        poses[name] = [pose_matrix(m.pose.pose) for _, m in odom]
        said = ("standard optical rotation" in caplog.text, FROM_TF in caplog.text)
        assert said == ((True, False) if name == "assumed" else (False, True))
    assert len(poses["mounted"]) == FRAMES
    T_base_cam = T_BASE_CAMLINK @ T_BODY_OPTICAL
    conjugate = T_base_cam @ se3_inverse(T_BODY_OPTICAL)
    travelled = 0.0
    for plain, mounted in zip(poses["assumed"], poses["mounted"], strict=True):
        np.testing.assert_allclose(mounted, conjugate @ plain @ se3_inverse(conjugate), atol=1e-6)
        travelled = max(travelled, np.linalg.norm(plain[:3, 3]))
    assert travelled > 0.1  # the camera moved: the check above is not between identities


def test_bag_warns_once_without_the_imu_mount_and_takes_it_from_tf(
    bags, tiny_checkpoint, tmp_path, capsys, caplog, spy
):
    with_imu(bags["sqlite3"], tmp_path / "imu_bag", imu_on_tf=True)
    args = ["bag", str(tmp_path / "imu_bag"), str(tmp_path / "imu_out"), "--image-topic", IMAGE,
            "--imu-topic", IMU, "--checkpoint", str(tiny_checkpoint), "--no-progress",
            "--previews", "0"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="sfm_ros.pipeline.bag_tool"):
        assert main(args) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    missing = "no 'camera_optical_frame' <- 'imu_link' transform in /tf_static or /tf: the "
    assert [w for w in warnings if "transform" in w] == [missing + "gyroscope is not used"]
    assert "from /tf, after all" in caplog.text
    ((after_frames, T),) = spy["extrinsics"]  # the /tf message comes after the second image
    assert after_frames == 3
    np.testing.assert_allclose(T, T_OPTICAL_IMU, atol=1e-9)
    # use_imu false: the Imu is copied, not used
    capsys.readouterr()
    assert main([*args, "--overwrite", "--set", "use_imu=false"]) == 0
    assert "gyroscope: rotation of 0 of 4 frames (at the end: off (use_imu false))" in (
        capsys.readouterr().out
    )
    assert len(spy["extrinsics"]) == 1 and len(read_bag(tmp_path / "imu_out")[IMU]) > 0


def test_make_bag_simulates_an_imu_with_the_mounts_on_tf_static(tmp_path, capsys, caplog):
    bag = tmp_path / "imu_bag"
    args = ["make-bag", "--synthetic", "street", "--frames", str(FRAMES), "--height", "32",
            "--width", "96", "--fps", "5", "--imu-rate", "50", "--out", str(bag)]  # fmt: skip
    assert main(args) == 0
    msgs = read_bag(bag)
    assert set(msgs) == {IMAGE, "/camera/camera_info", "/ground_truth/odom", IMU, "/tf_static"}
    with AnyReader([bag], default_typestore=TYPESTORE) as reader:
        times = [t for _, t, _ in reader.messages()]
        (qos,) = next(
            c for c in reader.connections if c.topic == "/tf_static"
        ).ext.offered_qos_profiles
    assert times == sorted(times) and qos.durability.name == "TRANSIENT_LOCAL"
    ((t_tf, tf),) = msgs["/tf_static"]
    assert t_tf == msgs[IMAGE][0][0]  # before the first image is read
    mounts = {
        (m.header.frame_id, m.child_frame_id): cv.matrix_from_transform(m) for m in tf.transforms
    }
    np.testing.assert_allclose(mounts[("base_link", "camera_optical_frame")], T_BODY_OPTICAL)
    np.testing.assert_allclose(mounts[("base_link", "imu_link")], np.eye(4))
    # 50 Hz over the four frames' 0.6 s; each interval's mean rate is the true body rate (the
    # ground truth's twist, base_link's axes) plus one constant 0.5 deg/s bias
    imu = msgs[IMU]
    assert len(imu) == 30 and {m.header.frame_id for _, m in imu} == {"imu_link"}
    image_times = [t for t, _ in msgs[IMAGE]]
    gt = [m.twist.twist.angular for _, m in msgs["/ground_truth/odom"]][1:]
    offsets = []
    for t0, t1, w in zip(image_times[:-1], image_times[1:], gt, strict=True):
        rates = [m.angular_velocity for t, m in imu if t0 <= t < t1]
        mean = np.mean([[r.x, r.y, r.z] for r in rates], axis=0)
        offsets.append(mean - [w.x, w.y, w.z])
    offsets = np.degrees(offsets)
    assert np.linalg.norm(offsets.mean(0)) == pytest.approx(0.5, abs=0.1)
    assert offsets.std(0).max() < 0.1  # white noise of 0.1 deg/s a sample, 10 samples a frame
    # the bag tool takes both mounts from /tf_static
    with caplog.at_level(logging.INFO, logger="sfm_ros.pipeline.bag_tool"):
        assert main(["bag", str(bag), str(tmp_path / "out"), "--image-topic", IMAGE,
                     "--imu-topic", IMU, "--no-progress", "--previews", "0"]) == 0  # fmt: skip
    assert FROM_TF in caplog.text
    assert "IMU extrinsics from the bag's transforms: 'camera_optical_frame' <- 'imu_link'" in (
        caplog.text
    )
    # a source without poses has nothing to simulate the gyro on: one line
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 96, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    (folder / "intrinsics.txt").write_text("80\n80\n48\n16\n")
    capsys.readouterr()
    assert main(["make-bag", "--images", str(folder), "--imu-rate", "50",
                 "--out", str(tmp_path / "no_poses")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "has no poses for its frames" in err and "\n" not in err
    assert not (tmp_path / "no_poses").exists()

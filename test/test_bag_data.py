"""BagSequence on small rosbag2 (sqlite3, mcap) and ROS 1 bags written with rosbags."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Writer2
from rosbags.typesys import Stores, get_typestore

from sfm_ros.core.errors import DatasetError
from sfm_ros.messages.bag_dataset import BagSequence
from sfm_ros.messages.sources import open_sequences

H, W = 6, 8
K_FLAT = [20.0, 0.0, 3.5, 0.0, 21.0, 2.5, 0.0, 0.0, 1.0]
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (3, H, W, 3), dtype=np.uint8)
MONO = RNG.integers(0, 256, (3, H, W), dtype=np.uint8)


def _header(ts, t_ns: int, ros1: bool):
    Time = ts.types["builtin_interfaces/msg/Time"]
    stamp = Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9)
    Header = ts.types["std_msgs/msg/Header"]
    return Header(seq=0, stamp=stamp, frame_id="cam") if ros1 else Header(stamp, "cam")


def _image(ts, t_ns: int, data: np.ndarray, encoding: str, ros1: bool, pad: int = 0):
    channels = 1 if data.ndim == 2 else data.shape[2]
    rows = data.reshape(H, W * channels)
    rows = np.concatenate([rows, np.full((H, pad), 7, np.uint8)], axis=1)  # row padding
    return ts.types["sensor_msgs/msg/Image"](
        header=_header(ts, t_ns, ros1),
        height=H,
        width=W,
        encoding=encoding,
        is_bigendian=0,
        step=W * channels + pad,
        data=rows.reshape(-1),
    )


def _compressed_png(ts, t_ns: int, data: np.ndarray, ros1: bool):
    buf = io.BytesIO()
    Image.fromarray(data).save(buf, format="PNG")
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=_header(ts, t_ns, ros1), format="png", data=np.frombuffer(buf.getvalue(), np.uint8)
    )


def _camera_info(ts, t_ns: int, k: list[float], ros1: bool, d=(0.0,) * 5):
    Roi = ts.types["sensor_msgs/msg/RegionOfInterest"]
    fields = dict(
        header=_header(ts, t_ns, ros1),
        height=H,
        width=W,
        distortion_model="plumb_bob",
        binning_x=0,
        binning_y=0,
        roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    names = ("D", "K", "R", "P") if ros1 else ("d", "k", "r", "p")
    values = (np.array(d, float), np.array(k), np.eye(3).reshape(-1), np.zeros(12))
    return ts.types["sensor_msgs/msg/CameraInfo"](**fields, **dict(zip(names, values, strict=True)))


def _write_bag(
    path: Path,
    kind: str,
    *,
    infos=((50, K_FLAT),),
    with_images: bool = True,
    mono_encoding: str = "mono8",
    distortion=(0.0,) * 5,
) -> Path:
    """Bag with /cam/image_raw (rgb8, padded rows), /mono/image (``mono_encoding``),
    /png/image/compressed (CompressedImage) at 0, 100, 200 ms and /cam/camera_info messages
    ``infos`` (ms, K)."""
    ros1 = kind == "ros1"
    ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    serialize = ts.serialize_ros1 if ros1 else ts.serialize_cdr
    if ros1:
        writer = Writer1(path)
    else:
        plugin = StoragePlugin.MCAP if kind == "mcap" else StoragePlugin.SQLITE3
        writer = Writer2(path, version=9, storage_plugin=plugin)
    messages = [
        (t, "/cam/camera_info", _camera_info(ts, t * 10**6, k, ros1, distortion)) for t, k in infos
    ]
    if with_images:
        for i, t in enumerate((0, 100, 200)):
            t_ns = t * 10**6
            messages += [
                (t, "/cam/image_raw", _image(ts, t_ns, RGB[i], "rgb8", ros1, pad=4)),
                (t, "/mono/image", _image(ts, t_ns, MONO[i], mono_encoding, ros1)),
                (t, "/png/image/compressed", _compressed_png(ts, t_ns, RGB[i], ros1)),
            ]
    with writer:
        connections = {}
        for t, topic, msg in sorted(messages, key=lambda m: m[0]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            writer.write(connections[topic], t * 10**6, serialize(msg, msg.__msgtype__))
    return path


@pytest.fixture(params=["sqlite3", "mcap", "ros1"])
def bag(request, tmp_path) -> Path:
    name = "test.bag" if request.param == "ros1" else "test_bag"
    return _write_bag(tmp_path / name, request.param)


def test_bag_images_pixels_and_intrinsics(bag):
    K = np.array(K_FLAT).reshape(3, 3)
    rgb = BagSequence(bag, image_topic="/cam/image_raw")
    assert len(rgb) == 3 and rgb.camera_info_topic == "/cam/camera_info"
    for i in range(3):
        frame = rgb.load(i)
        assert np.array_equal(frame.image, RGB[i])
        np.testing.assert_allclose(frame.K, K)  # frame 0 precedes the first CameraInfo
        assert frame.stamp_ns == i * 100_000_000

    mono = BagSequence(bag, image_topic="/mono/image")
    assert np.array_equal(mono.load(2).image, np.repeat(MONO[2][..., None], 3, axis=2))
    png = BagSequence(bag, image_topic="/png/image/compressed", max_frames=2)
    assert len(png) == 2 and np.array_equal(png.load(1).image, RGB[1])
    first = BagSequence(bag, image_topic="/cam/image_raw", max_frames=1)  # K arrives later
    assert len(first) == 1 and np.allclose(first.load(0).K, K)

    (small,) = open_sequences(bag, image_topic="/cam/image_raw", max_width=4)
    frame = small.load(0)
    assert frame.image.shape == (3, 4, 3)
    # Pixel-centre convention: the image corners (-0.5, -0.5) and (W-0.5, H-0.5) are kept.
    for corner, new_corner in (((-0.5, -0.5), (-0.5, -0.5)), ((7.5, 5.5), (3.5, 2.5))):
        ray = np.linalg.solve(K, [*corner, 1.0])
        np.testing.assert_allclose(frame.K @ ray, [*new_corner, 1.0], atol=1e-9)


def test_bag_topic_errors(bag):
    with pytest.raises(DatasetError, match="several image topics.*/cam/image_raw.*/mono/image"):
        BagSequence(bag)
    with pytest.raises(DatasetError, match="'/nope' is not in bag.*/cam/camera_info"):
        BagSequence(bag, image_topic="/nope")
    with pytest.raises(DatasetError, match="type sensor_msgs/msg/CameraInfo"):
        BagSequence(bag, image_topic="/cam/camera_info")


def test_bag_without_images_or_valid_camera_info(tmp_path):
    with pytest.raises(DatasetError, match="no image topic.*/cam/camera_info"):
        BagSequence(_write_bag(tmp_path / "no_images", "mcap", with_images=False))
    zero = _write_bag(tmp_path / "zero_k", "sqlite3", infos=((0, [0.0] * 9),))
    with pytest.raises(DatasetError, match="no usable images"):
        BagSequence(zero, image_topic="/cam/image_raw")
    # An all-zero K first, a valid one from 150 ms: only the last frame is kept.
    late = _write_bag(tmp_path / "late_k", "mcap", infos=((0, [0.0] * 9), (150, K_FLAT)))
    seq = BagSequence(late, image_topic="/mono/image")
    assert len(seq) == 1 and seq.load(0).stamp_ns == 200_000_000
    with pytest.raises(DatasetError, match="cannot open bag"):
        BagSequence(tmp_path / "missing.mcap")


def test_bag_undecodable_image(tmp_path):
    bag = _write_bag(tmp_path / "nv21", "mcap", mono_encoding="nv21")
    with pytest.raises(DatasetError, match="unsupported image encoding 'nv21'"):
        BagSequence(bag, image_topic="/mono/image")


def test_distorted_camera_frames_are_undistorted(tmp_path):
    from sfm_ros.core.camera import Camera
    from sfm_ros.core.undistort import undistorter_for

    D = (-0.3, 0.1, 0.0, 0.0, 0.0)
    bag = _write_bag(tmp_path / "raw", "mcap", distortion=D)
    seq = BagSequence(bag, image_topic="/cam/image_raw")
    camera = Camera(np.array(K_FLAT).reshape(3, 3), W, H, D=D, rectified=False)
    frame = seq.load(1)
    np.testing.assert_array_equal(frame.image, undistorter_for(camera)(RGB[1]))
    assert not np.array_equal(frame.image, RGB[1])  # the distortion did change the pixels
    np.testing.assert_allclose(frame.K, camera.K)

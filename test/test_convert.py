"""Message conversion: images, compressed images, CameraInfo, depth, clouds, odometry, TF."""

from __future__ import annotations

import array
import io
import struct
import sys
import types as pytypes
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core.camera import Camera
from sfm_ros.core.errors import InputError
from sfm_ros.core.frames import matrix_from_quaternion
from sfm_ros.core.visualize import colormap_depth
from sfm_ros.messages.imu import ABSENT

STORES = [Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY]
H, W = 6, 5
K_TEST = np.array([[50.0, 0.0, 24.5], [0.0, 60.0, 15.5], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module", params=STORES, ids=lambda s: s.name)
def store(request):
    typestore = get_typestore(request.param)
    return typestore, cv.rosbags_types(typestore)


def cdr_round_trip(typestore, msg):
    raw = typestore.serialize_cdr(msg, msg.__msgtype__)
    return typestore.deserialize_cdr(raw, msg.__msgtype__)


def random_array(encoding: str, rng: np.random.Generator) -> np.ndarray:
    dtype, channels = cv.ENCODINGS[encoding]
    shape = (H, W) if channels == 1 else (H, W, channels)
    if dtype.kind == "f":
        a = rng.normal(size=shape).astype(dtype)
        a.flat[3] = np.nan
        return a
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def hand_image(a: np.ndarray, encoding: str, step: int, bigendian: bool = False, **override):
    """Image-like namespace with ``step`` bytes per row (padding 0xAB), fields overridable."""
    order = ">" if bigendian else "<"
    rows = a.astype(a.dtype.newbyteorder(order)).reshape(a.shape[0], -1).view(np.uint8)
    data = np.full((a.shape[0], max(step, rows.shape[1])), 0xAB, dtype=np.uint8)
    data[:, : rows.shape[1]] = rows
    fields = dict(
        height=a.shape[0],
        width=a.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=step,
        data=data.tobytes(),
    )
    return pytypes.SimpleNamespace(**(fields | override))


# ------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("encoding", list(cv.ENCODINGS))
def test_image_round_trip_through_cdr(store, encoding):
    typestore, t = store
    original = random_array(encoding, np.random.default_rng(0))
    msg = cv.numpy_to_image(t, original, encoding, cv.header(t, 12, "cam"))
    back = cdr_round_trip(typestore, msg)
    assert back.encoding == encoding and back.is_bigendian == 0
    assert back.step == original[0].nbytes
    decoded = cv.image_to_numpy(back)
    assert decoded.dtype == original.dtype and decoded.shape == original.shape
    np.testing.assert_array_equal(decoded, original)


def test_numpy_to_image_packs_rows(store):
    _, t = store
    msg = cv.numpy_to_image(t, np.zeros((H, W, 2), np.float32), "32FC2", cv.header(t, 0, "c"))
    assert (msg.height, msg.width, msg.step, len(msg.data)) == (H, W, W * 8, H * W * 8)


def test_padded_step_rgb8():
    a = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    msg = hand_image(a, "rgb8", step=16)
    np.testing.assert_array_equal(cv.image_to_numpy(msg), a)
    np.testing.assert_array_equal(cv.image_to_rgb8(msg), a)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_decodes(encoding):
    a = random_array(encoding, np.random.default_rng(2))
    row = W * a.dtype.itemsize
    decoded = cv.image_to_numpy(hand_image(a, encoding, step=row + 4, bigendian=True))
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, a)
    # The flag matters: reading the same bytes as little-endian gives other values.
    swapped = cv.image_to_numpy(hand_image(a, encoding, step=row, bigendian=True, is_bigendian=0))
    assert not np.array_equal(swapped, a, equal_nan=True)


def test_image_data_as_list_and_array_array():
    a = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    msg = hand_image(a, "mono8", step=W)
    msg.data = list(msg.data)
    np.testing.assert_array_equal(cv.image_to_numpy(msg), a)
    msg.data = array.array("B", a.tobytes())
    np.testing.assert_array_equal(cv.image_to_numpy(msg), a)


def test_image_to_rgb8_conversions():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(cv.image_to_rgb8(hand_image(rgb[:, :, ::-1], "bgr8", W * 3)), rgb)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(cv.image_to_rgb8(hand_image(rgba, "rgba8", W * 4)), rgb)
    bgra = np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
    np.testing.assert_array_equal(cv.image_to_rgb8(hand_image(bgra, "bgra8", W * 4)), rgb)
    grey = rgb[:, :, 0]
    out = cv.image_to_rgb8(hand_image(grey, "mono8", W))
    assert out.shape == (H, W, 3) and all(np.array_equal(out[:, :, c], grey) for c in range(3))
    grey16 = grey.astype(np.uint16) * 256 + 255
    np.testing.assert_array_equal(
        cv.image_to_rgb8(hand_image(grey16, "mono16", W * 2))[..., 1], grey
    )


def smooth_rgb(height: int = 24, width: int = 32) -> np.ndarray:
    """(H, W, 3) uint8 colour ramps, different in each channel (demosaicing is exact only on
    smooth images)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([40 + 5 * u, 200 - 4 * v, 60 + 2 * u + 3 * v], axis=2).astype(np.uint8)


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The (H, W) raw image a colour camera with this Bayer pattern ("rggb": red top left,
    read row by row) records of ``rgb``."""
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for k, colour in enumerate(pattern):
        dv, du = divmod(k, 2)
        raw[dv::2, du::2] = rgb[dv::2, du::2, "rgb".index(colour)]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_images_are_demosaiced_in_their_pattern(store, pattern, bits):
    typestore, t = store
    rgb = smooth_rgb()
    raw = bayer_mosaic(rgb, pattern)
    if bits == 16:
        raw = raw.astype(np.uint16) * 256 + 128
    encoding = f"bayer_{pattern}{bits}"
    msg = cdr_round_trip(typestore, cv.numpy_to_image(t, raw, encoding, cv.header(t, 0, "cam")))
    out = cv.image_to_rgb8(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    inner = (slice(2, -2), slice(2, -2))  # borders are extrapolated
    error = np.abs(out[inner].astype(int) - rgb[inner])
    assert error.max() <= 3, (encoding, error.max())
    # Read as the wrong pattern, the colours come out wrong: the pattern matters.
    wrong = {"rggb": "bggr", "bggr": "rggb", "gbrg": "grbg", "grbg": "gbrg"}[pattern]
    msg.encoding = f"bayer_{wrong}{bits}"
    assert np.abs(cv.image_to_rgb8(msg)[inner].astype(int) - rgb[inner]).max() > 50


def yuv422_bytes(rgb: np.ndarray, order: str) -> np.ndarray:
    """(H, W, 2) packed 4:2:2 YUV (BT.601, video range) of an (H, W, 3) image, ``order`` the
    byte order of each two pixels ("UYVY" or "YUYV"); chroma from the pair's mean."""
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    w = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    pair = lambda c: np.repeat((c[:, 0::2] + c[:, 1::2]) / 2, 2, axis=1)  # noqa: E731
    u, w = pair(u), pair(w)
    chroma = np.where(np.arange(rgb.shape[1]) % 2 == 0, u, w)
    planes = {"Y": y, "C": chroma}
    keys = ("C", "Y") if order == "UYVY" else ("Y", "C")
    return np.clip(np.round(np.stack([planes[k] for k in keys], axis=2)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("encoding", "order"), [("yuv422", "UYVY"), ("yuv422_yuy2", "YUYV")])
def test_yuv422_images_are_converted(store, encoding, order):
    typestore, t = store
    rgb = smooth_rgb()
    packed = yuv422_bytes(rgb, order)
    msg = cdr_round_trip(typestore, cv.numpy_to_image(t, packed, encoding, cv.header(t, 0, "c")))
    out = cv.image_to_rgb8(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() <= 6
    msg.encoding = "yuv422_yuy2" if encoding == "yuv422" else "yuv422"  # the other byte order
    assert np.abs(cv.image_to_rgb8(msg).astype(int) - rgb).max() > 50
    odd = hand_image(packed[:, :-1], encoding, (rgb.shape[1] - 1) * 2)
    with pytest.raises(InputError, match="odd width"):
        cv.image_to_rgb8(odd)


def test_16_bit_colour_keeps_the_high_byte():
    rgb = smooth_rgb(H, W)
    rgb16 = rgb.astype(np.uint16) * 256 + 200
    np.testing.assert_array_equal(cv.image_to_rgb8(hand_image(rgb16, "rgb16", W * 6)), rgb)
    bgra16 = np.concatenate([rgb16[..., ::-1], np.full((H, W, 1), 9, np.uint16)], axis=2)
    np.testing.assert_array_equal(cv.image_to_rgb8(hand_image(bgra16, "bgra16", W * 8)), rgb)


@pytest.mark.parametrize(("encoding", "dtype"), [("16UC1", np.uint16), ("32FC1", np.float32)])
def test_depth_encodings_are_refused_as_camera_input(encoding, dtype):
    depth = hand_image(np.ones((H, W), dtype), encoding, W * np.dtype(dtype).itemsize)
    with pytest.raises(InputError, match=f"'{encoding}' is a depth image"):
        cv.image_to_rgb8(depth)
    png = pytypes.SimpleNamespace(format=f"{encoding}; png compressed ", data=b"")
    with pytest.raises(InputError, match="depth image"):
        cv.compressed_to_rgb8(png)


def test_listed_camera_encodings_are_exactly_the_accepted_ones():
    with pytest.raises(InputError, match="unsupported image encoding 'nv21'") as info:
        cv.image_to_rgb8(hand_image(np.zeros((H, W, 3), np.uint8), "nv21", W * 3))
    listed = str(info.value).split("supported: ")[1].split(", ")
    assert listed == list(cv.COLOUR_ENCODINGS)
    rng = np.random.default_rng(6)
    for encoding in cv.ENCODINGS:
        a = random_array(encoding, rng)[:, : W - 1]  # an even width (YUV 4:2:2)
        msg = hand_image(a, encoding, a[0].nbytes)
        if encoding in listed:
            assert cv.image_to_rgb8(msg).shape == (H, W - 1, 3), encoding
        else:
            with pytest.raises(InputError):
                cv.image_to_rgb8(msg)


def test_bad_images_raise():
    a = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(InputError, match="unsupported image encoding 'nv21'"):
        cv.image_to_numpy(hand_image(a, "nv21", W * 3))
    truncated = hand_image(a, "rgb8", W * 3)
    truncated.data = truncated.data[:-1]
    with pytest.raises(InputError, match="truncated"):
        cv.image_to_numpy(truncated)
    with pytest.raises(InputError, match="step"):
        cv.image_to_numpy(hand_image(a, "rgb8", W * 3 - 1))
    with pytest.raises(InputError, match="zero size"):
        cv.image_to_numpy(hand_image(a, "rgb8", W * 3, height=0))


def test_numpy_to_image_rejects_mismatch(store):
    _, t = store
    hdr = cv.header(t, 0, "cam")
    with pytest.raises(InputError, match="32FC1"):
        cv.numpy_to_image(t, np.zeros((H, W), np.float64), "32FC1", hdr)
    with pytest.raises(InputError, match="rgb8"):
        cv.numpy_to_image(t, np.zeros((H, W), np.uint8), "rgb8", hdr)


# ---------------------------------------------------------------------------------- compressed


def encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def smooth_image() -> np.ndarray:
    y, x = np.mgrid[0:32, 0:48]
    return np.stack([x * 5, y * 7, 255 - x * 5], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "pil_format", "tolerance"),
    [("png", "PNG", 0), ("jpeg", "JPEG", 12.0), ("rgb8; jpeg compressed bgr8", "JPEG", 12.0)],
)
def test_compressed_decodes(store, fmt, pil_format, tolerance):
    typestore, t = store
    image = smooth_image()
    data = np.frombuffer(encode(image, pil_format), np.uint8)
    msg = t.CompressedImage(header=cv.header(t, 5, "cam"), format=fmt, data=t.uint8_seq(data))
    decoded = cv.compressed_to_rgb8(cdr_round_trip(typestore, msg))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() <= tolerance
    if tolerance == 0:
        np.testing.assert_array_equal(decoded, image)


def test_compressed_errors():
    garbage = pytypes.SimpleNamespace(format="jpeg", data=b"not an image")
    with pytest.raises(InputError, match="cannot decode .*12 bytes.*not an image") as info:
        cv.compressed_to_rgb8(garbage)
    assert "BytesIO" not in str(info.value)
    truncated = pytypes.SimpleNamespace(format="jpeg", data=encode(smooth_image(), "JPEG")[:200])
    with pytest.raises(InputError, match="cannot decode"):
        cv.compressed_to_rgb8(truncated)
    depth = pytypes.SimpleNamespace(format="16UC1; compressedDepth png", data=b"")
    with pytest.raises(InputError, match="depth"):
        cv.compressed_to_rgb8(depth)


def test_png_decompression_bomb_is_an_input_error():
    """A tiny PNG whose header claims 20000 x 20000 pixels (over Pillow's bomb limit)."""
    png = bytearray(encode(np.zeros((2, 2, 3), np.uint8), "PNG"))
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", 20000, 20000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    bomb = pytypes.SimpleNamespace(format="png", data=bytes(png))
    with pytest.raises(InputError, match="cannot decode .*decompression bomb"):
        cv.compressed_to_rgb8(bomb)


# --------------------------------------------------------------------------------- camera info


def test_camera_info_round_trip(store):
    typestore, t = store
    msg = cdr_round_trip(typestore, cv.camera_info_msg(t, K_TEST, 48, 32, cv.header(t, 1, "cam")))
    assert msg.distortion_model == "plumb_bob" and np.all(msg.d == 0) and len(msg.d) == 5
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3], K_TEST)
    K, width, height = cv.camera_info_to_K(msg)
    np.testing.assert_allclose(K, K_TEST)
    assert (width, height) == (48, 32)


def test_camera_info_roi_and_binning(store):
    typestore, t = store
    msg = cv.camera_info_msg(t, K_TEST, 48, 32, cv.header(t, 1, "cam"))
    msg.roi = t.RegionOfInterest(x_offset=8, y_offset=4, height=20, width=30, do_rectify=False)
    msg.binning_x, msg.binning_y = 2, 1
    K, width, height = cv.camera_info_to_K(cdr_round_trip(typestore, msg))
    assert (width, height) == (15, 20)
    # Pixel u' of the binned ROI image covers sensor pixels 2u'+8 and 2u'+9 (centre 2u'+8.5).
    fx, fy, cx, cy = 50.0, 60.0, 24.5, 15.5
    expected = np.array([[fx / 2, 0, (cx - 8.5) / 2], [0, fy, cy - 4], [0, 0, 1]])
    np.testing.assert_allclose(K, expected)


def test_camera_info_rectified_uses_p(store):
    _, t = store
    msg = cv.camera_info_msg(t, K_TEST, 48, 32, cv.header(t, 1, "cam"))
    P = np.hstack([K_TEST * [[0.9], [0.9], [1.0]], np.zeros((3, 1))])
    msg.p = P.reshape(12)
    np.testing.assert_allclose(cv.camera_info_to_K(msg, rectified=False)[0], K_TEST)
    np.testing.assert_allclose(cv.camera_info_to_K(msg, rectified=True)[0], P[:, :3])
    np.testing.assert_allclose(cv.camera_info_to_K(msg)[0], P[:, :3])  # D = 0: rectified
    msg.d = t.float64_seq(np.array([0.1, 0.0, 0.0, 0.0, 0.0]))
    raw = cv.camera_from_camera_info(msg)  # D set: the raw image, K with its distortion
    np.testing.assert_allclose(raw.K, K_TEST)
    assert raw.distorted and raw.D == (0.1, 0.0, 0.0, 0.0, 0.0)


def test_camera_info_uncalibrated_raises(store):
    _, t = store
    msg = cv.camera_info_msg(t, np.zeros((3, 3)), 48, 32, cv.header(t, 1, "front_cam"))
    with pytest.raises(InputError, match="front_cam.*calibrated"):
        cv.camera_info_to_K(msg)
    msg.k = np.where(np.eye(3).reshape(9) > 0, np.nan, 0.0)
    with pytest.raises(InputError, match="calibrated"):
        cv.camera_info_to_K(msg)


def test_camera_info_ros1_field_names():
    """ROS 1 CameraInfo (``K``, ``P``) from rosbags' noetic store decodes like ROS 2's."""
    ts = get_typestore(Stores.ROS1_NOETIC)
    Time, Header = ts.types["builtin_interfaces/msg/Time"], ts.types["std_msgs/msg/Header"]
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=8, y_offset=4, height=20, width=30, do_rectify=False
    )
    P = np.hstack([K_TEST * [[0.9], [0.9], [1.0]], np.zeros((3, 1))])

    def info(K, P, D=(0.0,) * 5):
        msg = ts.types["sensor_msgs/msg/CameraInfo"](
            header=Header(seq=0, stamp=Time(sec=1, nanosec=0), frame_id="cam1"),
            height=32, width=48, distortion_model="plumb_bob", D=np.array(D),
            K=K.reshape(9), R=np.eye(3).reshape(9), P=P.reshape(12),
            binning_x=2, binning_y=1, roi=roi,
        )  # fmt: skip
        raw = ts.serialize_ros1(msg, msg.__msgtype__)
        return ts.deserialize_ros1(raw, msg.__msgtype__)

    # Binned (x2) ROI image: pixel u' covers sensor pixels 2u'+8 and 2u'+9 (centre 2u'+8.5).
    K, width, height = cv.camera_info_to_K(info(K_TEST, P), rectified=False)
    np.testing.assert_allclose(K, [[25.0, 0, (24.5 - 8.5) / 2], [0, 60.0, 15.5 - 4], [0, 0, 1]])
    assert (width, height) == (15, 20)
    rect = [[45.0 / 2, 0, (0.9 * 24.5 - 8.5) / 2], [0, 54.0, 0.9 * 15.5 - 4], [0, 0, 1]]
    np.testing.assert_allclose(cv.camera_info_to_K(info(K_TEST, P), rectified=True)[0], rect)
    np.testing.assert_allclose(cv.camera_info_to_K(info(np.zeros((3, 3)), P))[0], rect)
    raw = cv.camera_from_camera_info(info(K_TEST, P, D=(0.1, 0.01, 0.0, 0.0, 0.0)))
    assert raw.distorted and raw.D == (0.1, 0.01, 0.0, 0.0, 0.0) and raw.size == (15, 20)
    np.testing.assert_allclose(raw.K, K)
    with pytest.raises(InputError, match="cam1.*calibrated"):
        cv.camera_info_to_K(info(np.zeros((3, 3)), np.zeros((3, 4))))


def test_depth_image_keeps_nan(store):
    typestore, t = store
    depth = np.linspace(0.5, 30.0, H * W, dtype=np.float32).reshape(H, W)
    depth[1, 2] = np.nan
    depth[2, 3] = 0.0
    back = cdr_round_trip(typestore, cv.depth_to_image(t, depth, cv.header(t, 3, "cam")))
    assert back.encoding == "32FC1"
    decoded = cv.image_to_numpy(back)
    assert np.isnan(decoded[1, 2]) and np.isnan(decoded[2, 3])
    valid = depth > 0
    np.testing.assert_array_equal(decoded[valid], depth[valid])


def test_depth_mm_image(store):
    typestore, t = store
    depth = np.full((H, W), 2.0, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, 1.2346, 100.0, -1.0
    depth[1, 0], depth[1, 2], depth[1, 3], depth[1, 4] = 65.535, 65.5356, np.inf, 1e-5
    back = cdr_round_trip(typestore, cv.depth_to_mm_image(t, depth, cv.header(t, 3, "cam")))
    mm = cv.image_to_numpy(back)
    assert back.encoding == "16UC1" and mm.dtype == np.uint16
    assert (mm[0, 0], mm[0, 1], mm[0, 3], mm[1, 1]) == (0, 1235, 0, 2000)
    # REP 118: 0 = no measurement; beyond 65.535 m (and inf) is no measurement, not 65535
    assert (mm[0, 2], mm[1, 0], mm[1, 2], mm[1, 3], mm[1, 4]) == (0, 65535, 0, 0, 1)


def test_colormap_depth():
    depth = np.array([[1.0, 2.0, 50.0, np.nan]], np.float32)
    image = colormap_depth(depth, 1.0, 50.0)
    assert image.shape == (1, 4, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 3], [0, 0, 0])
    near, far = image[0, 0].astype(int), image[0, 2].astype(int)
    assert near[0] > near[2] and far[2] > far[0]  # near red, far blue
    with pytest.raises(InputError):
        colormap_depth(depth, 5.0, 1.0)


def test_colormap_is_within_one_step_of_the_exact_index():
    from sfm_ros.core.visualize import TURBO_LUT

    depth = np.geomspace(0.05, 200.0, 5001, dtype=np.float32)[None]
    depth[0, :4] = [0.0, -1.0, np.nan, np.inf]
    image = colormap_depth(depth, 0.5, 80.0)
    np.testing.assert_array_equal(image[0, :3], 0)  # zero, negative and NaN are black
    np.testing.assert_array_equal(image[0, 3], TURBO_LUT[0])  # +inf: as far as it gets
    lo, hi = 1 / 80.0, 1 / 0.5
    exact = np.clip((1 / depth[0, 4:] - lo) * 255 / (hi - lo) + 0.5, 0, 255).astype(int)
    candidates = [TURBO_LUT[np.clip(exact + k, 0, 255)].astype(int) for k in (-1, 0, 1)]
    got = image[0, 4:].astype(int)
    assert all(np.any([np.all(got == c, axis=1) for c in candidates], axis=0))


def test_turbo_table_matches_matplotlib():
    matplotlib = pytest.importorskip("matplotlib")
    from sfm_ros.core.visualize import TURBO_LUT

    reference = matplotlib.colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255
    assert np.abs(TURBO_LUT - reference).max() <= 8


# ---------------------------------------------------------------------------- clouds, odometry, tf


def test_pointcloud2_bytes_parse_back(store):
    typestore, t = store
    rng = np.random.default_rng(4)
    xyz = rng.normal(size=(7, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    msg = cdr_round_trip(typestore, cv.pointcloud2_msg(t, cv.header(t, 9, "cam"), xyz, rgb))
    assert (msg.height, msg.width, msg.is_dense, msg.is_bigendian) == (1, 7, True, False)
    assert msg.row_step == msg.point_step * 7 == len(msg.data)
    offsets = {f.name: f.offset for f in msg.fields}
    assert all(f.datatype == t.PointField.FLOAT32 and f.count == 1 for f in msg.fields)
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(7, msg.point_step)

    def column(name, dtype):
        return raw[:, offsets[name] : offsets[name] + 4].copy().view(dtype)[:, 0]

    parsed = np.stack([column(n, "<f4") for n in "xyz"], axis=1)
    np.testing.assert_array_equal(parsed, xyz)
    packed = column("rgb", "<u4")
    unpacked = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1)
    np.testing.assert_array_equal(unpacked, rgb)

    xyz[2, 1] = np.nan
    plain = cv.pointcloud2_msg(t, cv.header(t, 9, "cam"), xyz)
    assert [f.name for f in plain.fields] == ["x", "y", "z"] and not plain.is_dense


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_odometry_serialises(store):
    typestore, t = store
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation_z(0.3), [1.0, -2.0, 0.5]
    pose_cov = np.diag([1.0, 2, 3, 4, 5, 6])
    twist_cov = np.eye(6) * 0.1
    hdr = cv.header(t, 10, "odom")
    msg = cv.odometry_msg(t, hdr, "base_link", T, [1, 0, 0], [0, 0, 0.2], pose_cov, twist_cov)
    back = cdr_round_trip(typestore, msg)
    assert back.header.frame_id == "odom" and back.child_frame_id == "base_link"
    p, q = back.pose.pose.position, back.pose.pose.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], T[:3, 3])
    np.testing.assert_allclose(matrix_from_quaternion([q.x, q.y, q.z, q.w]), T[:3, :3], atol=1e-12)
    np.testing.assert_array_equal(np.asarray(back.pose.covariance).reshape(6, 6), pose_cov)
    np.testing.assert_array_equal(np.asarray(back.twist.covariance).reshape(6, 6), twist_cov)
    assert back.twist.twist.angular.z == pytest.approx(0.2) and back.twist.twist.linear.x == 1.0
    with pytest.raises(InputError, match="pose_cov"):
        cv.odometry_msg(t, msg.header, "base_link", T, [1, 0, 0], [0, 0, 0], np.eye(3), twist_cov)


def test_tf_message_serialises(store):
    typestore, t = store
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = rotation_z(-1.0), [0.1, 0.2, 0.3]
    stamped = cv.transform_stamped(t, cv.header(t, 11, "odom"), "base_link", T)
    back = cdr_round_trip(typestore, cv.tf_message(t, [stamped, stamped]))
    assert len(back.transforms) == 2
    tr = back.transforms[1].transform
    np.testing.assert_allclose([tr.translation.x, tr.translation.y, tr.translation.z], T[:3, 3])
    q = [tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w]
    np.testing.assert_allclose(matrix_from_quaternion(q), T[:3, :3], atol=1e-12)


def test_imu_serialises_and_reads_back_as_a_gyroscope_sample(store):
    typestore, t = store
    msg = cv.imu_msg(t, cv.header(t, 12, "imu_link"), np.array([0.1, -0.2, 0.3]), 1e-6)
    back = cdr_round_trip(typestore, msg)
    stamp, frame, omega = cv.angular_velocity(back)
    assert (stamp, frame) == (12, "imu_link")
    np.testing.assert_array_equal(omega, [0.1, -0.2, 0.3])
    np.testing.assert_array_equal(
        np.asarray(back.angular_velocity_covariance), np.eye(3).ravel() * 1e-6
    )
    for absent in (back.orientation_covariance, back.linear_acceleration_covariance):
        assert absent[0] == -1.0  # Imu.msg: no orientation, no acceleration
    back.angular_velocity_covariance = ABSENT.copy()
    assert cv.angular_velocity(back) is None  # no angular velocity either


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_700_000_000_123_456_789, -1])
def test_stamp_round_trip(store, ns):
    _, t = store
    stamp = cv.ns_to_stamp(t, ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert cv.stamp_to_ns(stamp) == ns


# ------------------------------------------------------------------------------ rclpy-like types
IMU_FIELDS = ("orientation", "angular_velocity", "linear_acceleration")


class StrictMsg:
    """Mimics rclpy's setters: plain int/float scalars, array.array for unbounded sequences."""

    SEQUENCES = {"data", "d"}
    FIXED = {"k", "r", "p", "covariance", *(f"{f}_covariance" for f in IMU_FIELDS)}
    FLOAT32 = 7

    def __init__(self, **fields):
        for name, value in fields.items():
            if name in self.SEQUENCES:
                assert isinstance(value, array.array), name
            elif name in self.FIXED:
                assert isinstance(value, np.ndarray) and value.dtype == np.float64, name
            else:
                assert not isinstance(value, (np.ndarray, np.generic)), name
            setattr(self, name, value)


@pytest.fixture
def fake_ros(monkeypatch):
    names = {
        "builtin_interfaces.msg": ["Time"],
        "std_msgs.msg": ["Header"],
        "geometry_msgs.msg": [
            "Point",
            "Pose",
            "PoseWithCovariance",
            "Quaternion",
            "Transform",
            "TransformStamped",
            "Twist",
            "TwistWithCovariance",
            "Vector3",
        ],
        "nav_msgs.msg": ["Odometry"],
        "sensor_msgs.msg": [
            "CameraInfo",
            "CompressedImage",
            "Image",
            "Imu",
            "PointCloud2",
            "PointField",
            "RegionOfInterest",
        ],
        "tf2_msgs.msg": ["TFMessage"],
    }
    for module_name, classes in names.items():
        module = pytypes.ModuleType(module_name)
        for cls in classes:
            setattr(module, cls, type(cls, (StrictMsg,), {}))
        monkeypatch.setitem(sys.modules, module_name, module)
        monkeypatch.setitem(sys.modules, module_name.split(".")[0], pytypes.ModuleType("pkg"))
    return cv.rclpy_types()


def test_rclpy_types_builders(fake_ros):
    t = fake_ros
    hdr = cv.header(t, 5, "cam")
    image = np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)
    msg = cv.numpy_to_image(t, image, "rgb8", hdr)
    np.testing.assert_array_equal(cv.image_to_rgb8(msg), image)
    info = cv.camera_info_msg(t, K_TEST, 48, 32, hdr)
    np.testing.assert_allclose(cv.camera_info_to_K(info)[0], K_TEST)
    raw = Camera(K_TEST, 48, 32, (0.1, 0.0, 0.0, 0.0, 0.0), rectified=False)
    assert cv.camera_from_camera_info(cv.camera_info_msg(t, raw, hdr)) == raw
    cv.depth_to_mm_image(t, np.ones((H, W), np.float32), hdr)
    cv.pointcloud2_msg(t, hdr, np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))
    cv.odometry_msg(t, hdr, "base_link", np.eye(4), np.zeros(3), np.zeros(3), np.eye(6), np.eye(6))
    cv.tf_message(t, [cv.transform_stamped(t, hdr, "base_link", np.eye(4))])
    cv.imu_msg(t, hdr, np.zeros(3))

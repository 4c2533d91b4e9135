"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, on message fields only.

Decoding works on rclpy messages (``data`` an ``array.array``), rosbags dataclasses (``data`` an
``np.ndarray``) and anything else with the same fields. Encoded images are always little-endian
(``is_bigendian = 0``) with rows packed (``step = width * bytes_per_pixel``).
"""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.messages.msg_types import MsgTypes

BAYER = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
"""Bayer pattern (ROS names its top-left 2x2 cell) -> OpenCV demosaicing code (OpenCV names
the cell one pixel down and right), as cv_bridge maps them."""
YUV422 = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2}
"""Packed 4:2:2 YUV (two bytes a pixel): ROS 2's ``yuv422`` is UYVY, ``yuv422_yuy2`` YUYV."""

# encoding -> (dtype, channels). "8UC3" is taken as OpenCV's BGR order, like cv_bridge.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "8UC3": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "rgb16": (np.dtype(np.uint16), 3),
    "bgr16": (np.dtype(np.uint16), 3),
    "rgba16": (np.dtype(np.uint16), 4),
    "bgra16": (np.dtype(np.uint16), 4),
    **{f"bayer_{p}{bits}": (np.dtype(f"uint{bits}"), 1) for p in BAYER for bits in (8, 16)},
    "yuv422": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "32FC2": (np.dtype(np.float32), 2),
}
COLOUR_ENCODINGS = (
    "rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "mono8", "8UC1", "mono16",
    "rgb16", "bgr16", "rgba16", "bgra16",
    *(f"bayer_{p}{bits}" for p in BAYER for bits in (8, 16)),
    *YUV422,
)  # fmt: skip
"""The encodings a camera input may have (`image_to_rgb8`): colour, grey, raw Bayer (a camera
driver's ``image_raw`` before ``image_proc``) and packed YUV 4:2:2 (USB cameras), 8 or 16
bits."""
DEPTH_ENCODINGS = ("16UC1", "32FC1")
"""REP 118 depth encodings: refused on the camera input."""


def _encoding_info(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise InputError(
            f"unsupported image encoding '{encoding}'; supported: {', '.join(ENCODINGS)}"
        ) from None


def _as_bytes(data: Any) -> np.ndarray:
    """Flat uint8 view of a message's ``data`` (bytes, array.array, ndarray or list)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_numpy(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` to a new array in native byte order.

    Returns:
        (H, W) for one-channel encodings, else (H, W, C); dtype uint8, uint16 or float32. Channel
        order is the encoding's (``bgr8`` stays BGR). Row padding (``step``) is dropped and
        ``is_bigendian`` honoured.
    """
    dtype, channels = _encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise InputError(f"image has zero size ({width}x{height}, encoding {msg.encoding})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(
            f"image step {step} is smaller than width * bytes per pixel = {row_bytes} "
            f"({width}x{height} {msg.encoding})"
        )
    buf = _as_bytes(msg.data)
    if buf.size < height * step:
        raise InputError(
            f"image data is truncated: {buf.size} bytes, expected height * step = "
            f"{height} * {step} = {height * step} ({msg.encoding})"
        )
    rows = np.ascontiguousarray(buf[: height * step].reshape(height, step)[:, :row_bytes])
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    image = rows.view(wire).astype(dtype)  # to native order, always a copy
    return image.reshape(height, width) if channels == 1 else image.reshape(height, width, channels)


def _depth_stream_error(encoding: str) -> InputError:
    return InputError(
        f"image encoding '{encoding}' is a depth image (REP 118), not a camera image: "
        "remap a colour or grey camera topic onto the image input"
    )


def image_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a colour or grey ``sensor_msgs/Image`` to the network's (H, W, 3) uint8 RGB.

    Accepts `COLOUR_ENCODINGS`; depth encodings (``16UC1``, ``32FC1``) are refused. Grey is
    replicated to three channels, BGR swapped, alpha dropped, Bayer mosaics demosaiced and YUV
    converted (BT.601) with OpenCV, as cv_bridge does. 16-bit images keep their high byte
    (``>> 8``, like cv_bridge's mono16 -> mono8): a fixed scale keeps brightness constant
    across frames, which the photometric loss relies on.
    """
    if msg.encoding in DEPTH_ENCODINGS:
        raise _depth_stream_error(msg.encoding)
    if msg.encoding not in COLOUR_ENCODINGS:
        raise InputError(
            f"unsupported image encoding '{msg.encoding}'; supported: {', '.join(COLOUR_ENCODINGS)}"
        )
    image = image_to_numpy(msg)
    if msg.encoding in YUV422:
        if image.shape[1] % 2:
            raise InputError(f"'{msg.encoding}' image has an odd width ({image.shape[1]})")
        return cv2.cvtColor(image, YUV422[msg.encoding])
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if msg.encoding.startswith("bayer_"):
        return cv2.cvtColor(image, BAYER[msg.encoding[6:10]])
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if msg.encoding in ("bgr8", "bgra8", "8UC3", "bgr16", "bgra16"):
        image = image[:, :, 2::-1]
    return np.ascontiguousarray(image[:, :, :3])


def compressed_to_rgb8(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) with Pillow to (H, W, 3) uint8.

    ``format`` is image_transport's ("jpeg", "png", "rgb8; jpeg compressed bgr8"); the stream is a
    standard file whatever it says, so Pillow's own detection decides. 16-bit PNGs keep their high
    byte. ``compressedDepth`` streams and depth encodings (``16UC1; png compressed``) are
    refused, and so are images larger than Pillow's decompression-bomb limit.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if "compresseddepth" in msg.format.lower():
        raise InputError(f"compressed image format '{msg.format}' is a depth stream, not colour")
    if msg.format.split(";")[0].strip() in DEPTH_ENCODINGS:
        raise _depth_stream_error(msg.format)
    data = _as_bytes(msg.data).tobytes()
    what = f"cannot decode compressed image (format '{msg.format}', {len(data)} bytes)"
    try:
        with PILImage.open(io.BytesIO(data)) as pil:
            pil.load()
            if pil.mode.startswith("I;16"):
                grey = (np.asarray(pil, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(pil.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError:  # its message shows the BytesIO object, not the cause
        raise InputError(f"{what}: not an image format Pillow reads") from None
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
        raise InputError(f"{what}: {exc}") from exc


def numpy_to_image(types: MsgTypes, array: np.ndarray, encoding: str, header: Any) -> Any:
    """Encode an array as a ``sensor_msgs/Image`` (little-endian, rows packed).

    Args:
        array: (H, W) or (H, W, C) with the encoding's dtype and channel count, e.g. float32 (H, W)
            for ``32FC1``, uint16 for ``16UC1``, uint8 (H, W, 3) for ``rgb8``, float32 (H, W, 2)
            for ``32FC2``.
    """
    dtype, channels = _encoding_info(encoding)
    array = np.asarray(array)
    if array.ndim == 2 and channels == 1:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels or array.dtype != dtype:
        raise InputError(
            f"array of shape {array.shape} and dtype {array.dtype} does not match encoding "
            f"'{encoding}' ({channels} channel(s) of {dtype})"
        )
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).view(np.uint8)
    return types.Image(
        header=header,
        height=int(height),
        width=int(width),
        encoding=encoding,
        is_bigendian=0,
        step=int(width * channels * dtype.itemsize),
        data=types.uint8_seq(data.reshape(-1)),
    )


def depth_to_image(types: MsgTypes, depth_m: np.ndarray, header: Any) -> Any:
    """(H, W) depth in metres -> ``32FC1`` image (REP 118); NaN, zero or negative -> NaN."""
    depth = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        not_positive = depth <= 0  # False for NaN
    if not_positive.any():
        depth = np.where(not_positive, np.float32(np.nan), depth)
    return numpy_to_image(types, depth, "32FC1", header)


def depth_to_mm_image(types: MsgTypes, depth_m: np.ndarray, header: Any) -> Any:
    """(H, W) depth in metres -> ``16UC1`` millimetres (REP 118): 0 = no measurement, which
    is also what NaN, <= 0 and depth beyond 65.535 m (inf included) become."""
    depth = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        mm = np.round(depth * 1000.0)
        valid = (mm <= 65535) & (depth > 0)  # False for NaN and inf
    mm = np.where(valid, np.maximum(mm, 1), 0)  # 0 < depth < 0.5 mm -> 1
    return numpy_to_image(types, mm.astype(np.uint16), "16UC1", header)

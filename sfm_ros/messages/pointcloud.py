"""``sensor_msgs/PointCloud2`` builder (x, y, z float32 and optional PCL-packed rgb)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.messages.msg_types import MsgTypes


def pointcloud2_msg(
    types: MsgTypes, header: Any, points_xyz: np.ndarray, rgb: np.ndarray | None = None
) -> Any:
    """Unorganised cloud (``height = 1``), little-endian, in ``header.frame_id``.

    Args:
        points_xyz: (N, 3) coordinates in metres (cast to float32).
        rgb: optional (N, 3) uint8 colours, packed like PCL: the uint32 ``r << 16 | g << 8 | b``
            stored in a float32 field named ``rgb`` (what RViz reads).
    """
    xyz = np.asarray(points_xyz, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InputError(f"points_xyz must have shape (N, 3), got {xyz.shape}")
    names = ["x", "y", "z"]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
            raise InputError(f"rgb must be (N, 3) uint8 like points, got {rgb.shape} {rgb.dtype}")
        names.append("rgb")
    dtype = np.dtype({"names": names, "formats": ["<f4"] * len(names)})
    cloud = np.empty(len(xyz), dtype=dtype)
    cloud["x"], cloud["y"], cloud["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        c = rgb.astype(np.uint32)
        cloud["rgb"] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype("<u4").view("<f4")
    fields = [
        types.PointField(name=n, offset=4 * i, datatype=types.PointField.FLOAT32, count=1)
        for i, n in enumerate(names)
    ]
    return types.PointCloud2(
        header=header,
        height=1,
        width=len(xyz),
        fields=fields,
        is_bigendian=False,
        point_step=dtype.itemsize,
        row_step=dtype.itemsize * len(xyz),
        data=types.uint8_seq(cloud.view(np.uint8)),
        is_dense=bool(np.all(np.isfinite(xyz))),
    )

"""Data sources named by one string, as used in configs and on the command line.

- `synthetic:DOMAIN[:FRAMES[:SEED]]` renders a sequence of the procedural world
  (e.g. `synthetic:street:600:0`);
- anything else is a path handed to `open_sequences` (KITTI odometry or raw, an image folder
  with intrinsics, a folder written by `sfm-ros synth`; a rosbag2 folder, .db3, .mcap or .bag
  when a ``bag_reader`` is given: `sfm_ros.messages.open_source` gives it).
"""

from __future__ import annotations

from pathlib import Path

from sfm_ros.core.data import BagReader, FrameSequence, InMemorySequence, open_sequences
from sfm_ros.core.errors import DatasetError
from sfm_ros.core.synthetic import render_sequence

SYNTHETIC_PREFIX = "synthetic:"


def parse_synthetic(spec: str) -> tuple[str, int, int]:
    """`synthetic:street:600:3` -> ("street", 600, 3); frames default 200, seed 0."""
    parts = spec[len(SYNTHETIC_PREFIX) :].split(":")
    try:
        domain = parts[0]
        frames = int(parts[1]) if len(parts) > 1 and parts[1] else 200
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    except ValueError:
        raise DatasetError(
            f"bad synthetic source {spec!r}; expected synthetic:DOMAIN[:FRAMES[:SEED]]"
        ) from None
    if len(parts) > 3 or frames < 1:
        raise DatasetError(
            f"bad synthetic source {spec!r}; expected synthetic:DOMAIN[:FRAMES[:SEED]]"
        )
    return domain, frames, seed


def open_source(
    spec: str,
    *,
    height: int = 128,
    width: int = 416,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    bag_reader: BagReader | None = None,
) -> list[FrameSequence]:
    """Open one source string as a list of frame sequences.

    `height`/`width` only set the rendering resolution of synthetic sources; recorded data
    keeps its own resolution (the snippet dataset resizes it).
    """
    if spec.startswith(SYNTHETIC_PREFIX):
        domain, frames, seed = parse_synthetic(spec)
        seq = render_sequence(domain, frames, seed=seed, height=height, width=width)
        return [
            InMemorySequence(
                name=f"synthetic-{domain}-{seed}",
                images=seq.images,
                K=seq.K,
                stamps_ns=seq.stamps_ns,
                T_world_cam=seq.T_world_cam,
                depth_m=seq.depth_m,
            )
        ]
    return open_sequences(
        Path(spec),
        image_topic=image_topic,
        camera_info_topic=camera_info_topic,
        bag_reader=bag_reader,
    )


def open_sources(specs: list[str], **kwargs) -> list[FrameSequence]:
    """`open_source` for every spec, concatenated."""
    sequences: list[FrameSequence] = []
    for spec in specs:
        sequences.extend(open_source(spec, **kwargs))
    return sequences

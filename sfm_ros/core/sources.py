"""Data sources named by one string, as used in configs and on the command line.

- `synthetic:DOMAIN[:FRAMES[:SEED[:RANDOM]]]` renders a sequence of the procedural world
  (e.g. `synthetic:street:600:0`). DOMAIN is one of `street`, `corridor`, `field`, `warehouse`,
  `rural`; FRAMES defaults to 200 and SEED to 0. RANDOM switches on sim-to-real domain
  randomisation (`sfm_ros.core.synthetic.randomize`), drawn per sequence from the seed:
  `random` for all of it, or groups joined by `+` from `geometry` (field of view, principal
  point, camera height, pitch and roll, frame rate, speed), `appearance` (light direction,
  shadows, sky, material variants) and `photometric` (exposure, white balance, response curve,
  vignetting, blur, noise, JPEG, grey), e.g. `synthetic:rural:100:7:random` or
  `synthetic:street:100:7:geometry+appearance`. Use many seeds: each seed is one camera.
- anything else is a path handed to `open_sequences` (KITTI odometry or raw, an image folder
  with intrinsics, a folder written by `sfm-ros synth`; a rosbag2 folder, .db3, .mcap or .bag
  when a ``bag_reader`` is given: `sfm_ros.messages.open_source` gives it).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

from sfm_ros.core.data import BagReader, FrameSequence, InMemorySequence, open_sequences
from sfm_ros.core.errors import DatasetError
from sfm_ros.core.synthetic import Randomization, render_sequence

SYNTHETIC_PREFIX = "synthetic:"


_SYNTAX = "synthetic:DOMAIN[:FRAMES[:SEED[:random|GROUP+GROUP...]]]"
_GROUPS = ("geometry", "appearance", "photometric")


class SyntheticSource(NamedTuple):
    domain: str
    frames: int
    seed: int
    randomization: Randomization | None


def _randomization(spec: str, option: str) -> Randomization | None:
    if not option:
        return None
    groups = set(_GROUPS) if option == "random" else set(option.split("+"))
    if not groups <= set(_GROUPS):
        raise DatasetError(
            f"bad synthetic source {spec!r}: randomisation {option!r} is not `random` or "
            f"groups of {', '.join(_GROUPS)} joined by +"
        )
    return Randomization(**{group: group in groups for group in _GROUPS})


def parse_synthetic(spec: str) -> SyntheticSource:
    """`synthetic:street:600:3:random` -> ("street", 600, 3, Randomization()); frames default
    200, seed 0, no randomisation."""
    parts = spec[len(SYNTHETIC_PREFIX) :].split(":")
    try:
        domain = parts[0]
        frames = int(parts[1]) if len(parts) > 1 and parts[1] else 200
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    except ValueError:
        raise DatasetError(f"bad synthetic source {spec!r}; expected {_SYNTAX}") from None
    if len(parts) > 4 or frames < 1 or seed < 0:
        raise DatasetError(f"bad synthetic source {spec!r}; expected {_SYNTAX}")
    option = parts[3] if len(parts) > 3 else ""
    return SyntheticSource(domain, frames, seed, _randomization(spec, option))


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
        domain, frames, seed, randomization = parse_synthetic(spec)
        seq = render_sequence(
            domain, frames, seed=seed, height=height, width=width, randomization=randomization
        )
        suffix = "" if randomization is None else f"-{spec.rsplit(':', 1)[1]}"
        return [
            InMemorySequence(
                name=f"synthetic-{domain}-{seed}{suffix}",
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


def open_sources(specs: list[str], render_workers: int = 1, **kwargs) -> list[FrameSequence]:
    """`open_source` for every spec, concatenated, in their order.

    Args:
        render_workers: processes rendering the synthetic specs (0 = one per CPU core; at
            most one per synthetic spec): rendering is numpy on one core, 5-7 s per 60-frame
            sequence at 128x416, which a 16-core GPU machine would otherwise spend serially
            before its first training step. Each sequence depends on its seed alone, so the
            frames are the same whichever process renders them.
    """
    workers = _usable_cores() if render_workers == 0 else render_workers
    synthetic = [i for i, spec in enumerate(specs) if spec.startswith(SYNTHETIC_PREFIX)]
    rendered: dict[int, list[FrameSequence]] = {}
    if workers > 1 and len(synthetic) > 1:
        size = {key: kwargs[key] for key in ("height", "width") if key in kwargs}
        context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
        with ProcessPoolExecutor(min(workers, len(synthetic)), mp_context=context) as pool:
            jobs = {i: pool.submit(_render, specs[i], size) for i in synthetic}
            rendered = {i: job.result() for i, job in jobs.items()}
    sequences: list[FrameSequence] = []
    for i, spec in enumerate(specs):
        sequences.extend(rendered[i] if i in rendered else open_source(spec, **kwargs))
    return sequences


def _usable_cores() -> int:
    """CPU cores this process may run on (a container's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _render(spec: str, size: dict[str, int]) -> list[FrameSequence]:
    """A synthetic spec's sequences (a pool job: a module-level function pickles)."""
    return open_source(spec, **size)

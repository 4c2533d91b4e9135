"""`open_sequences` / `open_source(s)` of `sfm_ros.core` that also read bags (rosbag2, ROS 1)."""

from __future__ import annotations

from functools import partial

from sfm_ros.core import sources
from sfm_ros.core.data import sequence
from sfm_ros.messages.bag_dataset import BagSequence

open_sequences = partial(sequence.open_sequences, bag_reader=BagSequence)
open_source = partial(sources.open_source, bag_reader=BagSequence)
open_sources = partial(sources.open_sources, bag_reader=BagSequence)

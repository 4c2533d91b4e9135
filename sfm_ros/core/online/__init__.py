"""Online self-supervised fine-tuning: adapt the networks to the stream a robot sees."""

from sfm_ros.core.online.adapter import (
    LATEST,
    AdapterStats,
    CheckResult,
    OnlineAdapter,
    StepResult,
    camera_aspect_size,
    torch_threads,
)
from sfm_ros.core.online.buffer import Snippet, SnippetBuffer, SnippetBuilder
from sfm_ros.core.online.config import OnlineConfig
from sfm_ros.core.online.guard import DepthGuard, DepthStats, depth_stats, rank_correlation
from sfm_ros.core.online.recording import AdaptSummary, adapt_sequences
from sfm_ros.core.online.replay import ReplayPool

__all__ = [
    "LATEST",
    "AdaptSummary",
    "AdapterStats",
    "CheckResult",
    "DepthGuard",
    "DepthStats",
    "OnlineAdapter",
    "OnlineConfig",
    "ReplayPool",
    "Snippet",
    "SnippetBuffer",
    "SnippetBuilder",
    "StepResult",
    "adapt_sequences",
    "camera_aspect_size",
    "depth_stats",
    "rank_correlation",
    "torch_threads",
]

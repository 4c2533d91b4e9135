"""Online self-supervised fine-tuning: adapt the networks to the stream a robot sees."""

from sfm_ros.core.online.adapter import (
    LATEST,
    AdapterStats,
    CheckResult,
    OnlineAdapter,
    StepResult,
)
from sfm_ros.core.online.buffer import Snippet, SnippetBuffer, SnippetBuilder
from sfm_ros.core.online.config import OnlineConfig
from sfm_ros.core.online.recording import AdaptSummary, adapt_sequences

__all__ = [
    "LATEST",
    "AdaptSummary",
    "AdapterStats",
    "CheckResult",
    "OnlineAdapter",
    "OnlineConfig",
    "Snippet",
    "SnippetBuffer",
    "SnippetBuilder",
    "StepResult",
    "adapt_sequences",
]

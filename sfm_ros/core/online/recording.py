"""Adapt to a recording offline: stream its frames in order through an `OnlineAdapter`.

Either deterministic (``steps_per_frame`` training steps after each frame, as fast as the
machine goes) or paced at the recording's own rate with the adapter's background thread and
duty cycle, as on a robot. A final check publishes the last weights that pass it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sfm_ros.core.data import FrameSequence
from sfm_ros.core.errors import DatasetError
from sfm_ros.core.online.adapter import LATEST, AdapterStats, OnlineAdapter

MAX_PACE_GAP_S = 1.0
"""Longest wait between two frames when pacing (longer gaps in a recording are cut short)."""


@dataclass
class AdaptSummary:
    """What an offline adaptation did."""

    frames: int
    seconds: float
    stats: AdapterStats
    version: int
    out_dir: Path
    holdout_start: float
    """Held-out loss of the starting weights on the final held-out snippets (NaN if none)."""
    holdout_adapted: float
    """Held-out loss of the last published (good) weights on the same snippets."""
    message: str
    """Result of the final save."""

    def format(self) -> str:
        s = self.stats
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())) or "none"
        lines = [
            f"frames: {self.frames} in {self.seconds:.1f} s; keyframes {s.keyframes}; "
            f"skipped: {skipped}",
            f"snippets: {s.snippets_train} training, {s.snippets_holdout} held out",
            f"steps: {s.steps} ({s.skipped_nonfinite} skipped as non-finite), "
            f"{s.train_time_s:.1f} s training; checks {s.checks}, rollbacks {s.rollbacks}",
        ]
        if not math.isnan(self.holdout_start):
            lines.append(
                f"held-out loss: {self.holdout_start:.4f} (start) -> "
                f"{self.holdout_adapted:.4f} (version {self.version})"
            )
        lines.append(f"final save: {self.message}")
        if self.version:
            lines.append(f"checkpoint: {self.out_dir / LATEST}")
        return "\n".join(lines)


def adapt_sequences(
    adapter: OnlineAdapter,
    sequences: list[FrameSequence],
    steps_per_frame: int = 1,
    realtime: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
) -> AdaptSummary:
    """Feed every frame of ``sequences`` in order to ``adapter``, train, and save at the end.

    Args:
        steps_per_frame: training steps after each frame once the buffer is warm
            (deterministic mode; ignored with ``realtime``).
        realtime: wait between frames as long as their stamps say (at most
            MAX_PACE_GAP_S) and train in the background thread within the duty cycle.
        max_frames: stop after this many frames.
    """
    frames = [(seq, i) for seq in sequences for i in range(len(seq))][:max_frames]
    if not frames:
        raise DatasetError("the recording has no frames to adapt on")
    start = time.perf_counter()
    if realtime:
        adapter.start()
    previous: tuple[FrameSequence, int, float] | None = None  # sequence, stamp, wall time
    try:
        for seq, i in tqdm(frames, desc="finetune", disable=not progress, dynamic_ncols=True):
            frame = seq.load(i)
            if previous is None or previous[0] is not seq:
                adapter.new_sequence()
            elif realtime:
                gap_s = min(max((frame.stamp_ns - previous[1]) * 1e-9, 0.0), MAX_PACE_GAP_S)
                time.sleep(max(0.0, previous[2] + gap_s - time.perf_counter()))
            previous = (seq, frame.stamp_ns, time.perf_counter())
            adapter.push(frame.image, frame.K, frame.stamp_ns)
            if not realtime:
                for _ in range(steps_per_frame):
                    if adapter.ready():
                        adapter.step_once()
    finally:
        adapter.stop()
    _, message = adapter.save()
    return AdaptSummary(
        frames=len(frames),
        seconds=time.perf_counter() - start,
        stats=adapter.stats,
        version=adapter.version,
        out_dir=adapter.out_dir,
        holdout_start=adapter.evaluate_holdout("start"),
        holdout_adapted=adapter.evaluate_holdout("good"),
        message=message,
    )

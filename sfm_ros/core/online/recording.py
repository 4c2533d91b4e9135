"""Adapt to a recording offline: stream its frames in order through an `OnlineAdapter`.

Either deterministic (``steps_per_frame`` training steps after each frame, as fast as the
machine goes) or paced at the recording's own rate with the adapter's background thread and
duty cycle, as on a robot. With a step budget (``max_steps``) training goes on over the buffer
(and the replayed data) after the last frame until the budget is spent, so a short clip gets the
steps it was given, and reading stops once it is spent; a time budget (``max_minutes``) stops
reading and training when it is spent.
Training runs on ``OnlineConfig.threads`` CPU threads. A final check publishes the last weights
that pass it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sfm_ros.core.data import FrameSequence
from sfm_ros.core.errors import DatasetError, InputError
from sfm_ros.core.online.adapter import LATEST, AdapterStats, OnlineAdapter, torch_threads

MAX_PACE_GAP_S = 1.0
"""Longest wait between two frames when pacing (longer gaps in a recording are cut short)."""


@dataclass
class AdaptSummary:
    """What an offline adaptation did."""

    frames: int
    """Frames read (fewer than the recording's when a time budget stopped the run)."""
    seconds: float
    stats: AdapterStats
    steps: int
    """Training steps of this run (``stats.steps`` also counts those of resumed runs)."""
    stopped: str
    """Why training ended: "end of the recording", "step budget" or "time budget"."""
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
        per_step = s.train_time_s / s.steps if s.steps else math.nan
        lines = [
            f"frames: {self.frames} in {self.seconds:.1f} s; keyframes {s.keyframes}; "
            f"skipped: {skipped}",
            f"snippets: {s.snippets_train} training, {s.snippets_holdout} held out",
            f"steps: {self.steps} ({s.skipped_nonfinite} skipped as non-finite), "
            f"{s.train_time_s:.1f} s training ({per_step:.2f} s/step); stopped by: "
            f"{self.stopped}",
            f"checks {s.checks}, published {s.publishes}, held for forgetting "
            f"{s.forgetting_holds}, rollbacks {s.rollbacks}"
            + (f" (last: {s.last_rollback})" if s.last_rollback else ""),
        ]
        if not math.isnan(self.holdout_start):
            lines.append(
                f"held-out loss: {self.holdout_start:.4f} (start) -> "
                f"{self.holdout_adapted:.4f} (version {self.version})"
            )
        if s.holdout_depth:
            d = s.holdout_depth
            lines.append(
                "held-out depth at the last check (start -> checked): log spread "
                f"{d['depth_spread_start']:.3f} -> {d['depth_spread']:.3f}, at the output bounds "
                f"{100 * d['depth_saturation_start']:.1f}% -> {100 * d['depth_saturation']:.1f}%, "
                f"median {d['depth_median_start']:.3g} -> {d['depth_median']:.3g}"
            )
        if "memory_abs_rel" in s.holdout_depth:
            d = s.holdout_depth
            lines.append(
                "memory Abs Rel at the last check (start -> checked): "
                f"{d['memory_abs_rel_start']:.3f} -> {d['memory_abs_rel']:.3f}, worst domain "
                f"{100 * d['memory_worst_change']:+.1f}%"
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
    max_steps: int | None = None,
    max_minutes: float | None = None,
) -> AdaptSummary:
    """Feed every frame of ``sequences`` in order to ``adapter``, train, and save at the end.

    Args:
        steps_per_frame: training steps after each frame once the buffer is warm
            (deterministic mode; ignored with ``realtime``).
        realtime: wait between frames as long as their stamps say (at most
            MAX_PACE_GAP_S) and train in the background thread within the duty cycle.
        max_frames: stop after this many frames.
        max_steps: training steps of this run: training stops there, and goes on over the
            buffer after the last frame until there.
        max_minutes: wall-clock budget of the whole run (reading frames and training).

    Raises:
        DatasetError: the recording has no frames.
        InputError: a negative budget.
    """
    if (max_steps is not None and max_steps < 0) or (max_minutes is not None and max_minutes <= 0):
        raise InputError(f"budgets must be positive, got {max_steps} steps, {max_minutes} min")
    frames = [(seq, i) for seq in sequences for i in range(len(seq))][:max_frames]
    if not frames:
        raise DatasetError("the recording has no frames to adapt on")
    start = time.perf_counter()
    deadline = math.inf if max_minutes is None else start + 60.0 * max_minutes
    first_step = adapter.stats.steps
    target = math.inf if max_steps is None else first_step + max_steps
    stopped = "end of the recording"
    read = 0

    def budget_left() -> bool:
        nonlocal stopped
        if adapter.stats.steps >= target:
            stopped = "step budget"
        elif time.perf_counter() >= deadline:
            stopped = "time budget"
        else:
            return True
        return False

    if realtime:
        adapter.start(until_step=None if max_steps is None else int(target))
    previous: tuple[FrameSequence, int, float] | None = None  # sequence, stamp, wall time
    try:
        with torch_threads(adapter.cfg.threads):
            for seq, i in tqdm(frames, desc="finetune", disable=not progress, dynamic_ncols=True):
                if time.perf_counter() >= deadline:
                    stopped = "time budget"
                    break
                frame = seq.load(i)
                if previous is None or previous[0] is not seq:
                    adapter.new_sequence()
                elif realtime:
                    gap_s = min(max((frame.stamp_ns - previous[1]) * 1e-9, 0.0), MAX_PACE_GAP_S)
                    time.sleep(max(0.0, previous[2] + gap_s - time.perf_counter()))
                previous = (seq, frame.stamp_ns, time.perf_counter())
                adapter.push(frame.image, frame.K, frame.stamp_ns)
                read += 1
                if not realtime:
                    for _ in range(steps_per_frame):
                        if adapter.ready() and budget_left():
                            adapter.step_once()
                if adapter.stats.steps >= target and len(adapter.holdout):
                    stopped = "step budget"  # the other frames would only be read
                    break
            adapter.stop()
            if max_steps is not None and stopped == "end of the recording":
                # A short recording: keep training on what it gave (and on replay) until the
                # budget is spent.
                left = int(target - adapter.stats.steps)
                bar = tqdm(total=left, desc="finetune (buffer)", disable=not progress or left <= 0)
                while len(adapter.buffer) and budget_left():
                    adapter.step_once()
                    bar.update()
                bar.close()
                if not len(adapter.buffer):
                    stopped = "end of the recording (no training snippet: camera too still?)"
            _, message = adapter.save()
    finally:
        adapter.stop()
    return AdaptSummary(
        frames=read,
        seconds=time.perf_counter() - start,
        stats=adapter.stats,
        steps=adapter.stats.steps - first_step,
        stopped=stopped,
        version=adapter.version,
        out_dir=adapter.out_dir,
        holdout_start=adapter.evaluate_holdout("start"),
        holdout_adapted=adapter.evaluate_holdout("good"),
        message=message,
    )

"""`OnlineConfig`: every setting of online fine-tuning (the names are the ROS parameter names)."""

from __future__ import annotations

from dataclasses import dataclass

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.params import Params, param


@dataclass
class OnlineConfig(Params):
    """Settings of :class:`~sfm_ros.core.online.OnlineAdapter` (and of the ``finetune`` node)."""

    checkpoint: str = param(
        "",
        "starting checkpoint (.pt, or an `sfm-ros export` folder: its source checkpoint); "
        "empty = the packaged model (offline: from scratch if none)",
    )
    out_dir: str = param(
        "sfm_finetune", "folder of the adapted checkpoints (adapted_<version>.pt, latest.pt)"
    )
    resume: bool = param(True, "continue from out_dir/latest.pt when it exists")
    device: str = param("auto", "training device: auto, cpu, cuda, cuda:N")
    lr: float = param(5e-5, "Adam learning rate (keep it low: adaptation, not training)")
    batch_size: int = param(2, "snippets per training step (the newest one always included)")
    buffer_size: int = param(64, "training snippets kept in the replay buffer (oldest dropped)")
    holdout_size: int = param(
        4, "recent snippets held out (never trained on) for the divergence check"
    )
    holdout_every: int = param(5, "every n-th accepted snippet goes to the held-out set")
    warmup_snippets: int = param(4, "training starts once the buffer holds this many snippets")
    duty_cycle: float = param(0.3, "largest fraction of wall time spent training, in (0, 1]")
    max_steps_per_s: float = param(0.0, "upper limit on training steps per second; 0 = none")
    save_period: int = param(
        50, "training steps between checks; weights that pass are published as a new version"
    )
    keep_last: int = param(5, "adapted_<version>.pt files kept besides latest.pt")
    min_motion: float = param(
        0.01,
        "a frame becomes a keyframe when its mean absolute grey difference to the previous "
        "keyframe (32 px wide thumbnails, intensities in [0, 1]) reaches this",
    )
    min_texture: float = param(
        0.02,
        "frames whose mean absolute grey gradient (intensities in [0, 1]) is lower are skipped",
    )
    max_keyframe_gap_s: float = param(
        1.0, "a longer time between keyframes (or time going backwards) starts a new snippet"
    )
    divergence_threshold: float = param(
        0.2, "roll back when the held-out loss exceeds the last good one by this fraction"
    )
    collapse_min_rel_std: float = param(
        0.02, "roll back when the held-out disparity's relative std falls below this"
    )
    collapse_min_mask: float = param(
        0.05, "roll back when the mean explainability mask falls below this (masked models)"
    )
    anchor_weight: float = param(0.0, "L2 pull of the weights towards the starting ones; 0 = off")
    replay_data: str = param(
        "", "original training data mixed into batches (path or synthetic:...); empty = none"
    )
    replay_fraction: float = param(0.25, "fraction of each batch drawn from replay_data")
    freeze_bn: bool = param(
        True,
        "keep BatchNorm statistics fixed (better depth and less forgetting in the domain-shift "
        "benchmark); false = they adapt to the new domain too",
    )
    seed: int = param(0, "seed of the batch sampling and of networks built from scratch")

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid setting."""
        positive = ("lr", "batch_size", "buffer_size", "holdout_size", "holdout_every")
        positive += ("save_period", "keep_last", "max_keyframe_gap_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.holdout_every < 2:
            raise ConfigError(f"holdout_every must be >= 2, got {self.holdout_every}")
        if not 0.0 < self.duty_cycle <= 1.0:
            raise ConfigError(f"duty_cycle must be in (0, 1], got {self.duty_cycle}")
        non_negative = ("warmup_snippets", "max_steps_per_s", "min_motion", "min_texture")
        non_negative += ("divergence_threshold", "collapse_min_rel_std", "collapse_min_mask")
        non_negative += ("anchor_weight", "seed")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.replay_fraction < 1.0:
            raise ConfigError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")

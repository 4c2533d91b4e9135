"""`OnlineConfig`: every setting of online fine-tuning (the names are the ROS parameter names)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sfm_ros.core.errors import ConfigError


def _param(default: Any, description: str) -> Any:
    return field(default=default, metadata={"description": description})


@dataclass
class OnlineConfig:
    """Settings of :class:`~sfm_ros.core.online.OnlineAdapter` (and of the ``finetune`` node)."""

    checkpoint: str = _param(
        "", "starting checkpoint (.pt); empty = the packaged model (offline: from scratch if none)"
    )
    out_dir: str = _param(
        "sfm_finetune", "folder of the adapted checkpoints (adapted_<version>.pt, latest.pt)"
    )
    resume: bool = _param(True, "continue from out_dir/latest.pt when it exists")
    device: str = _param("auto", "training device: auto, cpu, cuda, cuda:N")
    lr: float = _param(5e-5, "Adam learning rate (keep it low: adaptation, not training)")
    batch_size: int = _param(2, "snippets per training step (the newest one always included)")
    buffer_size: int = _param(64, "training snippets kept in the replay buffer (oldest dropped)")
    holdout_size: int = _param(
        4, "recent snippets held out (never trained on) for the divergence check"
    )
    holdout_every: int = _param(5, "every n-th accepted snippet goes to the held-out set")
    warmup_snippets: int = _param(4, "training starts once the buffer holds this many snippets")
    duty_cycle: float = _param(0.3, "largest fraction of wall time spent training, in (0, 1]")
    max_steps_per_s: float = _param(0.0, "upper limit on training steps per second; 0 = none")
    save_period: int = _param(
        50, "training steps between checks; weights that pass are published as a new version"
    )
    keep_last: int = _param(5, "adapted_<version>.pt files kept besides latest.pt")
    min_motion: float = _param(
        0.01,
        "a frame becomes a keyframe when its mean absolute grey difference to the previous "
        "keyframe (32 px wide thumbnails, intensities in [0, 1]) reaches this",
    )
    min_texture: float = _param(
        0.02,
        "frames whose mean absolute grey gradient (intensities in [0, 1]) is lower are skipped",
    )
    max_keyframe_gap_s: float = _param(
        1.0, "a longer time between keyframes (or time going backwards) starts a new snippet"
    )
    divergence_threshold: float = _param(
        0.2, "roll back when the held-out loss exceeds the last good one by this fraction"
    )
    collapse_min_rel_std: float = _param(
        0.02, "roll back when the held-out disparity's relative std falls below this"
    )
    collapse_min_mask: float = _param(
        0.05, "roll back when the mean explainability mask falls below this (masked models)"
    )
    anchor_weight: float = _param(0.0, "L2 pull of the weights towards the starting ones; 0 = off")
    replay_data: str = _param(
        "", "original training data mixed into batches (path or synthetic:...); empty = none"
    )
    replay_fraction: float = _param(0.25, "fraction of each batch drawn from replay_data")
    freeze_bn: bool = _param(
        False, "keep BatchNorm statistics fixed; false = they adapt to the new domain too"
    )
    seed: int = _param(0, "seed of the batch sampling and of networks built from scratch")

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

    def replace(self, **changes: Any) -> OnlineConfig:
        """A validated copy with some fields changed (unknown names raise ConfigError)."""
        names = {f.name for f in dataclasses.fields(self)}
        if unknown := sorted(set(changes) - names):
            raise ConfigError(f"unknown setting(s) {unknown}; known: {', '.join(sorted(names))}")
        for name, value in changes.items():
            current = getattr(self, name)
            if isinstance(current, float) and type(value) in (int, str):
                try:  # YAML reads 1e-4 as a string
                    changes[name] = float(value)
                except ValueError:
                    raise ConfigError(f"{name} must be a number, got {value!r}") from None
            elif type(value) is not type(current):
                raise ConfigError(f"{name} must be a {type(current).__name__}, got {value!r}")
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

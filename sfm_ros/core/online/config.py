"""`OnlineConfig`: every setting of online fine-tuning (the names are the ROS parameter names)."""

from __future__ import annotations

from dataclasses import dataclass

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.params import Params, param

ADAPT_RESOLUTIONS = ("checkpoint", "camera_aspect")
DEFAULT_REPLAY = (
    "synthetic:street:60:0,synthetic:corridor:60:0,synthetic:field:60:0,"
    "synthetic:warehouse:60:0:random,synthetic:rural:60:0:random"
)
"""60 frames of each of the five synthetic domains the packaged model was trained on: the three
plain ones and a randomised camera in the two others (with the plain three alone, a KITTI 00
warm-up forgot 11 % on the field; with all five, 1 %)."""


@dataclass
class OnlineConfig(Params):
    """Settings of :class:`~sfm_ros.core.online.OnlineAdapter` (and of the ``finetune`` node)."""

    checkpoint: str = param(
        "",
        "starting checkpoint (.pt, or an `sfm-ros export` folder: its source checkpoint); "
        "empty = the packaged model (offline: from scratch if none)",
    )
    out_dir: str = param(
        "sfm_finetune",
        "folder of the adapted versions (adapted_<version>.pt, weights only) and of latest.pt "
        "(the newest version with its optimiser state, to resume)",
    )
    resume: bool = param(True, "continue from out_dir/latest.pt when it exists")
    device: str = param("auto", "training device: auto, cpu, cuda, cuda:N")
    threads: int = param(
        1,
        "CPU threads of the training (torch intra-op threads of the thread that trains; other "
        "threads keep theirs); 0 = torch's default. One thread was 4-25x faster per step than "
        "two on a busy 2-core machine",
    )
    adapt_resolution: str = param(
        "checkpoint",
        "network input size while adapting: 'checkpoint' = the starting checkpoint's (camera "
        "images resized to it, aspect ratio not kept); 'camera_aspect' = about the same pixel "
        "count at the camera's aspect ratio, sides multiples of 32, fixed by the first frame: "
        "versions record that size, so depth nodes must load them (a live swap into a network "
        "running at another size is refused)",
        choices=ADAPT_RESOLUTIONS,
    )
    adapt_pixels: int = param(
        0,
        "pixel count of the 'camera_aspect' size; 0 = the checkpoint's. More pixels resolve "
        "smaller motions; a step costs about proportionally more",
    )
    lr: float = param(2.5e-5, "Adam learning rate (keep it low: adaptation, not training)")
    rollback_lr_factor: float = param(
        0.5,
        "the learning rate is multiplied by this after each rollback (down to lr / 16; back to "
        "lr on reset or restart): the same steps would fail the same way again",
    )
    batch_size: int = param(
        2, "snippets per training step: the newest live one, other live ones and replayed ones"
    )
    buffer_size: int = param(64, "training snippets kept in the replay buffer (oldest dropped)")
    holdout_size: int = param(
        4, "recent snippets held out (never trained on) for the divergence and depth checks"
    )
    holdout_every: int = param(5, "every n-th accepted snippet goes to the held-out set")
    warmup_snippets: int = param(4, "training starts once the buffer holds this many snippets")
    duty_cycle: float = param(0.3, "largest fraction of wall time spent training, in (0, 1]")
    max_steps_per_s: float = param(0.0, "upper limit on training steps per second; 0 = none")
    save_period: int = param(
        50, "training steps between checks; weights that pass are published as a new version"
    )
    keep_versions: int = param(
        5,
        "adapted_<version>.pt files kept in out_dir besides latest.pt; older ones that this "
        "fine-tuner wrote (its own naming) are deleted",
    )
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
        0.02,
        "collapse: held-out depth whose relative spread (std of log depth per image) is lower "
        "is constant; such weights are never published",
    )
    collapse_max_saturation: float = param(
        0.5,
        "collapse: weights with a larger fraction of held-out pixels at the depth network's "
        "output bounds (depth at its near or far limit, NaN in the depth node) are never "
        "published",
    )
    collapse_min_mask: float = param(
        0.05, "collapse: mean explainability mask below this (masked models); never published"
    )
    max_saturation_increase: float = param(
        0.05,
        "roll back when the fraction of held-out pixels at the depth network's output bounds "
        "exceeds the starting weights' by more than this",
    )
    max_spread_ratio: float = param(
        2.0,
        "roll back when the held-out log-depth spread differs from the starting weights' by "
        "more than this factor, either way (flattened or blown-up depth)",
    )
    max_scale_change: float = param(
        0.25,
        "roll back when the held-out median depth moves by more than this fraction from the "
        "last good version's (monocular scale drift)",
    )
    min_rank_correlation: float = param(
        0.8,
        "roll back when the held-out depth's rank correlation with the last good version's "
        "(per image) is lower",
    )
    memory_domains: str = param(
        "street,corridor,field,warehouse,rural",
        "synthetic domains whose depth is measured at every check against true depth (a few "
        "frames of trajectories no training or replay uses, rendered once at twice the "
        "adaptation size and resized to it, as camera frames are): what the model knew before "
        "adapting; empty = off",
    )
    memory_frames: int = param(
        2, "frames per memory trajectory (eight trajectories per domain, frames 3 s apart)"
    )
    max_forgetting: float = param(
        0.08,
        "weights whose median-scaled Abs Rel in any memory domain exceeds the starting weights' "
        "by more than this fraction are not published; training goes on from them (replay "
        "slows forgetting but does not bound it)",
    )
    scale_weight: float = param(
        1.0,
        "pull of each training frame's mean log depth towards the starting weights' (the "
        "monocular scale is free and otherwise drifts until depth saturates); 0 = off",
    )
    anchor_weight: float = param(0.0, "L2 pull of the weights towards the starting ones; 0 = off")
    consistency_weight: float = param(
        0.0,
        "geometry consistency (SC-SfMLearner): each frame's depth must agree with its "
        "neighbours' where they overlap, so depth and translation keep one scale from frame "
        "to frame; the depth network also runs on the sources (about 1.2x the step time); "
        "0 = off",
    )
    classical_rotation_weight: float = param(
        0.0,
        "pull of the pose network's rotations towards classical ORB + essential-matrix ones "
        "(MAGSAC++ on the camera images, at most 1280 px wide) of each live snippet, a robust "
        "(Cauchy, 1 degree) pseudo-label; 0 = off",
    )
    replay_data: str = param(
        DEFAULT_REPLAY,
        "original training data mixed into batches so the model does not forget it: sources "
        "separated by commas (paths, bags, synthetic:DOMAIN:FRAMES:SEED, rendered lazily at "
        "the adaptation size in the training thread and cached); empty = none",
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
        positive += ("save_period", "keep_versions", "max_keyframe_gap_s", "memory_frames")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.holdout_every < 2:
            raise ConfigError(f"holdout_every must be >= 2, got {self.holdout_every}")
        if not 0.0 < self.duty_cycle <= 1.0:
            raise ConfigError(f"duty_cycle must be in (0, 1], got {self.duty_cycle}")
        if not 0.0 < self.rollback_lr_factor <= 1.0:
            raise ConfigError(
                f"rollback_lr_factor must be in (0, 1], got {self.rollback_lr_factor}"
            )
        non_negative = ("threads", "warmup_snippets", "max_steps_per_s", "min_motion")
        non_negative += ("min_texture", "divergence_threshold", "collapse_min_rel_std")
        non_negative += ("collapse_min_mask", "max_saturation_increase", "max_scale_change")
        non_negative += ("scale_weight", "anchor_weight", "consistency_weight", "seed")
        non_negative += ("classical_rotation_weight", "adapt_pixels", "max_forgetting")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("replay_fraction", "collapse_max_saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.min_rank_correlation <= 1.0:
            raise ConfigError(f"min_rank_correlation must be <= 1, got {self.min_rank_correlation}")
        if self.max_spread_ratio < 1.0:
            raise ConfigError(f"max_spread_ratio must be >= 1, got {self.max_spread_ratio}")
        if self.adapt_resolution not in ADAPT_RESOLUTIONS:
            raise ConfigError(
                f"adapt_resolution must be one of {list(ADAPT_RESOLUTIONS)}, "
                f"got {self.adapt_resolution!r}"
            )

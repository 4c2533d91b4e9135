"""Training configuration: `Params` sections, named presets, YAML files and `a.b=value` overrides.

Resolution order: preset defaults -> YAML file -> command-line overrides. The resolved config
is stored (as a plain dict) in every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.losses import LossConfig
from sfm_ros.core.params import Params, param, section

PRESETS = ("default", "sfmlearner")


@dataclass
class DataConfig(Params):
    """Where snippets come from and how they are shaped."""

    train: list[str] = param(
        ["synthetic:street:600:0"],
        "Training sources: paths (KITTI, image folder, bag) or "
        "`synthetic:DOMAIN[:FRAMES[:SEED[:RANDOM]]]` (DOMAIN street, corridor, field, warehouse "
        "or rural; RANDOM `random`, or groups `geometry+appearance+photometric`, draws camera, "
        "lighting and camera response per seed for sim-to-real training: sfm_ros.core.sources).",
    )
    val: list[str] = param(
        ["synthetic:street:60:1000"], "Validation sources, same syntax; empty for none."
    )
    height: int = param(128, "Network input height in pixels.")
    width: int = param(416, "Network input width in pixels.")
    snippet_length: int = param(3, "Frames per snippet (3 or 5); the target is the middle one.")
    augment: bool = param(
        True, "Random scale-crop, horizontal flip and colour jitter (K kept exact)."
    )
    min_motion: float = param(
        0.005, "Skip snippets whose mean absolute image change is below this (static frames)."
    )
    image_topic: str | None = param(
        None, "Image topic for bag sources (auto-detected when the bag has one).", optional=str
    )
    camera_info_topic: str | None = param(
        None, "CameraInfo topic for bag sources (auto-detected when the bag has one).", optional=str
    )
    num_workers: int = param(0, "DataLoader worker processes.")
    render_workers: int = param(
        1, "Processes rendering the synthetic sources at start-up (0 = one per CPU core)."
    )


@dataclass
class ModelConfig(Params):
    """Network architecture."""

    depth_net: str = param(
        "resnet18",
        "Depth network: `dispnet` (SfMLearner) or `resnet18` (compact residual encoder-decoder).",
    )
    use_mask: bool = param(
        False, "Predict explainability masks with the pose network (SfMLearner)."
    )
    rotation: str = param(
        "euler",
        "Pose parametrisation of the rotation: `euler` (SfMLearner) or `axis_angle`.",
        choices=("euler", "axis_angle"),
    )
    depth_output: str = param(
        "disparity",
        "How the ResNet depth heads map to depth: `disparity` (10 sigmoid + 0.01, SfMLearner) "
        "or `log_depth` (uniform in log depth between min_depth and max_depth).",
        choices=("disparity", "log_depth"),
    )
    min_depth: float = param(0.05, "Smallest depth (m) of the `log_depth` output.")
    max_depth: float = param(300.0, "Largest depth (m) of the `log_depth` output.")
    translation_scale: float = param(
        0.01,
        "Metres per unit of the pose network's raw translation output. SfMLearner's 0.01 "
        "keeps early poses tiny, and the free monocular scale then settles on tiny depths; a "
        "model trained with loss.velocity_weight needs about 1 to reach metric speeds.",
    )
    init_from: str | None = param(
        None,
        "Start from this checkpoint's network weights (same networks, any input size: a "
        "curriculum stage or a new dataset); step, optimiser and schedule start afresh. "
        "`--resume` of a run that has checkpoints continues from those instead.",
        optional=str,
    )

    def validate(self) -> None:
        if self.depth_output == "log_depth" and self.depth_net == "dispnet":
            raise ConfigError("model.depth_output log_depth needs a resnet18 depth network")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError("model needs 0 < min_depth < max_depth")
        if not self.translation_scale > 0:
            raise ConfigError("model.translation_scale must be positive")


@dataclass
class OptimConfig(Params):
    """Optimisation."""

    steps: int = param(20000, "Total optimisation steps.")
    batch_size: int = param(4, "Snippets per step (per GPU with torchrun).")
    lr: float = param(2e-4, "Adam learning rate.")
    beta1: float = param(0.9, "Adam beta1.")
    weight_decay: float = param(0.0, "Adam weight decay.")
    lr_decay_steps: int = param(
        0, "Multiply the learning rate by `lr_decay` every this many steps (0 = constant)."
    )
    lr_decay: float = param(0.1, "Learning-rate decay factor.")
    grad_clip: float = param(10.0, "Clip the global gradient norm to this (0 = off).")
    seed: int = param(0, "Random seed: data order, augmentation and initialisation.")
    amp: bool = param(True, "Mixed precision (CUDA only).")
    max_minutes: float = param(
        0.0,
        "Stop (validate and save) after this much wall time, even before `steps` (0 = no limit).",
    )


@dataclass
class LogConfig(Params):
    """Output folder, logging, validation and checkpoint cadence."""

    out_dir: str = param("runs/sfm", "Run folder: checkpoints, TensorBoard logs, images.")
    log_every: int = param(50, "Scalar logging period in steps.")
    image_every: int = param(500, "Image logging period in steps (0 = off).")
    val_every: int = param(500, "Validation period in steps (0 = only at the end).")
    save_every: int = param(500, "Checkpoint period in steps.")
    keep_last: int = param(3, "Step checkpoints kept besides last.pt and best.pt.")
    val_max_snippets: int = param(64, "Validation snippets used per validation.")


@dataclass
class TrainConfig(Params):
    """Everything `sfm-ros train` needs."""

    preset: str = param("default", "Named recipe the sections start from.", choices=PRESETS)
    data: DataConfig = section(DataConfig, "Where snippets come from and how they are shaped.")
    model: ModelConfig = section(ModelConfig, "Network architecture.")
    loss: LossConfig = section(LossConfig, "Weights and switches of the view-synthesis loss.")
    optim: OptimConfig = section(OptimConfig, "Optimisation.")
    log: LogConfig = section(LogConfig, "Output folder, logging, validation, checkpoints.")
    device: str = param("auto", "`auto`, `cpu`, `cuda` or `cuda:N`.")

    @classmethod
    def from_preset(cls, name: str) -> TrainConfig:
        """The named recipe. `sfmlearner` reproduces Zhou et al. 2017; `default` is ours."""
        if name == "default":
            return cls(preset=name, loss=LossConfig.preset("monodepth2"))
        if name == "sfmlearner":
            return cls(
                preset=name,
                model=ModelConfig(depth_net="dispnet", use_mask=True, rotation="euler"),
                loss=LossConfig.preset("sfmlearner"),
                optim=OptimConfig(lr=2e-4, beta1=0.9, batch_size=4),
            )
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")

    def validate(self) -> None:
        """Reject configurations that cannot train, with a message naming the option."""
        d, o = self.data, self.optim
        if d.snippet_length not in (3, 5):
            raise ConfigError(f"data.snippet_length must be 3 or 5, got {d.snippet_length}")
        if d.height % 8 or d.width % 8 or d.height < 32 or d.width < 32:
            raise ConfigError(
                "data.height and data.width must be multiples of 8, at least 32 "
                f"(got {d.height}x{d.width})"
            )
        if not d.train:
            raise ConfigError("data.train is empty: give at least one training source")
        if d.num_workers < 0 or d.render_workers < 0:
            raise ConfigError("data.num_workers and data.render_workers must be >= 0")
        if o.steps < 1 or o.batch_size < 1 or o.lr <= 0:
            raise ConfigError("optim.steps, optim.batch_size and optim.lr must be positive")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `["optim.lr=1e-4", "data.train=[a,b]"]` into a nested dict (values parsed as YAML);
    keys without a dot stay flat (`["publish_tf=true"]` -> `{"publish_tf": True}`)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (section.key=value)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value ({exc})") from None
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, preset: str | None = None
) -> TrainConfig:
    """Resolve a TrainConfig from a preset, an optional YAML file and overrides."""
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(file_values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
    override_values = parse_overrides(overrides or [])
    name = preset or override_values.pop("preset", None) or file_values.pop("preset", "default")
    file_values.pop("preset", None)
    cfg = TrainConfig.from_preset(name)
    for values in (file_values, override_values):
        cfg = TrainConfig.from_mapping(values, cfg)
    return cfg


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved in a checkpoint (options it no longer knows are ignored)."""
    values = dict(values)
    cfg = TrainConfig.from_preset(values.pop("preset", "default"))
    return TrainConfig.from_mapping(values, cfg, strict=False)

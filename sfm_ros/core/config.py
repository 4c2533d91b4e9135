"""Training configuration: typed dataclasses, named presets, YAML files and `a.b=value` overrides.

Resolution order: preset defaults -> YAML file -> command-line overrides. The resolved config
is stored (as a plain dict) in every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.losses import LossConfig

PRESETS = ("default", "sfmlearner")


@dataclass
class DataConfig:
    """Where snippets come from and how they are shaped."""

    train: list[str] = field(default_factory=lambda: ["synthetic:street:600:0"])
    """Training sources: paths (KITTI, image folder, bag) or `synthetic:DOMAIN[:FRAMES[:SEED]]`."""
    val: list[str] = field(default_factory=lambda: ["synthetic:street:60:1000"])
    """Validation sources, same syntax; empty for none."""
    height: int = 128
    """Network input height in pixels."""
    width: int = 416
    """Network input width in pixels."""
    snippet_length: int = 3
    """Frames per snippet (3 or 5); the target is the middle one."""
    augment: bool = True
    """Random scale-crop, horizontal flip and colour jitter (K kept exact)."""
    min_motion: float = 0.005
    """Skip snippets whose mean absolute image change is below this (static frames)."""
    image_topic: str | None = None
    """Image topic for bag sources (auto-detected when the bag has one)."""
    camera_info_topic: str | None = None
    """CameraInfo topic for bag sources (auto-detected when the bag has one)."""
    num_workers: int = 0
    """DataLoader worker processes."""


@dataclass
class ModelConfig:
    """Network architecture."""

    depth_net: str = "resnet18"
    """Depth network: `dispnet` (SfMLearner) or `resnet18` (compact residual encoder-decoder)."""
    use_mask: bool = False
    """Predict explainability masks with the pose network (SfMLearner)."""
    rotation: str = "euler"
    """Pose parametrisation of the rotation: `euler` (SfMLearner) or `axis_angle`."""


@dataclass
class OptimConfig:
    """Optimisation."""

    steps: int = 20000
    """Total optimisation steps."""
    batch_size: int = 4
    """Snippets per step (per GPU with torchrun)."""
    lr: float = 2e-4
    """Adam learning rate."""
    beta1: float = 0.9
    """Adam beta1."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    lr_decay_steps: int = 0
    """Multiply the learning rate by `lr_decay` every this many steps (0 = constant)."""
    lr_decay: float = 0.1
    """Learning-rate decay factor."""
    grad_clip: float = 10.0
    """Clip the global gradient norm to this (0 = off)."""
    seed: int = 0
    """Random seed: data order, augmentation and initialisation."""
    amp: bool = True
    """Mixed precision (CUDA only)."""
    max_minutes: float = 0.0
    """Stop (validate and save) after this much wall time, even before `steps` (0 = no limit)."""


@dataclass
class LogConfig:
    """Output folder, logging, validation and checkpoint cadence."""

    out_dir: str = "runs/sfm"
    """Run folder: checkpoints, TensorBoard logs, images."""
    log_every: int = 50
    """Scalar logging period in steps."""
    image_every: int = 500
    """Image logging period in steps (0 = off)."""
    val_every: int = 500
    """Validation period in steps (0 = only at the end)."""
    save_every: int = 500
    """Checkpoint period in steps."""
    keep_last: int = 3
    """Step checkpoints kept besides last.pt and best.pt."""
    val_max_snippets: int = 64
    """Validation snippets used per validation."""


@dataclass
class TrainConfig:
    """Everything `sfm-ros train` needs."""

    preset: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    device: str = "auto"
    """`auto`, `cpu`, `cuda` or `cuda:N`."""

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _merge(obj: Any, values: dict[str, Any], where: str) -> None:
    """Set dataclass fields of `obj` from `values` recursively, rejecting unknown keys."""
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown option {where}{key}; valid: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"option {where}{key} is a section; give a mapping")
            _merge(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, _coerce(value, current, f"{where}{key}"))


def _coerce(value: Any, current: Any, name: str) -> Any:
    """Convert `value` to the type of the field's current value (int->float allowed)."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"option {name} must be true or false, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, list) and isinstance(value, str):
        return [value]
    if not isinstance(value, type(current)):
        raise ConfigError(
            f"option {name} must be {type(current).__name__}, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `["optim.lr=1e-4", "data.train=[a,b]"]` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form section.option=value")
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
    _merge(cfg, file_values, "")
    _merge(cfg, override_values, "")
    validate(cfg)
    return cfg


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved in a checkpoint."""
    values = dict(values)
    cfg = TrainConfig.from_preset(values.pop("preset", "default"))
    _merge(cfg, values, "")
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Reject configurations that cannot train, with a message naming the option."""
    d, o = cfg.data, cfg.optim
    if d.snippet_length not in (3, 5):
        raise ConfigError(f"data.snippet_length must be 3 or 5, got {d.snippet_length}")
    if d.height % 8 or d.width % 8 or d.height < 32 or d.width < 32:
        raise ConfigError(
            "data.height and data.width must be multiples of 8, at least 32 "
            f"(got {d.height}x{d.width})"
        )
    if not d.train:
        raise ConfigError("data.train is empty: give at least one training source")
    if o.steps < 1 or o.batch_size < 1 or o.lr <= 0:
        raise ConfigError("optim.steps, optim.batch_size and optim.lr must be positive")

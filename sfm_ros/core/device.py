"""Device selection shared by training, inference and online adaptation."""

from __future__ import annotations

import torch

from sfm_ros.core.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a user's device string: `auto` -> cuda when available, else cpu.

    Raises:
        ConfigError: the string names no device, or a CUDA device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {name!r}; use {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"device {name!r} is not supported; use {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA support"
        raise ConfigError(
            f"device {name!r} asked for, but CUDA is not available here (torch "
            f"{torch.__version__}, built with {build}); use cpu or auto"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"device {name!r} asked for, but this machine has {count} CUDA device(s)")
    return device

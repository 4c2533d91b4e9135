"""Depth and pose networks, built by name from the configuration."""

from torch import nn

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.models.dispnet import DispNet
from sfm_ros.core.models.posenet import PoseExpNet, PoseResNet
from sfm_ros.core.models.resnet import ResNetDepth, ResNetEncoder

DEPTH_NETS = ("dispnet", "resnet18", "resnet18_half")
POSE_ENCODERS = ("conv", "resnet18")

__all__ = [
    "DEPTH_NETS",
    "POSE_ENCODERS",
    "DispNet",
    "PoseExpNet",
    "PoseResNet",
    "ResNetDepth",
    "ResNetEncoder",
    "build_depth_net",
    "build_pose_net",
    "count_parameters",
]


def build_depth_net(name: str, **kwargs) -> nn.Module:
    """Depth network `name` (one of `DEPTH_NETS`); kwargs go to its constructor (alpha, beta...).

    Forward: (B, 3, H, W) RGB in [0, 1] -> list of 4 disparities (B, 1, H/2^s, W/2^s), s = 0..3.
    """
    if name == "dispnet":
        return DispNet(**kwargs)
    if name == "resnet18":
        return ResNetDepth(**kwargs)
    if name == "resnet18_half":
        return ResNetDepth(width=0.5, **kwargs)
    raise ConfigError(f"unknown depth network {name!r}; valid names: {', '.join(DEPTH_NETS)}")


def build_pose_net(
    snippet_length: int,
    use_mask: bool = True,
    rotation: str = "euler",
    encoder: str = "conv",
    **kwargs,
) -> nn.Module:
    """Pose network for snippets of `snippet_length` frames.

    `encoder="conv"` is SfMLearner's PoseExpNet (with explainability masks when `use_mask`);
    `encoder="resnet18"` is a Monodepth2-style ResNet pose net without masks (kwargs: width).
    Forward: (tgt (B,3,H,W), srcs (B,S,3,H,W)) -> (T_src_tgt (B,S,4,4), masks list or None).
    """
    if encoder == "conv":
        return PoseExpNet(snippet_length, use_mask, rotation, **kwargs)
    if encoder == "resnet18":
        if use_mask:
            raise ConfigError("the resnet18 pose encoder predicts no masks; set use_mask to false")
        return PoseResNet(snippet_length, rotation, **kwargs)
    raise ConfigError(f"unknown pose encoder {encoder!r}; valid names: {', '.join(POSE_ENCODERS)}")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

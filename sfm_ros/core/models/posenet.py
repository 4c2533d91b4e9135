"""SfMLearner's pose and explainability network (PoseExpNet of SfmLearner-Pytorch)."""

import torch
from torch import nn

from sfm_ros.core.errors import ConfigError, InputError
from sfm_ros.core.geometry import pose_vec_to_mat
from sfm_ros.core.models.dispnet import check_images, crop_like
from sfm_ros.core.models.exposure import exposure_matched
from sfm_ros.core.models.resnet import IMAGE_MEAN, IMAGE_STD, ResNetEncoder

ROTATIONS = ("euler", "axis_angle")
SNIPPET_LENGTHS = (3, 5)
POSE_SCALE = 0.01  # SfMLearner scales the raw pose output by 0.01


def scaled_pose(raw: torch.Tensor, translation_scale: float) -> torch.Tensor:
    """(..., 6) raw outputs to (tx, ty, tz, rx, ry, rz): translation times `translation_scale`
    (SfMLearner: 0.01 for both; a metric-scale model needs about 1), rotation times 0.01."""
    t, r = raw.split(3, dim=-1)
    return torch.cat([translation_scale * t, POSE_SCALE * r], dim=-1)


def conv(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    """Stride-2 convolution + ReLU: halves H and W (rounded up)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=2, padding=(kernel_size - 1) // 2),
        nn.ReLU(inplace=True),
    )


def upconv(in_ch: int, out_ch: int) -> nn.Sequential:
    """4x4 stride-2 transposed convolution + ReLU: doubles H and W exactly."""
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1), nn.ReLU(inplace=True))


def check_config(snippet_length: int, rotation: str) -> None:
    """Raise `ConfigError` for an unsupported snippet length or rotation parametrisation."""
    if snippet_length not in SNIPPET_LENGTHS:
        raise ConfigError(f"snippet_length must be one of {SNIPPET_LENGTHS}, got {snippet_length}")
    if rotation not in ROTATIONS:
        raise ConfigError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")


def stack_snippet(tgt: torch.Tensor, srcs: torch.Tensor, num_sources: int) -> torch.Tensor:
    """Check shapes, match exposures (`exposure_matched`) and stack target (B, 3, H, W) and
    sources (B, S, 3, H, W) to (B, 3L, H, W)."""
    check_images(tgt)
    if srcs.dim() != 5 or srcs.shape[1] != num_sources or srcs.shape[2:] != tgt.shape[1:]:
        raise InputError(
            f"expected sources of shape (B, {num_sources}, 3, H, W) matching the target "
            f"{tuple(tgt.shape)}, got {tuple(srcs.shape)}"
        )
    tgt, srcs = exposure_matched(tgt, srcs)
    return torch.cat([tgt, srcs.flatten(1, 2)], 1)


def vec_to_T(vec: torch.Tensor, rotation: str) -> torch.Tensor:
    """Pose vectors (B, S, 6) to SE(3) matrices (B, S, 4, 4)."""
    return pose_vec_to_mat(vec.reshape(-1, 6), rotation=rotation).view(*vec.shape[:2], 4, 4)


class PoseExpNet(nn.Module):
    """Pose and explainability-mask network of SfMLearner (Zhou et al. 2017).

    Input: target (B, 3, H, W) and S = L - 1 sources (B, S, 3, H, W), RGB in [0, 1] (normalised
    inside to [-1, 1]), stacked along channels target first.
    Output: `T_src_tgt` (B, S, 4, 4), mapping target-camera points into each source camera, and,
    when `use_mask`, explainability masks: list of 4 tensors (B, S, ceil(H/2^s), ceil(W/2^s)) in
    (0, 1), s = 0..3, full resolution first; otherwise None.

    SfMLearner predicts a 2-class softmax per source; a sigmoid per source is the same model
    (softmax over two logits is the sigmoid of their difference) with half the output channels.
    """

    conv_channels = (16, 32, 64, 128, 256, 256, 256)
    conv_kernels = (7, 5, 3, 3, 3, 3, 3)
    upconv_channels = (256, 128, 64, 32, 16)

    def __init__(
        self,
        snippet_length: int = 3,
        use_mask: bool = True,
        rotation: str = "euler",
        translation_scale: float = POSE_SCALE,
    ) -> None:
        super().__init__()
        check_config(snippet_length, rotation)
        self.translation_scale = translation_scale
        self.num_sources = snippet_length - 1
        self.use_mask = use_mask
        self.rotation = rotation
        cc, uc = self.conv_channels, self.upconv_channels
        ins = (3 * snippet_length, *cc[:-1])
        self.convs = nn.ModuleList(
            conv(i, o, k) for i, o, k in zip(ins, cc, self.conv_kernels, strict=True)
        )
        self.pose_pred = nn.Conv2d(cc[-1], 6 * self.num_sources, 1)
        if use_mask:
            self.upconvs = nn.ModuleList(
                upconv(i, o) for i, o in zip((cc[4], *uc[:-1]), uc, strict=True)
            )
            self.mask_heads = nn.ModuleList(
                nn.Conv2d(c, self.num_sources, 3, padding=1) for c in uc[1:]
            )
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform weights, zero biases; a 100x smaller pose head keeps poses near 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.pose_pred.weight.mul_(0.01)

    def forward_vec(
        self, tgt: torch.Tensor, srcs: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Like `forward` but returns raw pose vectors (B, S, 6), (tx, ty, tz, rx, ry, rz)."""
        x = stack_snippet(tgt, srcs, self.num_sources)
        feats = [(x - 0.5) / 0.5]
        for block in self.convs:
            feats.append(block(feats[-1]))
        raw = self.pose_pred(feats[-1]).mean(dim=(2, 3)).view(-1, self.num_sources, 6)
        vec = scaled_pose(raw, self.translation_scale)
        if not self.use_mask:
            return vec, None
        out = feats[5]
        masks: list[torch.Tensor] = []
        for j, up in enumerate(self.upconvs):
            out = crop_like(up(out), feats[4 - j])  # conv4 size, ..., conv1 size, input size
            if j >= 1:
                masks.insert(0, torch.sigmoid(self.mask_heads[j - 1](out)))
        return vec, masks

    def forward(
        self, tgt: torch.Tensor, srcs: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        vec, masks = self.forward_vec(tgt, srcs)
        return vec_to_T(vec, self.rotation), masks


class PoseResNet(nn.Module):
    """ResNet-18 pose network in the style of Monodepth2, for the whole snippet at once.

    Same inputs and `T_src_tgt` output as `PoseExpNet`; it predicts no masks (returns None).
    The encoder takes the L images stacked along channels (target first); the decoder is
    Monodepth2's: 1x1 squeeze, two 3x3 convs, 1x1 to 6 * S, spatial mean, `scaled_pose`.
    """

    def __init__(
        self,
        snippet_length: int = 3,
        rotation: str = "euler",
        width: float = 1.0,
        translation_scale: float = POSE_SCALE,
    ):
        super().__init__()
        check_config(snippet_length, rotation)
        self.translation_scale = translation_scale
        self.num_sources = snippet_length - 1
        self.use_mask = False
        self.rotation = rotation
        self.encoder = ResNetEncoder(snippet_length, width)
        ch = max(8, round(256 * width))
        self.decoder = nn.Sequential(
            nn.Conv2d(self.encoder.num_ch_enc[-1], ch, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, 6 * self.num_sources, 1),
        )
        with torch.no_grad():
            self.decoder[-1].weight.mul_(0.01)

    def forward_vec(self, tgt: torch.Tensor, srcs: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Like `forward` but returns raw pose vectors (B, S, 6), (tx, ty, tz, rx, ry, rz)."""
        x = stack_snippet(tgt, srcs, self.num_sources)
        feat = self.encoder((x - IMAGE_MEAN) / IMAGE_STD)[-1]
        raw = self.decoder(feat).mean(dim=(2, 3)).view(-1, self.num_sources, 6)
        return scaled_pose(raw, self.translation_scale), None

    def forward(self, tgt: torch.Tensor, srcs: torch.Tensor) -> tuple[torch.Tensor, None]:
        vec, _ = self.forward_vec(tgt, srcs)
        return vec_to_T(vec, self.rotation), None

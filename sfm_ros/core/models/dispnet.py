"""SfMLearner's depth network (DispNetS of SfmLearner-Pytorch), robust to any input size."""

import torch
import torch.nn.functional as F
from torch import nn

from sfm_ros.core.errors import InputError
from sfm_ros.core.models.exposure import in_band


def check_images(x: torch.Tensor, channels: int = 3) -> None:
    """Raise `InputError` unless `x` is a (B, channels, H, W) floating tensor."""
    if x.dim() != 4 or x.shape[1] != channels or not x.is_floating_point():
        raise InputError(
            f"expected a float image batch of shape (B, {channels}, H, W), "
            f"got {x.dtype} {tuple(x.shape)}"
        )


def crop_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop (B, C, H', W') `x` to the spatial size of `ref` (top-left kept, H' >= H, W' >= W)."""
    return x[:, :, : ref.shape[2], : ref.shape[3]]


def downsample_conv(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    """Two convolutions, stride 2 then 1, each followed by ReLU: halves H and W (rounded up)."""
    pad = (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=2, padding=pad),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, kernel_size, padding=pad),
        nn.ReLU(inplace=True),
    )


def conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 convolution + ReLU, size preserving."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))


def upconv(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 transposed convolution + ReLU: doubles H and W exactly."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
    )


class DispNet(nn.Module):
    """Encoder-decoder disparity network of SfMLearner (Zhou et al. 2017).

    Input: (B, 3, H, W) RGB in [0, 1] (normalised inside to [-1, 1], as SfmLearner-Pytorch does).
    Output, in train and eval mode: list of 4 disparities (B, 1, ceil(H/2^s), ceil(W/2^s)),
    s = 0..3, full resolution first, each `alpha * sigmoid(x) + beta` (inverse depth, unitless).
    Any H, W >= 1 works: upsampled features are cropped to the skip connection's size.
    """

    conv_channels = (32, 64, 128, 256, 512, 512, 512)
    conv_kernels = (7, 5, 3, 3, 3, 3, 3)
    upconv_channels = (512, 512, 256, 128, 64, 32, 16)

    def __init__(self, alpha: float = 10.0, beta: float = 0.01) -> None:
        super().__init__()
        self.alpha = alpha
        self.beta = beta
        cc, uc = self.conv_channels, self.upconv_channels
        ins = (3, *cc[:-1])
        self.convs = nn.ModuleList(
            downsample_conv(i, o, k) for i, o, k in zip(ins, cc, self.conv_kernels, strict=True)
        )
        # Decoder level j = 7..1 works at the size of encoder level j - 1 (the input for j = 1).
        up_ins = (cc[6], *uc[:-1])
        self.upconvs = nn.ModuleList(upconv(i, o) for i, o in zip(up_ins, uc, strict=True))
        skips = (*cc[5::-1], 0)  # conv6 .. conv1 features, nothing at full resolution
        extra_disp = (0, 0, 0, 0, 1, 1, 1)  # levels 3..1 also take the upsampled coarser disp
        self.iconvs = nn.ModuleList(
            conv(u + s + d, u) for u, s, d in zip(uc, skips, extra_disp, strict=True)
        )
        self.disp_heads = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in uc[3:])
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform weights and zero biases, as SfmLearner-Pytorch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_images(x)
        feats = [(in_band(x) - 0.5) / 0.5]
        for block in self.convs:
            feats.append(block(feats[-1]))
        out = feats[-1]
        disps: list[torch.Tensor] = []
        for j, (up, iconv) in enumerate(zip(self.upconvs, self.iconvs, strict=True)):
            skip = feats[len(self.convs) - 1 - j]  # conv6, ..., conv1, then the input
            parts = [crop_like(up(out), skip)]
            if j < len(self.convs) - 1:
                parts.append(skip)
            if disps:
                up_disp = F.interpolate(disps[0], scale_factor=2.0, mode="bilinear")
                parts.append(crop_like(up_disp, skip))
            out = iconv(torch.cat(parts, 1))
            if j >= 3:
                head = self.disp_heads[j - 3]
                disps.insert(0, self.alpha * torch.sigmoid(head(out)) + self.beta)
        return disps

"""ResNet-18 encoder and Monodepth2-style depth decoder (Godard et al. 2019), no torchvision."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.models.dispnet import check_images
from sfm_ros.core.models.exposure import in_band

# Monodepth2 normalises [0, 1] RGB with these before the ResNet.
IMAGE_MEAN = 0.45
IMAGE_STD = 0.225


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + batch norm, identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18 encoder (layers [2, 2, 2, 2]) taking `num_input_images` stacked RGB images.

    Input: (B, 3 * num_input_images, H, W), already normalised by the caller.
    Output: 5 features at strides 2, 4, 8, 16, 32 (sizes rounded up), channels `num_ch_enc`
    = (64, 64, 128, 256, 512) * `width`.
    """

    def __init__(self, num_input_images: int = 1, width: float = 1.0) -> None:
        super().__init__()
        if num_input_images < 1 or width <= 0:
            raise ConfigError(
                f"ResNetEncoder needs num_input_images >= 1 and width > 0, "
                f"got {num_input_images} and {width}"
            )
        chs = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        self.num_ch_enc = (chs[0], *chs)
        self.conv1 = nn.Conv2d(3 * num_input_images, chs[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(chs[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        ins = (chs[0], *chs[:-1])
        self.layers = nn.ModuleList(
            nn.Sequential(BasicBlock(i, o, 1 if k == 0 else 2), BasicBlock(o, o))
            for k, (i, o) in enumerate(zip(ins, chs, strict=True))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.relu(self.bn1(self.conv1(x)))]
        out = self.maxpool(feats[0])
        for layer in self.layers:
            out = layer(out)
            feats.append(out)
        return feats


class Conv3x3(nn.Module):
    """3x3 convolution with reflection padding (replicate where a side is a single pixel)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if min(x.shape[2], x.shape[3]) > 1 else "replicate"
        return self.conv(F.pad(x, (1, 1, 1, 1), mode=mode))


class ConvBlock(nn.Sequential):
    """Conv3x3 followed by ELU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(Conv3x3(in_ch, out_ch), nn.ELU(inplace=True))


DEPTH_OUTPUTS = ("disparity", "log_depth")


class ResNetDepth(nn.Module):
    """ResNet-18 encoder + Monodepth2 depth decoder.

    Input: (B, 3, H, W) RGB in [0, 1]. Output, in train and eval mode: list of 4 disparities
    (B, 1, ceil(H/2^s), ceil(W/2^s)), s = 0..3, full resolution first, so it can replace
    `DispNet`. `width` scales every channel count (0.5 gives a net about 4x lighter).

    ``output`` chooses how a head's logit x becomes disparity:
    - ``"disparity"`` (SfMLearner): ``alpha * sigmoid(x) + beta``, linear in inverse depth;
      near depths crowd its upper bound (depth 0.1 for the defaults);
    - ``"log_depth"``: depth ``= min_depth * (max_depth / min_depth) ** sigmoid(x)``, uniform in
      log depth, so indoor and outdoor scenes both sit well inside the range, far from the
      saturated ends of the sigmoid.
    """

    def __init__(
        self,
        alpha: float = 10.0,
        beta: float = 0.01,
        width: float = 1.0,
        output: str = "disparity",
        min_depth: float = 0.05,
        max_depth: float = 300.0,
    ) -> None:
        super().__init__()
        if output not in DEPTH_OUTPUTS:
            raise ConfigError(f"depth output must be one of {DEPTH_OUTPUTS}, got {output!r}")
        if not 0 < min_depth < max_depth:
            raise ConfigError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.alpha = alpha
        self.beta = beta
        self.output = output
        self.log_min, self.log_range = math.log(min_depth), math.log(max_depth / min_depth)
        self.encoder = ResNetEncoder(1, width)
        enc = self.encoder.num_ch_enc
        dec = [max(8, round(c * width)) for c in (16, 32, 64, 128, 256)]
        self.upconvs0 = nn.ModuleList()  # level i: before upsampling
        self.upconvs1 = nn.ModuleList()  # level i: after upsampling and concatenating the skip
        for i in range(4, -1, -1):
            self.upconvs0.append(ConvBlock(enc[-1] if i == 4 else dec[i + 1], dec[i]))
            self.upconvs1.append(ConvBlock(dec[i] + (enc[i - 1] if i > 0 else 0), dec[i]))
        self.disp_heads = nn.ModuleList(Conv3x3(dec[s], 1) for s in range(4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_images(x)
        feats = self.encoder((in_band(x) - IMAGE_MEAN) / IMAGE_STD)
        out = feats[-1]
        disps: list[torch.Tensor] = []
        for k, i in enumerate(range(4, -1, -1)):
            out = self.upconvs0[k](out)
            size = feats[i - 1].shape[2:] if i > 0 else x.shape[2:]
            out = F.interpolate(out, size=size, mode="nearest")
            if i > 0:
                out = torch.cat([out, feats[i - 1]], 1)
            out = self.upconvs1[k](out)
            if i < 4:
                disps.insert(0, self._disparity(self.disp_heads[i](out)))
        return disps

    def _disparity(self, logit: torch.Tensor) -> torch.Tensor:
        if self.output == "log_depth":
            return torch.exp(-(self.log_min + self.log_range * torch.sigmoid(logit)))
        return self.alpha * torch.sigmoid(logit) + self.beta

"""onnxruntime backend: exported networks as drop-in replacements of the torch ones.

`load_onnx_networks(export_dir)` reads what `sfm_ros.core.export` wrote and returns two modules
with the call signatures of the torch networks, so `DepthPoseEstimator` keeps one code path
for pre- and post-processing:

    depth_net(image (B, 3, H, W)) -> [disp (B, 1, H, W)]
    pose_net(tgt (B, 3, H, W), srcs (B, S, 3, H, W)) -> (T_src_tgt (B, S, 4, 4), [mask] or None)

Tensors go in and come out as torch tensors on the caller's device and dtype; the sessions see
float32 numpy arrays. onnx and onnxruntime are optional (``pip install sfm_ros[onnx]``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from sfm_ros.core.checkpoint import check_arch_metadata
from sfm_ros.core.errors import CheckpointError, InputError, SfmError
from sfm_ros.core.models.posenet import vec_to_T

DEPTH_FILE = "depth.onnx"
POSE_FILE = "pose.onnx"
META_FILE = "export.json"
EXPORT_FORMAT = "sfm_ros.onnx_export"


class OnnxUnavailableError(SfmError):
    """onnx or onnxruntime is not installed."""


def require(module: str) -> ModuleType:
    """Import `module` ("onnx" or "onnxruntime"); raise OnnxUnavailableError when missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxUnavailableError(
            f"{module} is not installed; ONNX export and the onnxruntime backend need it: "
            "pip install sfm_ros[onnx] (or onnxruntime-gpu for CUDA/TensorRT)"
        ) from None


def default_providers(cache_dir: Path | None = None) -> list[Any]:
    """Execution providers, best first: TensorRT, CUDA (when available), then CPU.

    TensorRT builds an engine on the first run (minutes); with `cache_dir` it is cached there.
    """
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        options: dict[str, Any] = {"trt_fp16_enable": True}
        if cache_dir is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        providers.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


def read_export_meta(export_dir: str | Path) -> dict[str, Any]:
    """The JSON sidecar of an export folder, checked for the files it names."""
    export_dir = Path(export_dir)
    path = export_dir / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{export_dir} is not an sfm_ros ONNX export (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: corrupt or not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not an sfm_ros ONNX export sidecar")
    check_arch_metadata(meta.get("arch"), path)
    if not isinstance(meta.get("checkpoint", {}), dict):
        raise CheckpointError(f"{path}: its 'checkpoint' entry is not a mapping")
    for name in (DEPTH_FILE, POSE_FILE):
        if not (export_dir / name).is_file():
            raise CheckpointError(f"ONNX export {export_dir} is missing {name}")
    return meta


def export_source_checkpoint(export_dir: str | Path) -> Path:
    """The .pt checkpoint an export folder was made from (to fine-tune what it runs)."""
    meta = read_export_meta(export_dir)
    source = Path(meta.get("checkpoint", {}).get("path", ""))
    if not source.is_file():
        raise CheckpointError(
            f"ONNX export {export_dir} was made from {source}, which is not here; fine-tuning "
            "needs that .pt checkpoint: give it as the fine-tuner's checkpoint"
        )
    return source


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _to_torch(x: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(x).to(like.device, like.dtype)


class OrtNet(nn.Module):
    """An onnxruntime session behind an `nn.Module` (no parameters; `.to()` and `.eval()` are
    no-ops for it), so code written for the torch networks runs it unchanged."""

    input_names: tuple[str, ...] = ()
    """The model's input names, in order (checked on load)."""

    def __init__(self, path: Path, size: tuple[int, int], providers: list[Any]) -> None:
        super().__init__()
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # one CPU thread budget for both
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for damaged models
            reason = next((x.strip() for x in str(exc).splitlines() if x.strip()), "")
            raise CheckpointError(
                f"cannot load the ONNX model {path}: corrupt or not an ONNX model "
                f"({reason or type(exc).__name__})"
            ) from None
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != list(self.input_names):
            raise CheckpointError(
                f"ONNX model {path} takes inputs {inputs}, expected {list(self.input_names)}: "
                "not the network of an sfm-ros export"
            )
        self.size = size
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[-2:]) != self.size:
            raise InputError(
                f"the ONNX network takes {self.size[1]}x{self.size[0]} images, "
                f"got {x.shape[-1]}x{x.shape[-2]}"
            )

    def run(self, **inputs: torch.Tensor) -> list[np.ndarray]:
        for x in inputs.values():
            self._check(x)
        return self.session.run(None, {k: _to_numpy(v) for k, v in inputs.items()})


class OrtDepthNet(OrtNet):
    """`image (B, 3, H, W)` in [0, 1] -> `[disp (B, 1, H, W)]` (full resolution only)."""

    input_names = ("image",)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        (disp,) = self.run(image=image)
        return [_to_torch(disp, image)]


class OrtPoseNet(OrtNet):
    """`(tgt (B, 3, H, W), srcs (B, S, 3, H, W))` -> `(T_src_tgt (B, S, 4, 4), [mask] or None)`,
    mask (B, S, H, W) at full resolution only."""

    input_names = ("tgt", "srcs")

    def __init__(self, path: Path, size: tuple[int, int], providers: list[Any], rotation: str):
        super().__init__(path, size, providers)
        self.rotation = rotation

    def forward(
        self, tgt: torch.Tensor, srcs: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        outs = self.run(tgt=tgt, srcs=srcs)
        vec = torch.from_numpy(outs[0]).to(tgt.device)
        T_src_tgt = vec_to_T(vec, self.rotation).to(tgt.dtype)
        masks = [_to_torch(outs[1], tgt)] if len(outs) > 1 else None
        return T_src_tgt, masks


def load_onnx_networks(
    export_dir: str | Path, providers: list[Any] | None = None
) -> tuple[OrtDepthNet, OrtPoseNet, dict[str, Any]]:
    """Depth and pose networks of an export folder, and its sidecar metadata.

    Args:
        providers: onnxruntime execution providers; None = `default_providers()`.
    """
    require("onnxruntime")
    export_dir = Path(export_dir)
    meta = read_export_meta(export_dir)
    if providers is None:
        providers = default_providers(export_dir / "trt_cache")
    arch = meta["arch"]
    size = (int(arch["height"]), int(arch["width"]))
    depth_net = OrtDepthNet(export_dir / DEPTH_FILE, size, providers)
    pose_net = OrtPoseNet(export_dir / POSE_FILE, size, providers, arch["rotation"])
    return depth_net, pose_net, meta

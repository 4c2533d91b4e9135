"""Export a checkpoint's networks to ONNX (for onnxruntime and TensorRT) and check the result.

`export_onnx(checkpoint, out_dir)` writes

    depth.onnx   image (B, 3, H, W) float32 in [0, 1]  ->  disp (B, 1, H, W)
    pose.onnx    tgt (B, 3, H, W), srcs (B, S, 3, H, W)  ->  pose_vec (B, S, 6)
                 [+ mask (B, S, H, W) when the network predicts explainability]
    export.json  arch, rotation convention, input size, checkpoint, versions, check results

with a dynamic batch and the checkpoint's fixed H, W. `pose_vec` is (tx, ty, tz, rx, ry, rz)
of `T_src_tgt` (see `sfm_ros.core.geometry.pose_vec_to_mat` with the sidecar's `rotation`).
Only full-resolution outputs are exported. With `fp16` the weights and arithmetic are half
precision while inputs and outputs stay float32. Each model is run with onnxruntime on random
inputs and compared with PyTorch; a difference above the tolerance raises `ExportError`.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sfm_ros.core.checkpoint import library_versions, networks_from_checkpoint
from sfm_ros.core.errors import SfmError
from sfm_ros.core.onnx_backend import (
    DEPTH_FILE,
    EXPORT_FORMAT,
    META_FILE,
    POSE_FILE,
    require,
)

EXPORT_VERSION = 1
MIN_OPSET, MAX_OPSET = 11, 20  # Resize matches F.interpolate from 11; TorchScript exporter max


class ExportError(SfmError):
    """ONNX export failed or its outputs differ from PyTorch's."""


class DepthExport(nn.Module):
    """Full-resolution disparity only: (B, 3, H, W) -> (B, 1, H, W), float32 in and out."""

    def __init__(self, net: nn.Module, fp16: bool = False) -> None:
        super().__init__()
        self.net, self.fp16 = net, fp16

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.fp16:
            return self.net(image.half())[0].float()
        return self.net(image)[0]


class PoseExport(nn.Module):
    """Raw pose vectors (B, S, 6) and, with masks, the full-resolution mask (B, S, H, W)."""

    def __init__(self, net: nn.Module, fp16: bool = False) -> None:
        super().__init__()
        self.net, self.fp16 = net, fp16

    def forward(
        self, tgt: torch.Tensor, srcs: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.fp16:
            tgt, srcs = tgt.half(), srcs.half()
        vec, masks = self.net.forward_vec(tgt, srcs)
        if masks is None:
            return vec.float()
        return vec.float(), masks[0].float()


@dataclass
class ExportResult:
    """What `export_onnx` wrote and how closely onnxruntime matches PyTorch."""

    out_dir: Path
    max_abs_diff: dict[str, float]
    """Output name ("disp", "pose_vec", "mask") -> max |onnxruntime - PyTorch fp32|."""
    meta: dict[str, Any]


def _export_and_check(
    net: nn.Module,
    wrapper: type[DepthExport] | type[PoseExport],
    inputs: dict[str, torch.Tensor],
    output_names: list[str],
    path: Path,
    opset: int,
    fp16: bool,
    tolerance: float,
) -> dict[str, float]:
    """Export `wrapper(net)` traced on batch 1 of `inputs`, then compare onnxruntime (CPU) with
    PyTorch fp32 on the whole batch; returns max |difference| per output.

    Raises ExportError when a difference exceeds `tolerance * max(1, max |PyTorch output|)`.
    """
    module = wrapper(copy.deepcopy(net).half(), fp16=True) if fp16 else wrapper(net)
    input_names = list(inputs)
    with warnings.catch_warnings():
        # Shape checks in the networks are plain Python; the traced graph has fixed H, W anyway.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        try:
            torch.onnx.export(
                module.eval(), tuple(x[:1] for x in inputs.values()), str(path),
                input_names=input_names, output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
                opset_version=opset, dynamo=False, do_constant_folding=True,
            )  # fmt: skip
            require("onnx").checker.check_model(str(path))
        except Exception as exc:  # torch and onnx raise many types; keep the first line
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"exporting {path.name} (opset {opset}) failed: {first}") from exc

    net.eval()  # torch.onnx.export leaves modules in train mode
    session = require("onnxruntime").InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        ref = wrapper(net)(*inputs.values())
    ref = ref if isinstance(ref, tuple) else (ref,)
    diffs, bad = {}, []
    for name, out, r in zip(output_names, outs, ref, strict=True):
        diffs[name] = float((torch.from_numpy(out) - r).abs().max())
        if diffs[name] > tolerance * max(1.0, float(r.abs().max())):
            bad.append(f"{name} {diffs[name]:.3g}")
    if bad:
        raise ExportError(
            f"ONNX outputs of {path} differ from PyTorch by more than {tolerance:g} (relative "
            f"to the output's magnitude): max |diff| {', '.join(bad)}"
        )
    return diffs


def export_onnx(
    checkpoint: str | Path,
    out_dir: str | Path,
    opset: int = 17,
    fp16: bool = False,
    tolerance: float | None = None,
    check_batch: int = 2,
) -> ExportResult:
    """Export both networks of `checkpoint` to `out_dir` and check them against PyTorch.

    Args:
        tolerance: largest allowed max |onnxruntime - PyTorch fp32| of any output, relative to
            the output's largest magnitude (at least 1); default 1e-3 (fp32) or 3e-2 (fp16).
        check_batch: batch size of the check inputs (the export itself traces batch 1, so a
            value > 1 also checks the dynamic batch axis).

    Raises:
        OnnxUnavailableError: onnx or onnxruntime is missing.
        ExportError: `opset` is unsupported, the export failed, or an output differs from
            PyTorch by more than `tolerance`.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset must be in [{MIN_OPSET}, {MAX_OPSET}], got {opset}")
    onnx, ort = require("onnx"), require("onnxruntime")
    tolerance = tolerance if tolerance is not None else (3e-2 if fp16 else 1e-3)
    depth_net, pose_net, ckpt = networks_from_checkpoint(checkpoint)
    arch = ckpt["arch"]
    H, W, L = int(arch["height"]), int(arch["width"]), int(arch["snippet_length"])
    S, B = L - 1, check_batch
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)  # a stale sidecar would vouch for new files
    pose_outputs = ["pose_vec", "mask"] if pose_net.use_mask else ["pose_vec"]

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(B, 3, H, W, generator=gen)
    snippet = {"tgt": image, "srcs": torch.rand(B, S, 3, H, W, generator=gen)}
    diffs = _export_and_check(
        depth_net, DepthExport, {"image": image}, ["disp"], out_dir / DEPTH_FILE,
        opset, fp16, tolerance,
    )  # fmt: skip
    diffs |= _export_and_check(
        pose_net, PoseExport, snippet, pose_outputs, out_dir / POSE_FILE, opset, fp16, tolerance
    )
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "arch": arch,
        "rotation": arch["rotation"],
        "pose_vec": "(tx, ty, tz, rx, ry, rz) of T_src_tgt (target camera -> source camera)",
        "input": {
            "height": H,
            "width": W,
            "snippet_length": L,
            "num_sources": S,
            "range": [0.0, 1.0],
            "layout": "RGB NCHW float32",
        },
        "outputs": {"depth": ["disp"], "pose": pose_outputs},
        "checkpoint": {"path": str(Path(checkpoint).resolve()), "step": int(ckpt["step"])},
        "opset": opset,
        "fp16": fp16,
        "check": {"batch": B, "tolerance": tolerance, "max_abs_diff": diffs},
        "versions": {
            **library_versions(),
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    }
    # Written last: a folder with a sidecar holds a checked export.
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return ExportResult(out_dir, diffs, meta)

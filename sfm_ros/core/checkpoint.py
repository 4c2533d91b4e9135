"""Checkpoints: written atomically, versioned, validated on load, read with weights_only=True.

A checkpoint is a plain dict of tensors and primitive values (no pickled classes), so
`torch.load(path, weights_only=True)` reads it without running code from the file:

    format          "sfm_ros.checkpoint"
    format_version  int (CHECKPOINT_VERSION)
    step            optimisation steps done
    arch            {"depth_net", "depth_kwargs", "snippet_length", "use_mask", "rotation",
                     "height", "width"}: everything needed to rebuild the networks
    config          the resolved training configuration (nested dict)
    depth_net, pose_net          state dicts
    optimizer, scheduler, scaler optional training state (for --resume)
    metrics         optional dict of floats (validation results)
    versions        {"sfm_ros", "torch", "python"}
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from sfm_ros import __version__
from sfm_ros.core.errors import CheckpointError

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.pt"
"""The packaged model used wherever no checkpoint is given (see config/training/)."""
CHECKPOINT_FORMAT = "sfm_ros.checkpoint"
CHECKPOINT_VERSION = 1
_ARCH_KEYS = ("depth_net", "snippet_length", "use_mask", "rotation", "height", "width")


def library_versions() -> dict[str, str]:
    """Versions recorded in every checkpoint."""
    return {
        "sfm_ros": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Save `obj` to `path` so that a crash never leaves a truncated file behind.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed
    over the target (an atomic operation on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; checkpoints are shared read-only
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; raise CheckpointError naming the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # weights_only failures explain themselves on the "Unsupported global" line
        reason = next((x for x in lines if "Unsupported" in x), lines[0] if lines else "")
        reason = reason or type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt, truncated or not a "
            f"PyTorch checkpoint ({reason[:200]})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an sfm_ros checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this sfm_ros "
            f"({__version__}) reads versions up to {CHECKPOINT_VERSION}: upgrade sfm_ros"
        )
    arch = ckpt.get("arch")
    missing = [k for k in _ARCH_KEYS if not isinstance(arch, dict) or k not in arch]
    if missing or "depth_net" not in ckpt or "pose_net" not in ckpt:
        raise CheckpointError(f"{path} is incomplete: missing {missing or 'network weights'}")
    return ckpt


def check_arch(ckpt: dict[str, Any], expected: dict[str, Any], path: str | Path = "") -> None:
    """Raise CheckpointError when the checkpoint's architecture differs from `expected`."""
    diffs = [
        f"{k}: checkpoint has {ckpt['arch'].get(k)!r}, expected {v!r}"
        for k, v in expected.items()
        if ckpt["arch"].get(k) != v
    ]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} does not match the requested model (" + "; ".join(diffs) + ")"
        )


def load_state(module: torch.nn.Module, state: dict[str, Any], what: str, path: str | Path) -> None:
    """`module.load_state_dict(state)` with a one-line error instead of torch's long report."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path}: the {what} weights do not fit the network ({first[:200]})"
        ) from None


class CheckpointManager:
    """Versioned checkpoints in one folder: `ckpt_<step>.pt`, `last.pt` and `best.pt`.

    Keeps the newest `keep_last` step checkpoints; `best.pt` is replaced only when a
    validation score improves (lower is better).
    """

    _STEP_RE = re.compile(r"^ckpt_(\d{8})\.pt$")

    def __init__(self, directory: Path, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)
        self.best_score = float("inf")
        best = self.directory / "best.pt"
        if best.is_file():
            try:
                score = load_checkpoint(best).get("score")
                self.best_score = float(score) if score is not None else float("inf")
            except CheckpointError:
                pass  # a broken best.pt is simply replaced by the next good one

    def step_checkpoints(self) -> list[Path]:
        """Step checkpoints in the folder, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if self._STEP_RE.match(p.name))

    def save(self, ckpt: dict[str, Any], score: float | None = None) -> Path:
        """Write `ckpt` as ckpt_<step>.pt and last.pt (and best.pt when `score` improves)."""
        path = self.directory / f"ckpt_{ckpt['step']:08d}.pt"
        atomic_torch_save(ckpt, path)
        atomic_torch_save(ckpt, self.directory / "last.pt")
        if score is not None and score < self.best_score:
            self.best_score = score
            atomic_torch_save({**ckpt, "score": float(score)}, self.directory / "best.pt")
        for old in self.step_checkpoints()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        """The newest readable checkpoint (for --resume), skipping damaged files."""
        candidates = [self.directory / "last.pt", *reversed(self.step_checkpoints())]
        for path in candidates:
            if path.is_file():
                try:
                    load_checkpoint(path)
                    return path
                except CheckpointError:
                    continue
        return None


def arch_from_config(model_cfg: Any, data_cfg: Any) -> dict[str, Any]:
    """The `arch` entry of a checkpoint from the model and data sections of a TrainConfig."""
    return {
        "depth_net": model_cfg.depth_net,
        "depth_kwargs": {},
        "snippet_length": data_cfg.snippet_length,
        "use_mask": model_cfg.use_mask,
        "rotation": model_cfg.rotation,
        "height": data_cfg.height,
        "width": data_cfg.width,
    }


def build_networks(arch: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Depth and pose networks described by a checkpoint's `arch` entry."""
    from sfm_ros.core.models import build_depth_net, build_pose_net

    depth_net = build_depth_net(arch["depth_net"], **arch.get("depth_kwargs", {}))
    pose_net = build_pose_net(
        arch["snippet_length"], use_mask=arch["use_mask"], rotation=arch["rotation"]
    )
    return depth_net, pose_net


def make_checkpoint(
    step: int,
    arch: dict[str, Any],
    config: dict[str, Any],
    depth_net: torch.nn.Module,
    pose_net: torch.nn.Module,
    **extra: Any,
) -> dict[str, Any]:
    """A checkpoint dict in the documented format (weights copied to the CPU)."""

    def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        module = getattr(module, "module", module)  # unwrap DistributedDataParallel
        return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}

    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "step": int(step),
        "arch": dict(arch),
        "config": config,
        "depth_net": cpu_state(depth_net),
        "pose_net": cpu_state(pose_net),
        "versions": library_versions(),
        **extra,
    }


def networks_from_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """Rebuild both networks from a checkpoint file and load their weights."""
    ckpt = load_checkpoint(path, map_location)
    try:
        depth_net, pose_net = build_networks(ckpt["arch"])
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: cannot build its networks ({exc})") from None
    load_state(depth_net, ckpt["depth_net"], "depth", path)
    load_state(pose_net, ckpt["pose_net"], "pose", path)
    return depth_net, pose_net, ckpt


def resolve_checkpoint(path: str | Path | None) -> Path:
    """The checkpoint to load: `path`, or the packaged default model when `path` is empty."""
    if path:
        path = Path(path).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        return path
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise CheckpointError(
        f"no checkpoint given and no packaged model at {DEFAULT_MODEL}; train one with "
        "`sfm-ros train --out runs/mine` and pass runs/mine/checkpoints/last.pt"
    )


def pack_checkpoint(src: str | Path, dst: str | Path, fp16: bool = True) -> Path:
    """A deployable copy of a checkpoint: weights only (fp16 storage when asked), no optimiser
    state. Loading converts the weights back to the network's dtype."""
    ckpt = load_checkpoint(src)
    for key in ("optimizer", "scheduler", "scaler"):
        ckpt.pop(key, None)
    if fp16:
        for net in ("depth_net", "pose_net"):
            ckpt[net] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt[net].items()}
    ckpt["packed_from"] = str(src)
    atomic_torch_save(ckpt, Path(dst))
    return Path(dst)

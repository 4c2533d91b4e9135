"""Checkpoints: written atomically, versioned, validated on load, read with weights_only=True.

A checkpoint is a plain dict of tensors and primitive values (no pickled classes), so
`torch.load(path, weights_only=True)` reads it without running code from the file:

    format          "sfm_ros.checkpoint"
    format_version  int (CHECKPOINT_VERSION)
    step            optimisation steps done
    arch            {"depth_net", "depth_kwargs", "pose_kwargs", "snippet_length", "use_mask",
                     "rotation", "height", "width"}: everything needed to rebuild the networks
                    (the two kwargs may be absent in older checkpoints: {} then)
    config          the resolved training configuration (nested dict)
    depth_net, pose_net          state dicts
    optimizer, scheduler, scaler optional training state (for --resume)
    metrics         optional dict of floats (validation results)
    versions        {"sfm_ros", "torch", "python"}
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sfm_ros import __version__
from sfm_ros.core.errors import CheckpointError
from sfm_ros.core.models.posenet import POSE_SCALE

log = logging.getLogger(__name__)
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.pt"
"""The packaged model used wherever no checkpoint is given (see config/training/)."""
CHECKPOINT_FORMAT = "sfm_ros.checkpoint"
CHECKPOINT_VERSION = 1
ARCH_KEYS = ("depth_net", "snippet_length", "use_mask", "rotation", "height", "width")
"""The architecture entries two checkpoints must share for one to replace the other."""
_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
"""Names `atomic_torch_save` gives its temporary files (`.<target>.<8 random chars>.tmp`)."""
STALE_TEMP_AGE_S = 300.0
"""A temporary file untouched for this long belongs to a killed writer (live ones keep writing)."""


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
    over the target (an atomic operation on POSIX and Windows); the folder is flushed too, so
    the rename survives a power cut. Temporary files that killed writers left for the same
    target are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temp_files(path.parent, target=path.name)
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
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be
    opened (Windows) or synced (some network file systems)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def remove_orphaned_temp_files(
    directory: Path, target: str | None = None, min_age_s: float = STALE_TEMP_AGE_S
) -> list[Path]:
    """Delete the temporary files of `atomic_torch_save` writers that were killed.

    Only regular files named as `atomic_torch_save` names them (for `target` only, when given)
    and not modified for `min_age_s` are removed, so a live writer's file is never touched.

    Returns:
        The removed paths.
    """
    prefix = f".{target}." if target is not None else "."
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(prefix) and _TEMP_RE.match(entry.name)):
            continue
        try:
            if entry.is_symlink() or not entry.is_file():
                continue
            if now - entry.stat().st_mtime < min_age_s:
                continue
            entry.unlink()
        except OSError:
            continue  # removed by someone else meanwhile, or not ours to remove
        removed.append(entry)
    return removed


def _load_error_reason(exc: Exception) -> str:
    """Torch's reason for refusing a file, in one line: the refused global when there is one,
    else its specific complaint (not the general advice around it)."""
    lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    refused = [x for x in lines if "GLOBAL" in x]
    specific = refused or [x for x in lines if "unsupported" in x.lower()]
    reason = (specific or lines or [type(exc).__name__])[0]
    return reason if len(reason) <= 300 else reason[:297] + "..."


def check_arch_metadata(arch: Any, path: str | Path) -> None:
    """Raise CheckpointError unless `arch` describes networks that can be built and run."""
    missing = [k for k in ARCH_KEYS if not isinstance(arch, dict) or k not in arch]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {missing}")
    problems = []
    for key in ("height", "width"):
        value = arch[key]
        if type(value) is not int or value < 32 or value % 8:
            problems.append(f"{key} {value!r} is not a multiple of 8 of at least 32")
    if arch["snippet_length"] not in (3, 5) or type(arch["snippet_length"]) is not int:
        problems.append(f"snippet_length {arch['snippet_length']!r} is not 3 or 5")
    if type(arch["use_mask"]) is not bool:
        problems.append(f"use_mask {arch['use_mask']!r} is not true or false")
    for key in ("depth_net", "rotation"):
        if not isinstance(arch[key], str):
            problems.append(f"{key} {arch[key]!r} is not a name")
    for key in ("depth_kwargs", "pose_kwargs"):
        if not isinstance(arch.get(key, {}), dict):
            problems.append(f"{key} is not a mapping")
    if problems:
        raise CheckpointError(f"{path} has invalid architecture metadata: " + "; ".join(problems))


def check_finite_weights(state: dict[str, torch.Tensor], what: str, path: str | Path) -> None:
    """Raise CheckpointError when a floating-point tensor of a state dict has NaN or inf."""
    # A float64 sum is NaN or inf exactly when an element is (it cannot overflow), and is
    # faster than an elementwise test.
    bad = [
        name
        for name, value in state.items()
        if value.is_floating_point() and not math.isfinite(value.sum(dtype=torch.float64))
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint {path}: {len(bad)} {what} weight tensor(s) hold NaN or inf "
            f"(first: {bad[0]}); the model is broken (a diverged training?), not loading it"
        )


def _check_state(state: Any, what: str, path: Path) -> None:
    """Raise CheckpointError unless `state` is a finite state dict (name -> tensor)."""
    if not isinstance(state, dict) or not state:
        raise CheckpointError(
            f"{path}: the {what} weights are not a state dict (got {type(state).__name__})"
        )
    odd = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if odd:
        raise CheckpointError(f"{path}: the {what} weights hold non-tensor entries ({odd[0]!r})")
    check_finite_weights(state, what, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; raise CheckpointError naming the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        reason = _load_error_reason(exc)
        if "GLOBAL" in reason:
            raise CheckpointError(
                f"refusing to load {path}: besides tensors and plain values it holds Python "
                f"objects, which could run code when loaded (torch: {reason})"
            ) from None
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt, truncated or not a "
            f"PyTorch checkpoint ({reason})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an sfm_ros checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    version = ckpt.get("format_version")
    if type(version) is not int or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this sfm_ros "
            f"({__version__}) reads versions up to {CHECKPOINT_VERSION}: upgrade sfm_ros"
        )
    step = ckpt.get("step")
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{path} has an invalid step count {step!r}")
    check_arch_metadata(ckpt.get("arch"), path)
    for kwargs in ("depth_kwargs", "pose_kwargs"):  # older checkpoints: the defaults
        ckpt["arch"].setdefault(kwargs, {})
    for net in ("depth_net", "pose_net"):
        if net not in ckpt:
            raise CheckpointError(f"{path} is incomplete: missing the {net} weights")
        _check_state(ckpt[net], net.split("_")[0], path)
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
    validation score improves (lower is better). Temporary files of killed writers are removed
    on start.
    """

    _STEP_RE = re.compile(r"^ckpt_(\d{8})\.pt$")

    def __init__(self, directory: Path, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)
        self.best_score = float("inf")
        for orphan in remove_orphaned_temp_files(self.directory):
            log.info("removed %s, left by an interrupted checkpoint write", orphan)
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
    depth_kwargs = {}
    if model_cfg.depth_output != "disparity":
        depth_kwargs = {
            "output": model_cfg.depth_output,
            "min_depth": model_cfg.min_depth,
            "max_depth": model_cfg.max_depth,
        }
    pose_kwargs = {}
    if model_cfg.translation_scale != POSE_SCALE:
        pose_kwargs = {"translation_scale": model_cfg.translation_scale}
    return {
        "depth_net": model_cfg.depth_net,
        "depth_kwargs": depth_kwargs,
        "pose_kwargs": pose_kwargs,
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
        arch["snippet_length"],
        use_mask=arch["use_mask"],
        rotation=arch["rotation"],
        **arch.get("pose_kwargs", {}),
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

"""`OnlineAdapter`: self-supervised fine-tuning of depth and pose networks on a live stream.

Frames come in with their intrinsics and stamps (`push`, from any thread); keyframe snippets
fill a bounded replay buffer, every few go to a held-out set instead. Training steps
(`step_once`, or a background thread started with `start`) minimise the checkpoint's own
view-synthesis loss on batches of the newest snippet plus random buffer snippets (optionally
some snippets of the original training data, and an L2 pull to the starting weights).

Every ``save_period`` steps the weights are checked on the held-out set against the last good
version, with the photometric loss and with depth's own statistics (`guard`), since the
photometric loss can improve while depth gets worse:

- held-out loss not finite, or worse than the last good one by more than
  ``divergence_threshold``; or depth collapsed (constant, or mostly at the network's output
  bounds) or explainability mask at zero, whatever was accepted before; or depth saturating
  more than the starting weights, its spread far from theirs, its scale or ordering jumping
  from the last good version: the networks and the optimiser are restored exactly to the last
  good version (logged with the reason);
- depth on synthetic memory frames with true depth worse than the starting weights' by more
  than ``max_forgetting`` (`memory`): not published, training goes on (forgetting comes and
  goes while replay keeps training on what the model knew);
- better than or equal to the last good one: a new version is published, atomically, as
  ``out_dir/adapted_<version>.pt`` (weights only; the newest ``keep_versions`` are kept) and
  ``out_dir/latest.pt`` (the same weights with the optimiser state, to resume); both load
  everywhere; ``on_publish(path, version)`` is called;
- otherwise training goes on without publishing.

Only weights that passed the check are ever written. ``resume`` continues from
``out_dir/latest.pt`` (weights, optimiser, version). Besides the live snippets, batches replay
snippets of the original training data (`replay`), and a scale term keeps each frame's mean log
depth near the starting weights' (the monocular scale is otherwise free to drift to a bound).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from sfm_ros.core.checkpoint import (
    ARCH_KEYS,
    CHECKPOINT_FORMAT,
    arch_from_config,
    atomic_torch_save,
    build_networks,
    check_arch,
    load_checkpoint,
    load_state,
    make_checkpoint,
)
from sfm_ros.core.classical_vo import CLASSICAL_MAX_WIDTH, downsized
from sfm_ros.core.config import TrainConfig, config_from_dict
from sfm_ros.core.data import BagReader, resize
from sfm_ros.core.device import resolve_device
from sfm_ros.core.errors import CheckpointError, InputError
from sfm_ros.core.geometry import check_intrinsics
from sfm_ros.core.losses import ViewSynthesisLoss
from sfm_ros.core.online.buffer import (
    SKIP_STATIC,
    SKIP_TEXTURELESS,
    Snippet,
    SnippetBuffer,
    SnippetBuilder,
    collate,
)
from sfm_ros.core.online.config import OnlineConfig
from sfm_ros.core.online.guard import DepthGuard, DepthStats, depth_stats
from sfm_ros.core.online.memory import MemorySet, forgetting_reasons, parse_domains, worst_change
from sfm_ros.core.online.pseudo_labels import ClassicalRotations, rotation_loss
from sfm_ros.core.online.replay import ReplayPool, parse_replay
from sfm_ros.core.onnx_backend import export_source_checkpoint
from sfm_ros.core.train import forward_snippets

log = logging.getLogger(__name__)

LATEST = "latest.pt"
VERSION_RE = re.compile(r"^adapted_(\d{6})\.pt$")
NET_KEYS = ARCH_KEYS[:4]
"""What must match to continue adapting: the networks (fully convolutional: any input size)."""
SIZE_MULTIPLE = 32
MIN_LR_FRACTION = 1.0 / 16.0
"""Rollbacks lower the learning rate down to this fraction of ``lr`` at most."""
PublishFn = Callable[[Path, int], None]


@dataclass
class CheckResult:
    """Outcome of a held-out check."""

    outcome: Literal["published", "held", "rolled_back", "unchanged", "no_data"]
    reason: str
    loss: float = math.nan
    """Held-out loss of the weights checked."""
    good_loss: float = math.nan
    """Held-out loss of the last good version on the same snippets."""
    version: int = 0
    """Version in force after the check."""
    path: Path | None = None
    """File written when published."""
    depth: dict[str, float] = field(default_factory=dict)
    """Held-out depth statistics of the weights checked and of the references (`guard`)."""


@dataclass
class StepResult:
    """One training step."""

    step: int
    loss: float
    """Training loss (NaN when skipped)."""
    skipped: bool
    """True when the loss or gradient was not finite: the weights were not changed."""
    stats: dict[str, float] = field(default_factory=dict)
    check: CheckResult | None = None
    """The held-out check run after this step, if one was due."""


@dataclass
class AdapterStats:
    """Counters since the adapter was created (steps continue across resumes)."""

    frames_in: int = 0
    keyframes: int = 0
    snippets_train: int = 0
    snippets_holdout: int = 0
    skipped: Counter = field(default_factory=Counter)
    steps: int = 0
    skipped_nonfinite: int = 0
    last_loss: float = math.nan
    holdout_loss: float = math.nan
    checks: int = 0
    rollbacks: int = 0
    last_rollback: str = ""
    forgetting_holds: int = 0
    """Checks that kept weights unpublished because they forgot (`memory`)."""
    holdout_depth: dict[str, float] = field(default_factory=dict)
    """Held-out depth statistics of the last check (`DepthGuard.summary`)."""
    publishes: int = 0
    train_time_s: float = 0.0
    duty_measured: float = 0.0
    error: str = ""


def _clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _like(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` on the device and in the dtypes of ``module``'s (packaged models are fp16)."""
    ref = module.state_dict()
    return {k: v.to(device=ref[k].device, dtype=ref[k].dtype) for k, v in state.items()}


def camera_aspect_size(pixels: int, image_width: int, image_height: int) -> tuple[int, int]:
    """(height, width), multiples of SIZE_MULTIPLE, of about ``pixels`` pixels at the aspect
    ratio of an ``image_width`` x ``image_height`` camera."""
    aspect = image_width / image_height
    height = max(1, round(math.sqrt(pixels / aspect) / SIZE_MULTIPLE)) * SIZE_MULTIPLE
    width = max(1, round(height * aspect / SIZE_MULTIPLE)) * SIZE_MULTIPLE
    return height, width


def disparity_bounds(depth_net: nn.Module) -> tuple[float, float]:
    """(lowest, highest) disparity the depth network can output: ``beta`` and ``alpha + beta``
    of its ``alpha * sigmoid + beta`` heads, or ``1 / max_depth`` and ``1 / min_depth`` of a
    ``log_depth`` output."""
    if getattr(depth_net, "output", "disparity") == "log_depth":
        log_min, log_range = float(depth_net.log_min), float(depth_net.log_range)
        return math.exp(-(log_min + log_range)), math.exp(-log_min)
    return float(depth_net.beta), float(depth_net.alpha + depth_net.beta)


def _mean_log(disp: torch.Tensor) -> torch.Tensor:
    """(B,) mean log of each (1, h, w) disparity map of a (B, 1, h, w) batch."""
    return disp.clamp_min(1e-6).log().flatten(1).mean(dim=1)


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch intra-op threads in this thread (0 = unchanged)."""
    previous = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count > 0:
            torch.set_num_threads(previous)


class OnlineAdapter:
    """Adapts a checkpoint's networks to the stream it is fed; see the module docstring.

    Args:
        cfg: settings; ``cfg.checkpoint`` empty = networks of the default training config,
            randomly initialised (seeded).
        on_publish: called as ``on_publish(path, version)`` after each published version,
            from the thread that ran the check (weights in ``path`` passed the check).
        logger: where rollbacks, publications and skipped steps are logged.
        bag_reader: lets ``replay_data`` be a bag (`sfm_ros.messages.BagSequence`).

    Raises:
        CheckpointError: unreadable checkpoint, or ``out_dir`` holds adaptations of another
            architecture while ``resume`` is on.
        DatasetError, ConfigError: ``replay_data`` names a missing path or a bad synthetic
            source (replay snippets themselves are read or rendered by the training thread).
    """

    def __init__(
        self,
        cfg: OnlineConfig,
        on_publish: PublishFn | None = None,
        logger: logging.Logger | None = None,
        bag_reader: BagReader | None = None,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.bag_reader = bag_reader
        self.on_publish = on_publish
        self.log = logger or log
        self.device = resolve_device(cfg.device)
        self.out_dir = Path(cfg.out_dir).expanduser().resolve()  # announced paths are absolute
        self.stats = AdapterStats()
        self.version = 0
        self._lock = threading.RLock()  # networks, optimiser, good state, version
        self._data_lock = threading.Lock()  # builder, buffer, held-out set
        self._load_networks()

        self.height, self.width = int(self.arch["height"]), int(self.arch["width"])
        self._size_fixed = cfg.adapt_resolution == "checkpoint"  # else set by the first frame
        self.snippet_length = int(self.arch["snippet_length"])
        self.builder = SnippetBuilder(
            self.snippet_length, cfg.min_motion, cfg.min_texture, int(cfg.max_keyframe_gap_s * 1e9)
        )
        self.buffer = SnippetBuffer(cfg.buffer_size)
        self.holdout = SnippetBuffer(cfg.holdout_size)
        self._accepted = 0
        self._classical = ClassicalRotations() if cfg.classical_rotation_weight > 0 else None
        parse_replay(cfg.replay_data)  # bad sources fail here, not in the training thread
        self.memory_domains = parse_domains(cfg.memory_domains)
        self._memory: MemorySet | None = None  # rendered by the first check
        self._memory_start: dict[str, float] = {}
        self._replay: ReplayPool | None = None
        self._ref_lock = threading.Lock()  # opening the replay pool
        self.guard = DepthGuard(
            min_spread=cfg.collapse_min_rel_std,
            max_saturation=cfg.collapse_max_saturation,
            max_saturation_increase=cfg.max_saturation_increase,
            max_spread_ratio=cfg.max_spread_ratio,
            max_scale_change=cfg.max_scale_change,
            min_rank_correlation=cfg.min_rank_correlation,
        )

        self._enabled = threading.Event()
        self._enabled.set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- setup
    def _load_networks(self) -> None:
        cfg = self.cfg
        source = Path(cfg.checkpoint).expanduser() if cfg.checkpoint else None
        if source is not None and source.is_dir():  # an ONNX export: adapt its checkpoint
            source = export_source_checkpoint(source)
        base = load_checkpoint(source) if source is not None else None
        latest = self.out_dir / LATEST
        resumed = load_checkpoint(latest) if cfg.resume and latest.is_file() else None
        if base is not None and resumed is not None:
            try:
                check_arch(resumed, {k: base["arch"][k] for k in NET_KEYS}, latest)
            except CheckpointError as exc:
                raise CheckpointError(
                    f"{exc}: {self.out_dir} holds adaptations of another model; use another "
                    "out_dir or turn resume off"
                ) from None
        if base is None and resumed is None:
            base = self._scratch_checkpoint()
            self.log.info("no starting checkpoint: adapting randomly initialised networks")
        start = resumed if resumed is not None else base
        self.arch = dict(start["arch"])
        if base is not None:  # the input size is the starting checkpoint's (or the camera's)
            self.arch.update(height=base["arch"]["height"], width=base["arch"]["width"])
        self.config = start["config"]
        self.train_cfg = config_from_dict(self.config)
        self.depth_net, self.pose_net = build_networks(self.arch)
        where = latest if resumed is not None else source or "(from scratch)"
        load_state(self.depth_net, start["depth_net"], "depth", where)
        load_state(self.pose_net, start["pose_net"], "pose", where)
        self.depth_net.to(self.device)
        self.pose_net.to(self.device)
        self._params = [p for net in (self.depth_net, self.pose_net) for p in net.parameters()]
        self._buffers = [b for net in (self.depth_net, self.pose_net) for b in net.buffers()]
        self.optimizer = self._make_optimizer()
        loss_cfg = replace(self.train_cfg.loss, consistency_weight=self.cfg.consistency_weight)
        self.loss_fn = ViewSynthesisLoss(loss_cfg).to(self.device)

        online = resumed.get("online", {}) if resumed is not None else {}
        self.version = int(online.get("version", 0))
        self.stats.steps = int(online.get("steps", 0))
        self.stats.rollbacks = int(online.get("rollbacks", 0))
        self.base_step = int(online.get("base_step", start["step"]))
        if resumed is not None:
            if "optimizer" in resumed:
                self.optimizer.load_state_dict(resumed["optimizer"])
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr
            self.log.info("resumed from %s (version %d)", latest, self.version)
        # Starting weights: what `reset` restores and what the L2 anchor pulls towards.
        source = base if base is not None else start
        self._start = {
            "depth": _like(source["depth_net"], self.depth_net),
            "pose": _like(source["pose_net"], self.pose_net),
        }
        self._good = self._snapshot()
        self._dirty = False  # trained since the last good version

    @property
    def lr(self) -> float:
        """The learning rate in force (``cfg.lr``, lowered after rollbacks)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _scratch_checkpoint(self) -> dict[str, Any]:
        """Networks of the default training recipe, randomly initialised from the seed."""
        train_cfg = TrainConfig.from_preset("default")
        arch = arch_from_config(train_cfg.model, train_cfg.data)
        torch.manual_seed(self.cfg.seed)
        depth_net, pose_net = build_networks(arch)
        return make_checkpoint(0, arch, train_cfg.to_dict(), depth_net, pose_net)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        beta1 = self.train_cfg.optim.beta1
        return torch.optim.Adam(self._params, lr=self.cfg.lr, betas=(beta1, 0.999))

    def _replay_pool(self) -> ReplayPool | None:
        """The replay pool, opened on first use (training thread) at the adaptation size."""
        if not (self.cfg.replay_data and self.cfg.replay_fraction > 0):
            return None
        with self._ref_lock:
            if self._replay is None:
                self._replay = ReplayPool(self.cfg.replay_data, self.snippet_length,
                                          self.height, self.width, self.bag_reader)  # fmt: skip
            return self._replay

    # ---------------------------------------------------------------- frames
    def push(self, image: np.ndarray, K: np.ndarray, stamp_ns: int) -> str:
        """Offer one frame: (H, W, 3) uint8 RGB (or (H, W) grey), its (3, 3) K, its stamp.

        Any size: it is resized to the network input with K updated. Returns what happened:
        ``"static"`` / ``"textureless"`` (skipped), ``"keyframe"``, ``"snippet"`` (a training
        snippet was completed) or ``"holdout"`` (a held-out snippet was completed).
        """
        image, K = self._check_frame(image, K)
        if not self._size_fixed:
            self._fix_size(image.shape[1], image.shape[0])
        images, K_net, _ = resize([image], K, self.height, self.width)
        camera = None if self._classical is None else downsized(image, K, CLASSICAL_MAX_WIDTH)
        with self._data_lock:
            self.stats.frames_in += 1
            status, snippet = self.builder.add(images[0], K_net, int(stamp_ns), camera)
            if status in (SKIP_STATIC, SKIP_TEXTURELESS):
                self.stats.skipped[status] += 1
                return status
            self.stats.keyframes += 1
            if snippet is None:
                return status
            camera_frames, snippet.extras = snippet.extras, None  # kept only until labelled
            self._accepted += 1
            held_out = (self._accepted - 1) % self.cfg.holdout_every == 0
            if held_out:
                self.holdout.append(snippet)
                self.stats.snippets_holdout += 1
                status = "holdout"
        if not held_out:
            if camera_frames is not None:  # unlocked: training goes on meanwhile (~0.1 s)
                snippet.R_src_tgt = self._classical.source_rotations(camera_frames)
            with self._data_lock:
                self.buffer.append(snippet)
                self.stats.snippets_train += 1
        self._wake.set()
        return status

    def _fix_size(self, image_width: int, image_height: int) -> None:
        """``camera_aspect``: adapt at the first camera's aspect ratio from now on."""
        with self._lock, self._data_lock:
            if self._size_fixed:
                return
            pixels = self.cfg.adapt_pixels or self.height * self.width
            self.height, self.width = camera_aspect_size(pixels, image_width, image_height)
            self.arch.update(height=self.height, width=self.width)
            self._size_fixed = True
        self.log.info(
            "adapting at %dx%d (the %dx%d camera's aspect ratio)",
            self.width, self.height, image_width, image_height,
        )  # fmt: skip

    @staticmethod
    def _check_frame(image: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise InputError(f"image must be a uint8 numpy array, got {type(image).__name__}")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8:
            raise InputError(f"image must be (H, W, 3) RGB of at least 8x8, got {image.shape}")
        K = np.asarray(K, dtype=np.float64)
        check_intrinsics(K, width=image.shape[1], height=image.shape[0])
        return image, K

    def new_sequence(self) -> None:
        """The next frame does not continue the previous ones (another recording)."""
        with self._data_lock:
            self.builder.clear()

    def ready(self) -> bool:
        """Whether the buffer holds enough snippets (``warmup_snippets``) to train."""
        return len(self.buffer) >= max(1, self.cfg.warmup_snippets)

    # ---------------------------------------------------------------- training
    def _sample_batch(self, step: int) -> tuple[list[Snippet], int] | None:
        """Live snippets (the newest first) plus replayed ones, and the number replayed.

        Runs without the network lock: replay snippets may be rendered or read here.
        """
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, step])
        pool = self._replay_pool()
        n_replay = 0
        if pool is not None:
            n_replay = min(
                cfg.batch_size - 1, int(cfg.batch_size * cfg.replay_fraction + rng.random())
            )
        with self._data_lock:
            live = self.buffer.sample(rng, cfg.batch_size - n_replay)
        if not live:
            return None
        replayed = pool.sample(rng, n_replay) if n_replay else []
        return live + replayed, n_replay

    @torch.no_grad()
    def _reference_scales(self, snippets: list[Snippet]) -> torch.Tensor:
        """(B,) mean log disparity of the starting weights on each snippet's target frame
        (computed once per snippet object; call with the network lock held)."""
        todo = [s for s in snippets if s.ref_log_disp is None]
        if todo:
            self.depth_net.eval()
            tgt = collate(todo, self.device)["tgt"]
            disp = functional_call(self.depth_net, self._start["depth"], (tgt,))[0]
            for snippet, value in zip(todo, _mean_log(disp).tolist(), strict=True):
                snippet.ref_log_disp = value
        return torch.tensor([s.ref_log_disp for s in snippets], device=self.device)

    def _train_mode(self) -> None:
        for net in (self.depth_net, self.pose_net):
            net.train()
            if self.cfg.freeze_bn:
                for m in net.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()

    def step_once(self) -> StepResult | None:
        """One training step (then a check when ``save_period`` steps are done).

        Deterministic given the seed and the frames pushed. None when the buffer is empty.
        A non-finite loss or gradient skips the step (weights untouched).
        """
        t0 = time.perf_counter()
        step = self.stats.steps  # steps are taken by one thread at a time
        sampled = self._sample_batch(step)
        if sampled is None:
            return None
        snippets, n_replay = sampled
        with self._lock:
            ref_scales = self._reference_scales(snippets) if self.cfg.scale_weight > 0 else None
            batch = collate(snippets, self.device)
            torch.manual_seed(self.cfg.seed * 1_000_003 + step)
            self._train_mode()
            buffers = [b.clone() for b in self._buffers]  # BatchNorm statistics, restored on skip
            tgt, srcs, K = batch["tgt"], batch["srcs"], batch["K"]
            consistency = self.cfg.consistency_weight > 0
            out = forward_snippets(self.depth_net, self.pose_net, tgt, srcs, consistency)
            loss, stats = self.loss_fn(
                tgt, srcs, out.disps, out.T_src_tgt, K, out.masks, out.src_disps
            )
            if ref_scales is not None:
                scale = self.cfg.scale_weight * (_mean_log(out.disps[0]) - ref_scales).pow(2).mean()
                stats["scale"] = float(scale.detach())
                loss = loss + scale
            labels = [s.R_src_tgt for s in snippets]  # None: replayed, or weight 0
            if self.cfg.classical_rotation_weight > 0 and any(r is not None for r in labels):
                missing = torch.full(out.T_src_tgt.shape[1:2] + (3, 3), math.nan)
                R_label = torch.stack([missing if r is None else r for r in labels])
                rotation = rotation_loss(
                    out.T_src_tgt[..., :3, :3].flatten(0, 1), R_label.flatten(0, 1).to(self.device)
                )
                if rotation is not None:
                    stats["classical_rotation"] = float(rotation.detach())
                    loss = loss + self.cfg.classical_rotation_weight * rotation
            if self.cfg.anchor_weight > 0:
                anchor = self._anchor_loss()
                stats["anchor"] = float(anchor.detach())
                loss = loss + anchor
            stats["replay"] = float(n_replay)
            self.optimizer.zero_grad(set_to_none=True)
            self.stats.steps += 1
            skipped = not torch.isfinite(loss)
            if not skipped:
                loss.backward()
                clip = self.train_cfg.optim.grad_clip or float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(self._params, clip)
                skipped = not torch.isfinite(grad_norm)
                if not skipped:
                    self.optimizer.step()
                    self._dirty = True
                    stats["grad_norm"] = float(grad_norm)
            self.optimizer.zero_grad(set_to_none=True)
            if skipped:
                with torch.no_grad():
                    for b, saved in zip(self._buffers, buffers, strict=True):
                        b.copy_(saved)
                self.stats.skipped_nonfinite += 1
                self.log.warning(
                    "step %d: non-finite loss or gradient, step skipped (%d so far)",
                    self.stats.steps,
                    self.stats.skipped_nonfinite,
                )
            else:
                self.stats.last_loss = float(loss.detach())
            check = self.check() if self.stats.steps % self.cfg.save_period == 0 else None
            self._sync()
            self.stats.train_time_s += time.perf_counter() - t0
            value = math.nan if skipped else self.stats.last_loss
            return StepResult(self.stats.steps, value, skipped, stats, check)

    def _anchor_loss(self) -> torch.Tensor:
        total = torch.zeros((), device=self.device)
        for prefix, net in (("depth", self.depth_net), ("pose", self.pose_net)):
            start = self._start[prefix]
            for name, p in net.named_parameters():
                total = total + (p - start[name]).pow(2).sum()
        return self.cfg.anchor_weight * total

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    # ---------------------------------------------------------------- checks
    @torch.no_grad()
    def _evaluate(
        self, batch: dict[str, torch.Tensor], state: dict[str, Any] | None
    ) -> tuple[float, float | None]:
        """Loss of the current weights (``state`` None) or of ``state`` on ``batch``, and the
        mean explainability mask of those weights (None without masks)."""
        self.depth_net.eval()
        self.pose_net.eval()
        tgt, srcs, K = batch["tgt"], batch["srcs"], batch["K"]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed)  # the same auto-mask tie-breaking noise each time
            if state is None:
                out = forward_snippets(self.depth_net, self.pose_net, tgt, srcs)
                disps, T_src_tgt, masks = out.disps, out.T_src_tgt, out.masks
            else:
                disps = list(functional_call(self.depth_net, state["depth"], (tgt,)))
                T_src_tgt, masks = functional_call(self.pose_net, state["pose"], (tgt, srcs))
            loss, _ = self.loss_fn(tgt, srcs, disps, T_src_tgt, K, masks)
        return float(loss), None if masks is None else float(masks[0].float().mean())

    @torch.no_grad()
    def _disparity(self, frames: torch.Tensor, state: dict[str, Any] | None) -> torch.Tensor:
        """(N, 1, h, w) disparity of the current weights (``state`` None) or of ``state`` on
        (N, 3, h, w) frames."""
        self.depth_net.eval()
        if state is None:
            return self.depth_net(frames)[0]
        return functional_call(self.depth_net, state["depth"], (frames,))[0]

    def _depth_stats(self, frames: torch.Tensor, state: dict[str, Any] | None) -> DepthStats:
        """Depth statistics of the current weights (``state`` None) or of ``state``."""
        return depth_stats(self._disparity(frames, state), disparity_bounds(self.depth_net))

    def _depth_reasons(self, batch: dict[str, torch.Tensor]) -> tuple[list[str], dict[str, float]]:
        """Why the current weights' depth on every held-out frame must not be published, and
        the statistics (`DepthGuard`) against the starting weights and the last good version."""
        frames = torch.cat([batch["tgt"][:, None], batch["srcs"]], dim=1).flatten(0, 1)
        cand = self._depth_stats(frames, None)
        start = self._depth_stats(frames, self._start)
        good = self._depth_stats(frames, self._good)
        reasons = self.guard.check(cand, start, good, self.version)
        return reasons, DepthGuard.summary(cand, start, good)

    def _memory_reasons(self) -> tuple[list[str], dict[str, float]]:
        """Why the current weights forgot too much of the memory domains (`memory`), and the
        memory Abs Rel (mean over domains) beside the starting weights' and the worst change."""
        if self._memory is None:
            return [], {}
        if not self._memory_start:
            start_disp = self._disparity(self._memory.frames, self._start)
            self._memory_start = self._memory.abs_rel(start_disp)
        start = self._memory_start
        cand = self._memory.abs_rel(self._disparity(self._memory.frames, None))
        reasons = forgetting_reasons(cand, start, self.cfg.max_forgetting)
        return reasons, {
            "memory_abs_rel": float(np.mean(list(cand.values()))),
            "memory_abs_rel_start": float(np.mean(list(start.values()))),
            "memory_worst_change": worst_change(cand, start),
        }

    def _holdout_batch(self) -> dict[str, torch.Tensor] | None:
        with self._data_lock:
            held = list(self.holdout)
        return collate(held, self.device) if held else None

    def evaluate_holdout(self, weights: Literal["current", "good", "start"] = "current") -> float:
        """Held-out loss of the current, the last good or the starting weights (NaN if none)."""
        with self._lock:
            batch = self._holdout_batch()
            if batch is None:
                return math.nan
            state = {"current": None, "good": self._good, "start": self._start}[weights]
            return self._evaluate(batch, state)[0]

    def _render_memory(self) -> None:
        """Render the memory frames once the input size is known (seconds, without the lock)."""
        if self.memory_domains and self._memory is None and self._size_fixed:
            self._memory = MemorySet.render(
                self.memory_domains, self.cfg.memory_frames, self.height, self.width, self.device
            )

    def check(self) -> CheckResult:
        """Compare the current weights with the last good version on the held-out snippets:
        publish, roll back or keep training (see the module docstring)."""
        self._render_memory()
        with self._lock:
            if not self._dirty:
                return CheckResult("unchanged", f"no update since version {self.version}",
                                   version=self.version)  # fmt: skip
            batch = self._holdout_batch()
            if batch is None:
                return CheckResult("no_data", "no held-out snippet yet", version=self.version)
            loss, mask = self._evaluate(batch, None)
            good_loss, _ = self._evaluate(batch, self._good)
            # Depth is guarded by its own statistics: a collapsed network is never published,
            # whatever was accepted before, and the photometric loss alone decides nothing.
            reasons, depth = self._depth_reasons(batch)
            forgot, memory = self._memory_reasons()
            depth.update(memory)
            if mask is not None and mask < self.cfg.collapse_min_mask:
                reasons.append(f"explainability mask collapsed: held-out mean {mask:.3f}")
            self.stats.checks += 1
            self.stats.holdout_loss = loss
            self.stats.holdout_depth = depth
            limit = good_loss * (1.0 + self.cfg.divergence_threshold)
            if not math.isfinite(loss):
                reasons.insert(0, "held-out loss is not finite")
            elif loss > limit:
                reasons.insert(
                    0,
                    f"divergence: held-out loss {loss:.4f} exceeds {good_loss:.4f} of version "
                    f"{self.version} by more than {100 * self.cfg.divergence_threshold:.0f}%",
                )
            if reasons:
                result = self._rollback("; ".join(reasons), loss, good_loss)
                result.depth = depth
                return result
            # Forgetting comes and goes while replay keeps training on what the model knew:
            # such weights are not published, but training goes on from them.
            held = list(forgot)
            self.stats.forgetting_holds += bool(forgot)
            if loss > good_loss:
                held.append(
                    f"held-out loss {loss:.4f} not below {good_loss:.4f} of version {self.version}"
                )
            if held:
                return CheckResult("held", "; ".join(held), loss, good_loss, self.version,
                                   depth=depth)  # fmt: skip
            self._good = self._snapshot()
            self._dirty = False
            metrics = {"holdout_loss": loss, "previous_holdout_loss": good_loss, **depth}
            path = self._publish(metrics)
            reason = f"held-out loss {loss:.4f} <= {good_loss:.4f}, depth statistics in bounds"
            return CheckResult("published", reason, loss, good_loss, self.version, path, depth)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "depth": _clone_state(self.depth_net),
            "pose": _clone_state(self.pose_net),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def _rollback(self, reason: str, loss: float, good_loss: float) -> CheckResult:
        lr = max(self.lr * self.cfg.rollback_lr_factor, self.cfg.lr * MIN_LR_FRACTION)
        self.depth_net.load_state_dict(self._good["depth"])
        self.pose_net.load_state_dict(self._good["pose"])
        # A copy: the optimiser would otherwise update the saved state in place.
        self.optimizer.load_state_dict(copy.deepcopy(self._good["optimizer"]))
        # The same steps again would fail the same way: back off the learning rate.
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._dirty = False
        self.stats.rollbacks += 1
        self.stats.last_rollback = reason
        self.log.warning(
            "rolled back to version %d (learning rate now %.2g): %s", self.version, lr, reason
        )
        return CheckResult("rolled_back", reason, loss, good_loss, self.version)

    # ---------------------------------------------------------------- publishing
    def _publish(self, metrics: dict[str, float]) -> Path:
        """Write the current weights (which equal the good state) as the next version: weights
        only in ``adapted_<version>.pt``, with the optimiser state in ``latest.pt``. Numbers
        continue after every ``adapted_<version>.pt`` in ``out_dir``: nothing is overwritten."""
        previous = self.version
        numbers = [int(VERSION_RE.match(p.name).group(1)) for p in self.versioned_checkpoints()]
        self.version = max([self.version, *numbers]) + 1
        online = {
            "version": self.version,
            "steps": self.stats.steps,
            "rollbacks": self.stats.rollbacks,
            "base_step": self.base_step,
            "base_checkpoint": self.cfg.checkpoint,
        }
        ckpt = make_checkpoint(
            self.base_step + self.stats.steps, self.arch, self.config,
            self.depth_net, self.pose_net, metrics=metrics, online=online,
        )  # fmt: skip
        path = self.out_dir / f"adapted_{self.version:06d}.pt"
        try:
            atomic_torch_save(ckpt, path)
            atomic_torch_save(
                {**ckpt, "optimizer": self.optimizer.state_dict()}, self.out_dir / LATEST
            )
        except OSError as exc:  # the version is not out: the next check tries again
            self.version = previous
            self._dirty = True
            raise CheckpointError(
                f"cannot write the adapted model to {self.out_dir}: {exc.strerror or exc}; "
                "give a writable out_dir"
            ) from None
        self._prune_versions()
        self.stats.publishes += 1
        self.log.info("published version %d: %s", self.version, path)
        self._sync()
        if self.on_publish is not None:
            self.on_publish(path, self.version)
        return path

    def versioned_checkpoints(self) -> list[Path]:
        """``adapted_<version>.pt`` files in ``out_dir``, oldest first."""
        if not self.out_dir.is_dir():
            return []
        return sorted(p for p in self.out_dir.iterdir() if VERSION_RE.match(p.name))

    def _prune_versions(self) -> None:
        """Delete versions older than the newest ``keep_versions``: only regular files named
        as this fine-tuner names them, older than the current version, that are fine-tuner
        checkpoints (read lazily); anything else in ``out_dir`` is left alone."""
        old = [
            p for p in self.versioned_checkpoints()
            if int(VERSION_RE.match(p.name).group(1)) <= self.version - self.cfg.keep_versions
        ]  # fmt: skip
        for path in old:
            if path.is_symlink() or not path.is_file():
                continue
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                own = isinstance(ckpt, dict) and "online" in ckpt
                own = own and ckpt.get("format") == CHECKPOINT_FORMAT
            except Exception:  # unreadable: not ours to judge, so not ours to delete
                own = False
            if own:
                path.unlink(missing_ok=True)

    def save(self) -> tuple[bool, str]:
        """Check now and publish when the weights pass; returns (success, message)."""
        try:
            result = self.check()
        except CheckpointError as exc:  # e.g. out_dir not writable: reported, not raised
            return False, f"not saved: {exc}"
        latest = self.out_dir / LATEST
        if result.outcome == "published":
            return True, f"published version {result.version}: {result.path}"
        if result.outcome == "unchanged":
            where = f" ({latest})" if self.version else " (the starting weights)"
            return True, f"nothing new to save: version {self.version} is current{where}"
        if result.outcome == "rolled_back":
            return False, f"not saved, rolled back to version {result.version}: {result.reason}"
        return False, f"not saved ({result.reason}); version {result.version} stays current"

    def reset(self) -> str:
        """Back to the starting weights with a fresh optimiser (learning rate ``lr``) and empty
        buffers.

        When adapted versions were published, the starting weights are published as the next
        version so that consumers switch back too.
        """
        with self._lock:
            self.depth_net.load_state_dict(self._start["depth"])
            self.pose_net.load_state_dict(self._start["pose"])
            self.optimizer = self._make_optimizer()
            self._good = self._snapshot()
            self._dirty = False
            with self._data_lock:
                self.builder.clear()
                self.buffer.clear()
                self.holdout.clear()
                self._accepted = 0
            if self.version == 0:
                return "reset to the starting weights (nothing had been published)"
            path = self._publish({"reset": 1.0})
            return f"reset to the starting weights, published as version {self.version}: {path}"

    def good_networks(self) -> tuple[nn.Module, nn.Module]:
        """New copies (on the training device) of the networks of the last good version."""
        with self._lock:
            depth_net, pose_net = (net.to(self.device) for net in build_networks(self.arch))
            depth_net.load_state_dict(self._good["depth"])
            pose_net.load_state_dict(self._good["pose"])
            self._sync()
        return depth_net.eval(), pose_net.eval()

    # ---------------------------------------------------------------- background training
    @property
    def enabled(self) -> bool:
        return self._enabled.is_set()

    def set_enabled(self, enabled: bool) -> None:
        """Pause (False) or resume (True) the background training; frames are still taken."""
        if enabled:
            self._enabled.set()
            self._wake.set()
        else:
            self._enabled.clear()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, until_step: int | None = None) -> None:
        """Train in a background thread (its own CUDA stream, ``threads`` CPU threads) within
        the duty cycle; with ``until_step``, the thread ends once ``stats.steps`` reaches it."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(until_step,), name="online_adapter", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the background thread after its current step."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def pause_after(self, step_s: float) -> float:
        """Seconds to wait after a step of ``step_s`` to respect the duty cycle and rate limit."""
        pause = step_s * (1.0 / self.cfg.duty_cycle - 1.0)
        if self.cfg.max_steps_per_s > 0:
            pause = max(pause, 1.0 / self.cfg.max_steps_per_s - step_s)
        return pause

    def _run(self, until_step: int | None) -> None:
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        context = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        started, busy = time.perf_counter(), 0.0
        try:
            with context, torch_threads(self.cfg.threads):
                while not self._stop.is_set():
                    if until_step is not None and self.stats.steps >= until_step:
                        break
                    if not (self.enabled and self.ready()):
                        self._wake.wait(0.2)
                        self._wake.clear()
                        continue
                    t0 = time.perf_counter()
                    self.step_once()
                    step_s = time.perf_counter() - t0
                    busy += step_s
                    if not self._stop.wait(self.pause_after(step_s)):  # over whole cycles only
                        self.stats.duty_measured = busy / (time.perf_counter() - started)
        except Exception as exc:  # reported in the status, not lost with the thread
            self.stats.error = f"{type(exc).__name__}: {exc}"
            self.log.error("online adaptation stopped: %s", self.stats.error)

    # ---------------------------------------------------------------- reporting
    def buffer_bytes(self) -> tuple[int, int]:
        """(bytes held by the training and held-out snippets, upper bound when full)."""
        per_snippet = self.snippet_length * 3 * self.height * self.width + 9 * 4
        with self._data_lock:
            held = self.buffer.nbytes + self.holdout.nbytes
        return held, per_snippet * (self.cfg.buffer_size + self.cfg.holdout_size)

    def status(self) -> dict[str, str]:
        """Key/values for diagnostics."""
        s = self.stats
        held, bound = self.buffer_bytes()
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(s.skipped.items())) or "none"
        return {
            "enabled": "yes" if self.enabled else "no",
            "training thread": "running" if self.running else "stopped",
            "frames in": str(s.frames_in),
            "keyframes": str(s.keyframes),
            "skipped frames": skipped,
            "snippets (train / held-out)": f"{s.snippets_train} / {s.snippets_holdout}",
            "buffer fill": f"{len(self.buffer)}/{self.cfg.buffer_size}",
            "held-out fill": f"{len(self.holdout)}/{self.cfg.holdout_size}",
            "buffer memory (MB)": f"{held / 1e6:.2f} of at most {bound / 1e6:.2f}",
            "steps": str(s.steps),
            "skipped steps (non-finite)": str(s.skipped_nonfinite),
            "loss": f"{s.last_loss:.4f}",
            "held-out loss": f"{s.holdout_loss:.4f}",
            "learning rate": f"{self.lr:.2g}",
            "version": str(self.version),
            "published": str(s.publishes),
            "rollbacks": str(s.rollbacks),
            "held for forgetting": str(s.forgetting_holds),
            "last rollback": s.last_rollback or "none",
            "held-out depth (spread / saturation / median)": _depth_line(s.holdout_depth),
            "memory Abs Rel (worst domain's change)": _memory_line(s.holdout_depth),
            "duty cycle (measured / limit)": f"{s.duty_measured:.2f} / {self.cfg.duty_cycle:.2f}",
            "device": str(self.device),
            "adaptation size": f"{self.width}x{self.height} ({self.cfg.adapt_resolution})",
        }


def _depth_line(depth: dict[str, float]) -> str:
    """Spread, saturation and median depth of a check, beside the starting weights'."""
    if not depth:
        return "no check yet"
    return (
        f"{depth['depth_spread']:.3f} / {100 * depth['depth_saturation']:.1f}% / "
        f"{depth['depth_median']:.3g} (start {depth['depth_spread_start']:.3f} / "
        f"{100 * depth['depth_saturation_start']:.1f}% / {depth['depth_median_start']:.3g})"
    )


def _memory_line(depth: dict[str, float]) -> str:
    """Memory Abs Rel of a check beside the starting weights', and the worst domain's change."""
    if "memory_abs_rel" not in depth:
        return "no check yet" if not depth else "off"
    return (
        f"{depth['memory_abs_rel']:.3f} (start {depth['memory_abs_rel_start']:.3f}; worst "
        f"{100 * depth['memory_worst_change']:+.1f}%)"
    )

"""View-synthesis training (SfMLearner / Monodepth2 recipes), in monodepth2's plain style.

One `Trainer` owns the networks, optimiser, data and logs. Every step's randomness (which
snippets, which augmentation, the auto-mask noise) is derived from (seed, step), so `--resume`
continues exactly where an interrupted run stopped. `torchrun` starts multi-GPU training
(DistributedDataParallel); rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sfm_ros.core.checkpoint import (
    CheckpointManager,
    arch_from_config,
    build_networks,
    check_arch,
    load_checkpoint,
    load_state,
    make_checkpoint,
)
from sfm_ros.core.config import TrainConfig
from sfm_ros.core.data import BagReader, SnippetDataset
from sfm_ros.core.device import resolve_device
from sfm_ros.core.errors import CheckpointError, ConfigError
from sfm_ros.core.geometry import snippet_poses_in_target
from sfm_ros.core.losses import ViewSynthesisLoss, velocity_loss
from sfm_ros.core.metrics import compute_depth_errors, snippet_ate
from sfm_ros.core.sources import open_sources
from sfm_ros.core.visualize import colorize, save_png

log = logging.getLogger(__name__)


@dataclass
class SnippetOutputs:
    """Network outputs for a batch of snippets."""

    disps: list[torch.Tensor]
    """Disparities (B, 1, H/2^s, W/2^s), full resolution first."""
    T_src_tgt: torch.Tensor
    """(B, S, 4, 4) predicted source-from-target poses."""
    masks: list[torch.Tensor] | None
    """Explainability masks (B, S, H/2^s, W/2^s) or None."""
    src_disps: torch.Tensor | None = None
    """Full-resolution disparities of the sources (B, S, 1, H, W), when asked for."""


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` is true on at least one rank of the process group (the flag itself when
    not distributed), so that every rank takes the same decision.

    DistributedDataParallel all-reduces gradients inside `backward()`: one rank skipping a step
    that the others take would hang them, so skips and stops are decided together (MAX).

    Args:
        device: where the collective runs (a CUDA device with NCCL, the CPU with gloo).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def forward_snippets(
    depth_net: nn.Module,
    pose_net: nn.Module,
    tgt: torch.Tensor,
    srcs: torch.Tensor,
    source_depth: bool = False,
) -> SnippetOutputs:
    """Run both networks on target (B, 3, H, W) and sources (B, S, 3, H, W); with
    `source_depth` the depth network sees the sources too (in the same batch)."""
    B, S = srcs.shape[:2]
    disps = list(depth_net(torch.cat([tgt, srcs.flatten(0, 1)]) if source_depth else tgt))
    T_src_tgt, masks = pose_net(tgt, srcs)
    if not source_depth:
        return SnippetOutputs(disps, T_src_tgt, masks)
    src_disps = disps[0][B:].unflatten(0, (B, S))
    return SnippetOutputs([d[:B] for d in disps], T_src_tgt, masks, src_disps)


class CollapseMonitor:
    """Detects the classic failure modes: constant disparity and explainability mask to zero.

    A condition must hold for `patience` consecutive checks before it is reported (once).
    """

    def __init__(self, patience: int = 3, min_rel_std: float = 0.02, min_mask: float = 0.05):
        self.patience, self.min_rel_std, self.min_mask = patience, min_rel_std, min_mask
        self.counts = {"disparity": 0, "mask": 0}
        self.reported: dict[str, str] = {}
        """Condition name -> the warning given for it."""

    def check(self, disp: torch.Tensor, masks: list[torch.Tensor] | None) -> list[str]:
        """Update with a batch's full-resolution disparity and masks; return new warnings."""
        d = disp.detach().float()
        rel_std = (d.std(dim=(1, 2, 3)) / d.mean(dim=(1, 2, 3)).clamp_min(1e-8)).mean().item()
        status = {"disparity": rel_std < self.min_rel_std}
        if masks is not None:
            status["mask"] = masks[0].detach().float().mean().item() < self.min_mask
        new: list[str] = []
        for name, bad in status.items():
            self.counts[name] = self.counts[name] + 1 if bad else 0
            if self.counts[name] >= self.patience and name not in self.reported:
                self.reported[name] = self.message(name, rel_std)
                new.append(self.reported[name])
        return new

    @staticmethod
    def message(name: str, rel_std: float) -> str:
        if name == "disparity":
            return (
                f"training collapse: the predicted disparity is constant across the image "
                f"(relative std {rel_std:.1e}); depth carries no structure. Usual causes: too "
                "little camera motion (raise data.min_motion), a too high smoothness weight "
                "(loss.smooth_weight) or learning rate, or wrong intrinsics."
            )
        return (
            "training collapse: the explainability mask went to zero, so the photometric loss "
            "is switched off everywhere. Raise loss.mask_weight or disable model.use_mask."
        )


@dataclass
class TrainSummary:
    """What a training run did, printed and returned by `Trainer.run`."""

    steps_done: int = 0
    skipped_nonfinite: int = 0
    seconds_per_step: float = float("nan")
    last_loss: float = float("nan")
    best_val: float = float("inf")
    val: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    checkpoint: str = ""


class _StepBatches(torch.utils.data.Dataset):
    """Item `step` is the whole batch of that step, chosen and augmented from (seed, step, rank)."""

    def __init__(self, dataset: SnippetDataset, batch_size: int, seed: int, rank: int) -> None:
        self.dataset, self.batch_size, self.seed, self.rank = dataset, batch_size, seed, rank

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step, self.rank])
        n = len(self.dataset)
        indices = rng.choice(n, size=self.batch_size, replace=n < self.batch_size)
        items = [self.dataset.get(int(i), rng) for i in indices]
        return torch.utils.data.default_collate(items)


class Trainer:
    """Trains depth and pose networks by view synthesis according to a TrainConfig."""

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        progress: bool = True,
        bag_reader: BagReader | None = None,
    ) -> None:
        self.cfg = cfg
        self.progress = progress
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = self._setup_device()
        self.is_main = self.rank == 0
        self.out_dir = Path(cfg.log.out_dir)
        self.ckpts = CheckpointManager(self.out_dir / "checkpoints", cfg.log.keep_last)

        torch.manual_seed(cfg.optim.seed)
        self.arch = arch_from_config(cfg.model, cfg.data)
        self.depth_net, self.pose_net = (m.to(self.device) for m in build_networks(self.arch))
        self.use_amp = cfg.optim.amp and self.device.type == "cuda"
        if self.device.type == "cuda":
            self.depth_net = self.depth_net.to(memory_format=torch.channels_last)
        self.loss_fn = ViewSynthesisLoss(cfg.loss).to(self.device)
        params = list(self.depth_net.parameters()) + list(self.pose_net.parameters())
        self.optimizer = torch.optim.Adam(
            params,
            lr=cfg.optim.lr,
            betas=(cfg.optim.beta1, 0.999),
            weight_decay=cfg.optim.weight_decay,
        )
        step_size = cfg.optim.lr_decay_steps or 2**62
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=step_size, gamma=cfg.optim.lr_decay
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.summary = TrainSummary()
        if cfg.model.init_from and not (resume and self.ckpts.latest()):
            self._init_from(cfg.model.init_from)
        if resume:
            self._resume()
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.depth_net = nn.parallel.DistributedDataParallel(self.depth_net, device_ids=ids)
            self.pose_net = nn.parallel.DistributedDataParallel(self.pose_net, device_ids=ids)

        d = cfg.data
        size = {"height": d.height, "width": d.width}
        topics = {"image_topic": d.image_topic, "camera_info_topic": d.camera_info_topic}
        topics["bag_reader"] = bag_reader
        self.train_set = SnippetDataset(
            open_sources(d.train, d.render_workers, **size, **topics),
            d.snippet_length,
            **size,
            augment=d.augment,
            min_motion=d.min_motion,
            seed=cfg.optim.seed,
        )
        self.val_set = (
            SnippetDataset(
                open_sources(d.val, d.render_workers, **size, **topics),
                d.snippet_length,
                **size,
                augment=False,
                min_motion=0.0,
            )
            if d.val
            else None
        )
        if cfg.loss.velocity_weight > 0 and not self.train_set.with_poses:
            raise ConfigError(
                "loss.velocity_weight needs true poses in every training source "
                "(synthetic sequences, KITTI with poses); set it to 0 for this data"
            )
        self.collapse = CollapseMonitor()
        self.writer = None
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    # ---------------------------------------------------------------- setup
    def _setup_device(self) -> torch.device:
        if not self.distributed:
            return resolve_device(self.cfg.device)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl")
            return torch.device("cuda", local_rank)
        dist.init_process_group("gloo")
        return torch.device("cpu")

    def _load_weights(self, path: str | Path, resizable: bool) -> dict:
        """Load both networks' weights from `path` after checking its networks are ours (any
        input size when `resizable`); returns the checkpoint."""
        ckpt = load_checkpoint(path, map_location=self.device)
        size_free = ("height", "width") if resizable else ()
        check_arch(ckpt, {k: v for k, v in self.arch.items() if k not in size_free}, path)
        load_state(self.depth_net, ckpt["depth_net"], "depth", path)
        load_state(self.pose_net, ckpt["pose_net"], "pose", path)
        return ckpt

    def _init_from(self, path: str) -> None:
        arch = self._load_weights(path, resizable=True)["arch"]
        log.info("networks start from %s (%dx%d)", path, arch["height"], arch["width"])

    def _resume(self) -> None:
        path = self.ckpts.latest()
        if path is None:
            log.info("no checkpoint in %s: starting from scratch", self.ckpts.directory)
            return
        ckpt = self._load_weights(path, resizable=False)
        for name in ("optimizer", "scheduler", "scaler"):
            if name not in ckpt:
                raise CheckpointError(f"{path} has no {name} state: it cannot be resumed")
            getattr(self, name).load_state_dict(ckpt[name])
        self.step = ckpt["step"]
        self.summary.skipped_nonfinite = ckpt.get("skipped_nonfinite", 0)
        log.info("resumed from %s at step %d", path, self.step)

    # ---------------------------------------------------------------- training
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float] | None:
        """One optimisation step; None when the loss (on any rank) or the gradients were not
        finite (skipped by every rank)."""
        tgt = batch["tgt"].to(self.device, non_blocking=True)
        srcs = batch["srcs"].to(self.device, non_blocking=True)
        K = batch["K"].to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            tgt = tgt.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            out = forward_snippets(
                self.depth_net, self.pose_net, tgt, srcs, self.cfg.loss.consistency_weight > 0
            )
        # The loss runs in fp32: warping and SSIM are precision sensitive.
        disps = [d.float() for d in out.disps]
        masks = [m.float() for m in out.masks] if out.masks is not None else None
        src_disps = out.src_disps.float() if out.src_disps is not None else None
        loss, stats = self.loss_fn(
            tgt.float(), srcs, disps, out.T_src_tgt.float(), K, masks, src_disps
        )
        if self.cfg.loss.velocity_weight > 0:
            true_T = batch["T_src_tgt"].to(self.device, non_blocking=True)
            velocity = velocity_loss(out.T_src_tgt.float(), true_T)
            loss = loss + self.cfg.loss.velocity_weight * velocity
            stats["velocity"] = float(velocity.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if any_rank(not bool(torch.isfinite(loss)), self.device):
            return None
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._last = (tgt, out, disps, masks)
        stats = {**stats, "grad_norm": float(grad_norm), "lr": self.scheduler.get_last_lr()[0]}
        stats.update(pose_statistics(out.T_src_tgt.detach()))
        return stats

    def run(self) -> TrainSummary:
        """Train until `optim.steps`, validating and checkpointing on the way."""
        cfg = self.cfg
        loader = torch.utils.data.DataLoader(
            _StepBatches(self.train_set, cfg.optim.batch_size, cfg.optim.seed, self.rank),
            batch_size=None,
            sampler=range(self.step, cfg.optim.steps),
            num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        bar = tqdm(
            total=cfg.optim.steps,
            initial=self.step,
            disable=not (self.progress and self.is_main),
            desc="train",
            dynamic_ncols=True,
        )
        train_time, timed_steps = 0.0, 0
        deadline = time.monotonic() + cfg.optim.max_minutes * 60 if cfg.optim.max_minutes else None
        for batch in loader:
            torch.manual_seed(cfg.optim.seed * 1_000_003 + self.step)
            start = time.perf_counter()
            stats = self.train_step(batch)
            train_time += time.perf_counter() - start
            timed_steps += 1
            self.step += 1
            bar.update(1)
            if stats is None:
                self.summary.skipped_nonfinite += 1
                bar.write(
                    f"step {self.step}: non-finite loss or gradient, step skipped "
                    f"({self.summary.skipped_nonfinite} so far)"
                )
            else:
                self.summary.last_loss = stats["total"]
                bar.set_postfix(loss=f"{stats['total']:.4f}")
                self._log_step(stats, bar)
            past_deadline = deadline is not None and time.monotonic() > deadline
            # Clocks differ between ranks: the first one out of time stops them all, together.
            out_of_time = any_rank(past_deadline, self.device)
            last = self.step == cfg.optim.steps or out_of_time
            if cfg.log.val_every and self.step % cfg.log.val_every == 0 or last:
                self.summary.val = self.validate()
                if self.writer is not None:
                    for k, v in self.summary.val.items():
                        self.writer.add_scalar(f"val/{k}", v, self.step)
            if self.step % cfg.log.save_every == 0 or last:
                self.save(score=self.summary.val.get("photometric"))
            if out_of_time:
                bar.write(f"time budget of {cfg.optim.max_minutes} min reached at step {self.step}")
                break
        bar.close()
        self.summary.steps_done = self.step
        self.summary.seconds_per_step = train_time / max(timed_steps, 1)
        self.summary.best_val = self.ckpts.best_score
        self.summary.warnings = list(self.collapse.reported.values())
        if self.is_main:
            self.summary.checkpoint = str(self.ckpts.directory / "last.pt")
            self.save_previews()
            if self.writer is not None:
                self.writer.close()
        if self.distributed:
            # Tear down together, once rank 0 has written its previews (the abort a gloo rank
            # could still meet at interpreter exit is avoided by `sfm-ros train`'s os._exit).
            dist.barrier()
            dist.destroy_process_group()
        return self.summary

    def _log_step(self, stats: dict[str, float], bar: tqdm) -> None:
        cfg = self.cfg.log
        if self.step % cfg.log_every == 0 or self.step == 1:
            tgt, out, disps, masks = self._last
            for warning in self.collapse.check(disps[0], masks):
                bar.write("WARNING: " + warning)
                log.warning(warning)
            if self.writer is not None:
                for k, v in stats.items():
                    self.writer.add_scalar(f"train/{k}", v, self.step)
        if self.writer is not None and cfg.image_every and self.step % cfg.image_every == 0:
            self._log_images()

    def _log_images(self) -> None:
        tgt, out, disps, masks = self._last
        self.writer.add_image("image/target", tgt[0].float().clamp(0, 1), self.step)
        disp = disps[0][0, 0].detach().cpu().numpy()
        self.writer.add_image("depth/disparity", colorize(disp), self.step, dataformats="HWC")
        if masks is not None:
            self.writer.add_image("mask/explainability", masks[0][0, :1].detach().cpu(), self.step)
        warped = getattr(self.loss_fn, "last_warped", None)
        if warped is not None:
            self.writer.add_image("image/warped_src0", warped[0, 0].clamp(0, 1).cpu(), self.step)

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Photometric loss always; depth (median-scaled) and snippet ATE when GT exists."""
        if self.val_set is None or not self.is_main:
            return {}
        depth_net, pose_net = _unwrap(self.depth_net), _unwrap(self.pose_net)
        depth_net.eval()
        pose_net.eval()
        n = len(self.val_set)
        picks = np.unique(np.linspace(0, n - 1, min(n, self.cfg.log.val_max_snippets)).astype(int))
        photo, depth_errs, ates = [], [], []
        for i in picks:
            item = self.val_set.get(int(i))
            batch = {k: v[None].to(self.device) for k, v in item.items() if torch.is_tensor(v)}
            out = forward_snippets(depth_net, pose_net, batch["tgt"], batch["srcs"])
            disps = [d.float() for d in out.disps]
            masks = [m.float() for m in out.masks] if out.masks is not None else None
            loss, _ = self.loss_fn(
                batch["tgt"], batch["srcs"], disps, out.T_src_tgt.float(), batch["K"], masks
            )
            photo.append(loss.item())
            if "depth_m" in batch:
                gt = batch["depth_m"][0, 0].cpu().numpy()
                pred = 1.0 / disps[0][0, 0].cpu().numpy()
                valid = gt > 0
                if valid.sum() > 10:
                    pred = pred * np.median(gt[valid]) / np.median(pred[valid])
                    depth_errs.append(compute_depth_errors(gt[valid], pred[valid]))
            if "T_src_tgt" in batch:
                ates.append(_snippet_ate(batch["T_src_tgt"][0], out.T_src_tgt[0]))
        depth_net.train()
        pose_net.train()
        result = {"photometric": float(np.mean(photo))}
        if depth_errs:
            result.update({k: float(np.mean([e[k] for e in depth_errs])) for k in depth_errs[0]})
        if ates:
            result["snippet_ate"] = float(np.mean(ates))
        return result

    # ---------------------------------------------------------------- outputs
    def save(self, score: float | None = None) -> Path | None:
        """Write a versioned checkpoint (rank 0 only)."""
        if not self.is_main:
            return None
        ckpt = make_checkpoint(
            self.step,
            self.arch,
            self.cfg.to_dict(),
            self.depth_net,
            self.pose_net,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            metrics=dict(self.summary.val),
            skipped_nonfinite=self.summary.skipped_nonfinite,
        )
        return self.ckpts.save(ckpt, score=score)

    @torch.no_grad()
    def save_previews(self, count: int = 4) -> None:
        """PNG previews (input | predicted depth) of a few validation snippets."""
        dataset = self.val_set or self.train_set
        depth_net = _unwrap(self.depth_net).eval()
        for k, i in enumerate(np.linspace(0, len(dataset) - 1, count).astype(int)):
            tgt = dataset.get(int(i))["tgt"]
            disp = depth_net(tgt[None].to(self.device))[0][0, 0].float().cpu().numpy()
            image = (tgt.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            save_png(
                self.out_dir / "previews" / f"depth_{k}.png",
                np.concatenate([image, colorize(disp)], axis=0),
            )
        depth_net.train()


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def pose_statistics(T_src_tgt: torch.Tensor) -> dict[str, float]:
    """Mean translation norm and rotation angle (degrees) of predicted poses (B, S, 4, 4)."""
    t = T_src_tgt[..., :3, 3].norm(dim=-1)
    cos = (T_src_tgt[..., 0, 0] + T_src_tgt[..., 1, 1] + T_src_tgt[..., 2, 2] - 1) / 2
    angle = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))
    return {"pose/translation": float(t.mean()), "pose/rotation_deg": float(angle.mean())}


def _snippet_ate(gt_T_src_tgt: torch.Tensor, pred_T_src_tgt: torch.Tensor) -> float:
    """Legacy snippet ATE of one snippet from source-from-target poses (S, 4, 4)."""

    def positions(T_src_tgt: torch.Tensor) -> np.ndarray:
        T_tgt_frame = snippet_poses_in_target(T_src_tgt.double().cpu())
        return (torch.linalg.inv(T_tgt_frame[0]) @ T_tgt_frame)[:, :3, 3].numpy()

    value = snippet_ate(positions(gt_T_src_tgt), positions(pred_T_src_tgt))
    return float(value) if math.isfinite(value) else float("nan")

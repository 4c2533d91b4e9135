"""One GPU session (issues 9 and 10): every GPU figure, and the default model trained there.

On the lent machine (the `device` tool's `run`, repository root; nothing is installed there,
and its image has torch, numpy, OpenCV, PyYAML, tqdm, TensorBoard, Pillow and matplotlib; this
script needs no ROS message library), one command of at most ``--budget-minutes`` (about 5
minutes plus the training, which gets what is left of it):

    PYTHONPATH=. PYTHONUNBUFFERED=1 python3 benchmarks/gpu_session.py --out $OUT \
        --train-minutes 8 --budget-minutes 9

and on a CPU, a smoke run of the same steps at toy sizes (about 3 minutes, step 5's compiles
included):

    OMP_NUM_THREADS=1 python benchmarks/gpu_session.py --out runs/gpu_smoke --smoke

Steps, each written to OUT/gpu_session.json and OUT/gpu_session.md as soon as it is measured
(a run stopped by its time limit still returns what it measured):

1. environment: torch, CUDA, the GPU.
2. per frame at 128x416 on the device (frames of a held-out synthetic street): the estimator step
   of the packaged model (depth and pose networks, its 64x208 input resized from and to the
   frame), the keyframe tracker with refinement alone (multi-view depth off) and with
   multi-view depth (3 views, 16 bins; issue 9's target: both together under 3 ms on a GPU);
   p50 / p90 milliseconds after warm-up frames.
3. the warm-up: seconds per step of the online fine-tuner (`OnlineAdapter`, its defaults: the
   checkpoint's input size, replayed synthetic snippets) on a synthetic street (issue 10).
4. the default model: ``config/training/default_model.yaml`` at 128x416, starting from the
   packaged model's weights (``--init``: another checkpoint's; ``--from-scratch``: random
   ones), for ``--train-minutes`` (the synthetic sources rendered by one process per core, a
   batch of ``--batch`` snippets), its last and best checkpoints packed fp16 into
   OUT/default_gpu.pt and OUT/default_gpu_best.pt with its validation figures
   (OUT/train_log.txt), then its own estimator step and warm-up step timed as in 2 and 3.
5. issue 9's GPU target, the two parts of the tracker that run on the device: the published
   depth of a frame (`published_depth`: two sweeps and the batched refinement of the source
   views) and the keyframe refinement, each with its refinement eager as the tracker runs
   it, sync-free (``RefineConfig.sync_free``: every iteration cap, no host sync), with the
   Levenberg-Marquardt step compiled (``compile_step``), and the sync-free ones captured
   once in a CUDA graph and replayed per frame; the largest difference from eager. Before
   them, the published sweep's cost aggregation alone: step by step (PyTorch) and as one
   Triton kernel (`scanline_kernel`, what the published depth runs on CUDA). Last, so that a
   failed capture cannot spoil the other steps.

The first run (2026-12-04, an H200; benchmarks/RESULTS.md, "The first GPU session") measured
steps 2 and 3 and trained for 5.3 minutes: 4846 steps of 62 ms at batch 16, not bound by
the data (one loader process assembles a batch of 16 in 0.13 s on our CPU; eight ran). A later
session can give the whole budget to training with ``--train-only``, and more work per step
with a larger ``--batch`` (and ``--lr``).

Back on a CPU machine, measure its transfer the way the packaged model's was measured:
``python benchmarks/warmup.py --checkpoint OUT/default_gpu.pt --clip CLIP --steps 0`` (and with
``--steps 200,1000``), ``sfm-ros eval pose|depth --checkpoint OUT/default_gpu.pt ...``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from speed import cuda_graph  # benchmarks/speed.py

from sfm_ros.core.checkpoint import DEFAULT_MODEL, load_checkpoint, pack_checkpoint
from sfm_ros.core.config import load_config
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.keyframes import KeyframeConfig, KeyframeTracker, published_depth
from sfm_ros.core.models.posenet import POSE_SCALE
from sfm_ros.core.multiview import MultiViewConfig, _scanline_steps
from sfm_ros.core.online import OnlineAdapter, OnlineConfig, adapt_sequences
from sfm_ros.core.refine import (
    Reference,
    RefineConfig,
    prepare_reference,
    refine_on_device,
    to_grey,
)
from sfm_ros.core.sources import open_source
from sfm_ros.core.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "config" / "training" / "default_model.yaml"
HELD_OUT = "synthetic:street:{frames}:1000"
AFTER_TRAINING_S = 100  # validation, packing and the trained model's timings
STEP_5_S = 120  # step 5 (compiles and captures), after training unless --train-only


def environment(device: torch.device) -> dict[str, Any]:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        env |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    return env


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90))}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_estimator(checkpoint: Path, frames: list, device: torch.device, warmup: int) -> dict:
    """Milliseconds per `DepthPoseEstimator.step` (the last frames, after ``warmup``)."""
    est = DepthPoseEstimator.from_checkpoint(checkpoint, device=str(device))
    ms = []
    for i, frame in enumerate(frames):
        sync(device)
        start = time.perf_counter()
        est.step(frame.image, frame.K, frame.stamp_ns)
        sync(device)
        if i >= warmup:
            ms.append(1e3 * (time.perf_counter() - start))
    return {**percentiles(ms), "input": f"{est.height}x{est.width}", "frames": len(ms)}


def time_tracker(frames: list, outputs: list, device: torch.device, warmup: int) -> dict:
    """Milliseconds per `KeyframeTracker.track` with refinement alone and with multi-view depth
    (the network's depth and motion precomputed)."""
    results = {}
    for name, config in (
        ("refinement", KeyframeConfig(multiview=None)),
        ("refinement + multi-view depth", KeyframeConfig()),
    ):
        tracker, ms = KeyframeTracker(config, device=str(device)), []
        for i, (frame, out) in enumerate(zip(frames, outputs, strict=True)):
            sync(device)
            start = time.perf_counter()
            tracker.track(frame.image, out.depth_m, frame.K, out.T_prev_cur, fuse_depth=True)
            sync(device)
            if i >= warmup:
                ms.append(1e3 * (time.perf_counter() - start))
        results[name] = {
            **percentiles(ms),
            "frames": len(ms),
            "switches": tracker.keyframe_switches,
        }
    return results


def _image(frame, device: torch.device) -> torch.Tensor:
    """A frame's image as (1, 3, H, W) float in [0, 1] on the device."""
    img = torch.as_tensor(np.ascontiguousarray(frame.image), dtype=torch.float32)
    img = img / 255 if frame.image.dtype == np.uint8 else img
    return img.permute(2, 0, 1)[None].to(device)


def _chained(outputs: list) -> list[np.ndarray]:
    """``T_first_cam`` (4, 4) of every frame: the network's motions chained."""
    T_first_cam = [np.eye(4)]
    for out in outputs[1:]:
        T_first_cam.append(T_first_cam[-1] @ out.T_prev_cur)
    return T_first_cam


def _refinement_pairs(frames: list, outputs: list, device: torch.device, pairs: int) -> tuple:
    """The tracker's keyframe refinement inputs for frame 0 as the keyframe and frames 1..:
    its `Reference` (network depth), and per target the image (1, 3, H, W) and the initial
    ``T_tgt_ref`` (the network's motions chained), float64."""
    cfg = KeyframeConfig().refine
    depth = torch.as_tensor(outputs[0].depth_m, dtype=torch.float32, device=device)[None, None]
    K = torch.as_tensor(frames[0].K, dtype=torch.float32, device=device)[None]
    reference = prepare_reference(_image(frames[0], device), depth, K, cfg)
    targets = []
    for j, T_first_cam in list(enumerate(_chained(outputs)))[1 : pairs + 1]:
        T = torch.as_tensor(np.linalg.inv(T_first_cam), dtype=torch.float64, device=device)
        targets.append((_image(frames[j], device), T[None]))
    return reference, targets


def _variants(config: RefineConfig, device: torch.device) -> dict[str, RefineConfig]:
    """The refinement settings timed: eager as the tracker runs it (stopping once converged, a
    host sync per iteration), sync-free (every iteration cap, nothing read back), each with the
    Levenberg-Marquardt step compiled (``compile_step``); on a GPU the sync-free ones are also
    captured in a CUDA graph (the names say which)."""
    free = replace(config, sync_free=True)
    variants = {
        "eager": config,
        "eager, sync-free": free,
        "compiled step": replace(config, compile_step=True),
        "compiled step, sync-free": replace(free, compile_step=True),
    }
    if device.type == "cuda":
        variants["CUDA graph, sync-free"] = free
        variants["CUDA graph, compiled step, sync-free"] = replace(free, compile_step=True)
    return variants


def _time_variants(
    runs: dict[str, Callable[..., torch.Tensor]],
    inputs: list[tuple[torch.Tensor, ...]],
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """p50 / p90 ms of each run over the inputs (after one untimed pass, which also compiles
    and captures: its first call's seconds), and its largest difference from the first run's
    outputs relative to their magnitude (at least 1e-3)."""
    results: dict[str, Any] = {"inputs": len(inputs), "repeats": repeats}
    first: list[torch.Tensor] = []
    for name, make in runs.items():
        try:
            start = time.perf_counter()
            run = make()
            outs = [run(*inputs[0])]
            sync(device)
            setup_s = time.perf_counter() - start
            outs += [run(*x) for x in inputs[1:]]
            first = first or outs
            diff = max(
                float(((o - f).abs() / f.abs().clamp(min=1e-3)).nan_to_num().max())
                for o, f in zip(outs, first, strict=True)
            )
            ms = []
            for _ in range(repeats):
                for x in inputs:
                    sync(device)
                    start = time.perf_counter()
                    run(*x)
                    sync(device)
                    ms.append(1e3 * (time.perf_counter() - start))
            results[name] = {
                **percentiles(ms),
                "first_call_s": setup_s,
                "max_relative_difference": diff,
            }
        except Exception as exc:  # noqa: BLE001 - reported; the other variants still run
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {name}: {json.dumps(results[name])}", flush=True)
    return results


def _make_run(
    run: Callable[..., torch.Tensor], name: str, example: tuple[torch.Tensor, ...]
) -> Callable[[], Callable[..., torch.Tensor]]:
    """A maker of ``run``, captured in a CUDA graph when the variant's name says so (its
    output copied out of the graph's buffer, which the next replay overwrites)."""
    if not name.startswith("CUDA graph"):
        return lambda: run

    def make() -> Callable[..., torch.Tensor]:
        replay = cuda_graph(run, *example)
        return lambda *inputs: replay(*inputs).clone()

    return make


def time_refinement(
    frames: list, outputs: list, device: torch.device, repeats: int, pairs: int = 6
) -> dict:
    """Milliseconds per keyframe refinement (`refine_on_device`, the tracker's `RefineConfig`,
    batch 1, 128x416) in each of `_variants`; the largest pose difference from eager."""
    reference, targets = _refinement_pairs(frames, outputs, device, pairs)
    runs = {}
    for name, config in _variants(KeyframeConfig().refine, device).items():
        run = partial(_refined_pose, reference, config=config)
        runs[name] = _make_run(run, name, targets[0])
    return _time_variants(runs, targets, device, repeats)


def _refined_pose(
    reference: Reference, img: torch.Tensor, T: torch.Tensor, config: RefineConfig
) -> torch.Tensor:
    return refine_on_device(reference, img, T, config)[1]["T_tgt_ref"]


def time_published_depth(
    frames: list, outputs: list, device: torch.device, repeats: int, views: int = 3
) -> dict:
    """Milliseconds per frame of the published multi-view depth (`published_depth`: a coarse
    sweep, the source views' poses refined as one batch, the sweep; the tracker's config,
    128x416) on frames ``views``.. with the ``views`` frames before each as sources at the
    network's chained poses, its refinement in each of `_variants`; the largest relative depth
    difference from eager."""
    K = torch.as_tensor(frames[0].K, dtype=torch.float32, device=device)[None]
    greys = [to_grey(_image(frame, device)) for frame in frames]
    T_world = _chained(outputs)
    inputs = []
    for j in range(views, len(greys)):
        T = np.stack([np.linalg.inv(T_world[i]) @ T_world[j] for i in range(j - views, j)])
        depth = torch.as_tensor(outputs[j].depth_m, dtype=torch.float32, device=device)
        src = torch.stack(greys[j - views : j], 1)
        T_src = torch.as_tensor(T, dtype=torch.float32, device=device)[None]
        inputs.append((greys[j], depth[None, None], src, T_src))
    base, runs = KeyframeConfig(), {}
    for name, refine in _variants(base.refine, device).items():
        config = replace(base, refine=refine)
        run = partial(_published, K=K, config=config)
        runs[name] = _make_run(run, name, inputs[0])
    return _time_variants(runs, inputs, device, repeats)


def time_aggregation(device: torch.device, repeats: int, inputs: int = 4) -> dict:
    """Milliseconds per semi-global aggregation of a cost volume the size of the published
    sweep's (16 bins, 64x208; the tracker's penalties; random costs): step by step in PyTorch
    (`multiview._scanline_steps`) and, on CUDA, as one Triton kernel (`scanline_kernel`), each
    also replayed from a CUDA graph; the largest difference from the steps."""
    cfg: MultiViewConfig = KeyframeConfig().multiview
    g = torch.Generator().manual_seed(0)
    volumes = [
        (
            torch.rand(1, cfg.num_bins, 64, 208, generator=g).to(device),
            torch.rand(1, 1, 64, 208, generator=g).to(device),
        )
        for _ in range(inputs)
    ]
    steps = partial(_scanline_steps, cfg=cfg)
    runs = {"steps": steps}
    if device.type == "cuda":
        from sfm_ros.core.scanline_kernel import aggregate  # needs Triton

        kernel = partial(
            aggregate,
            step_penalty=cfg.step_penalty,
            jump_penalty=cfg.jump_penalty,
            edge_contrast=cfg.edge_contrast,
        )
        runs |= {"CUDA graph, steps": steps, "one kernel": kernel, "CUDA graph, one kernel": kernel}
    makers = {name: _make_run(run, name, volumes[0]) for name, run in runs.items()}
    return _time_variants(makers, volumes, device, repeats)


def _published(
    grey: torch.Tensor,
    depth: torch.Tensor,
    src: torch.Tensor,
    T: torch.Tensor,
    K: torch.Tensor,
    config: KeyframeConfig,
) -> torch.Tensor:
    return published_depth(grey, depth, K, src, T, config).depth_m


def time_warmup(checkpoint: Path, device: torch.device, steps: int, frames: int) -> dict:
    """Seconds per step of the online fine-tuner with its defaults, over ``steps`` steps after
    15 that render the replayed sequences (cached) and warm the device up. The forgetting
    check's memory frames are off: they cost start-up time, not step time."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = OnlineConfig().replace(
            checkpoint=str(checkpoint),
            out_dir=tmp,
            resume=False,
            device=str(device),
            threads=0,
            memory_domains="",
        )
        adapter = OnlineAdapter(cfg)
        seq = open_source(
            HELD_OUT.format(frames=frames), height=adapter.height, width=adapter.width
        )
        adapt_sequences(adapter, seq, max_steps=15, progress=False)
        first_steps, first_s = adapter.stats.steps, adapter.stats.train_time_s
        adapt_sequences(adapter, seq, max_steps=steps, progress=False)
        timed = adapter.stats.steps - first_steps
    return {
        "seconds_per_step": (adapter.stats.train_time_s - first_s) / max(timed, 1),
        "steps": timed,
        "input": f"{adapter.height}x{adapter.width}",
    }


def train_default(
    out: Path,
    minutes: float,
    deadline: float | None,
    batch: int,
    lr: float,
    device: torch.device,
    smoke: bool,
    init: Path | None,
) -> dict:
    """The default model's recipe for ``minutes`` (fewer if training would end past
    ``deadline``, a `time.monotonic` value); its last and best (validation photometric error)
    checkpoints packed in ``out``. With `init`, the networks start from that checkpoint (by
    default the packaged model: this recipe's metric log-depth output, trained from
    `log_depth_start.py`'s rewrite of the former one); without, from random weights."""
    run_dir = Path(tempfile.mkdtemp(prefix="default_gpu_"))
    overrides = [
        f"log.out_dir={run_dir}", f"optim.max_minutes={minutes}", f"optim.batch_size={batch}",
        f"optim.lr={lr}",
        f"device={device}", "data.render_workers=0", "data.num_workers=8", "log.val_every=500",
        "log.save_every=500",
    ]  # fmt: skip
    if init is not None:
        arch = load_checkpoint(init)["arch"]
        scale = arch.get("pose_kwargs", {}).get("translation_scale", POSE_SCALE)
        overrides += [f"model.init_from={init}", f"model.translation_scale={scale}"]
    if smoke:  # toy sizes: the same steps, seconds instead of minutes
        overrides += [
            "data.height=32", "data.width=96", "data.train=[synthetic:street:6:0:random,"
            "synthetic:rural:6:1:random]", "data.val=[synthetic:field:6:500:random]",
            "log.val_every=5", "log.save_every=5", "log.image_every=0", "data.num_workers=0",
        ]  # fmt: skip
    cfg = load_config(RECIPE, overrides)
    start = time.perf_counter()
    trainer = Trainer(cfg, progress=False)
    setup_s = time.perf_counter() - start
    if deadline is not None:
        left = (deadline - time.monotonic()) / 60
        trainer.cfg.optim.max_minutes = min(minutes, max(0.5, left))
    summary = trainer.run()
    packed = pack_checkpoint(summary.checkpoint, out / "default_gpu.pt")
    best = Path(summary.checkpoint).with_name("best.pt")
    best_packed = pack_checkpoint(best, out / "default_gpu_best.pt") if best.exists() else None
    log = out / "train_log.txt"
    log.write_text(
        f"overrides: {' '.join(overrides)}\nsetup (rendering) {setup_s:.0f} s\n"
        f"trained {trainer.cfg.optim.max_minutes:.2f} min, best validation {summary.best_val}\n"
        f"steps {summary.steps_done}, {summary.seconds_per_step:.4f} s/step, last loss "
        f"{summary.last_loss:.4f}, skipped {summary.skipped_nonfinite}\nvalidation {summary.val}\n"
        f"warnings {summary.warnings}\n"
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "checkpoint": str(packed),
        "best_checkpoint": None if best_packed is None else str(best_packed),
        "mb": packed.stat().st_size / 1e6,
        "minutes": trainer.cfg.optim.max_minutes,
        "best_validation_photometric": summary.best_val,
        "setup_s": setup_s,
        "steps": summary.steps_done,
        "seconds_per_step": summary.seconds_per_step,
        "validation": summary.val,
        "warnings": summary.warnings,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Command: `{results['command']}`", "", f"Environment: {results['environment']}", ""]
    for key, value in results.items():
        if key not in ("command", "environment"):
            lines.append(f"- {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the results and the model")
    parser.add_argument("--train-minutes", type=float, default=5.0)
    parser.add_argument(
        "--budget-minutes",
        type=float,
        help="the whole run's wall-clock budget: training stops early enough for the steps "
        f"after it (about {AFTER_TRAINING_S} s, and {STEP_5_S} s for step 5) to finish inside it",
    )
    parser.add_argument("--batch", type=int, default=16, help="training snippets per step")
    parser.add_argument(
        "--lr", type=float, default=2e-4, help="the recipe's 1e-4 is for its batch of 4"
    )
    parser.add_argument("--frames", type=int, default=40, help="timed frames per measurement")
    parser.add_argument("--warmup-steps", type=int, default=60, help="timed fine-tuner steps")
    parser.add_argument("--smoke", action="store_true", help="CPU smoke run at toy sizes")
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="train the recipe from random weights (default: from the packaged model's)",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=DEFAULT_MODEL,
        help="checkpoint the training starts from (default: the packaged model)",
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="skip the timings (steps 2 and 3, and the trained model's): all the budget trains",
    )
    args = parser.parse_args()
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed input sizes throughout
    deadline = None
    if args.budget_minutes is not None:
        after = AFTER_TRAINING_S + (0 if args.train_only else STEP_5_S)
        deadline = started + 60 * args.budget_minutes - after
    frames_n, warmup_steps, minutes = args.frames, args.warmup_steps, args.train_minutes
    if args.smoke:
        frames_n, warmup_steps, minutes = 8, 3, 0.2
    results: dict[str, Any] = {
        "command": "python " + " ".join(__import__("sys").argv),
        "environment": environment(device),
    }

    def record(key: str, measure: Callable[[], Any]) -> Any:
        """Run one step and write what it measured, or its error (the next steps still run:
        a device session is too short to lose the rest to one failure)."""
        try:
            value = measure()
        except Exception as exc:  # noqa: BLE001 - reported, and the session goes on
            traceback.print_exc()
            value = {"error": f"{type(exc).__name__}: {exc}"}
        results[key] = value
        (out / "gpu_session.json").write_text(json.dumps(results, indent=2))
        (out / "gpu_session.md").write_text(markdown(results))
        print(f"{key}: {json.dumps(value)}", flush=True)
        return value

    init = None if args.from_scratch else args.init
    warm = 5
    if not args.train_only:
        (seq,) = open_source(HELD_OUT.format(frames=frames_n + 5), height=128, width=416)
        frames = [seq.load(i) for i in range(len(seq))]
        record(
            "estimator step, packaged model",
            lambda: time_estimator(DEFAULT_MODEL, frames, device, warm),
        )
        est = DepthPoseEstimator.from_checkpoint(DEFAULT_MODEL, device=str(device))
        outputs = [est.step(f.image, f.K, f.stamp_ns) for f in frames]
        record("tracker per frame at 128x416", lambda: time_tracker(frames, outputs, device, warm))
        record("warm-up step", lambda: time_warmup(DEFAULT_MODEL, device, warmup_steps, 30))
    trained = record(
        "default model trained here",
        lambda: train_default(
            out, minutes, deadline, args.batch, args.lr, device, args.smoke, init
        ),
    )
    if "checkpoint" in trained and not args.train_only:
        model = Path(trained["checkpoint"])
        record("estimator step, trained model", lambda: time_estimator(model, frames, device, warm))
        record("warm-up step, trained model", lambda: time_warmup(model, device, warmup_steps, 30))
    if not args.train_only:  # last: a failed CUDA graph capture cannot spoil the other steps
        record(
            "cost aggregation at 64x208, 16 bins",
            lambda: time_aggregation(device, 1 if args.smoke else 10),
        )
        record(
            "published depth at 128x416",
            lambda: time_published_depth(frames, outputs, device, 1 if args.smoke else 3),
        )
        record(
            "keyframe refinement at 128x416",
            lambda: time_refinement(frames, outputs, device, 2 if args.smoke else 10),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

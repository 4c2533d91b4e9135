"""Issue-5 speed benchmark: where a frame's time goes, which inference backend is fastest, how
fast training runs, and what a fine-tuner training beside the node does to its latency.

    python benchmarks/speed.py --quick --out runs/speed     # CPU smoke run, a few minutes
    python benchmarks/speed.py --out runs/speed             # both sizes, CUDA when present

Networks have random weights (checkpoints made on the fly; speed does not depend on training).
Four measurements, each per device (cpu, and cuda when available):

- pipeline: `DepthOdometryPipeline.process` on camera-size image messages, split into message
  conversion, preprocessing, depth net, pose net, upsampling to camera resolution (+ inversion
  and copy to numpy) and output building. Convert/outputs/total come from the pipeline's own
  `timings`; the middle stages are timed separately with the estimator's networks; `outside`
  is each frame's time minus its own network forwards (timed by wrapping the networks).
- networks: depth + pose forward at batch 1 for fp32, channels_last, fp16, torch.compile,
  CUDA graphs and onnxruntime (the variants the device supports).
- training: optimisation steps per second of `forward_snippets` + `ViewSynthesisLoss` + Adam.
- contention: pipeline latency p50/p99 alone and with a training thread on the same device.

Results: OUT/speed.json and OUT/speed.md. Times are milliseconds (p50 unless noted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core.checkpoint import (
    atomic_torch_save,
    build_networks,
    load_checkpoint,
    make_checkpoint,
    networks_from_checkpoint,
)
from sfm_ros.core.export import export_onnx
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.losses import LossConfig, ViewSynthesisLoss
from sfm_ros.core.onnx_backend import (
    OnnxUnavailableError,
    default_providers,
    load_onnx_networks,
    require,
)
from sfm_ros.core.train import forward_snippets
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.frame_pipeline import DepthOdometryPipeline

TYPES = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
ARCHS = {  # the two recipes: default (resnet18, no mask) and sfmlearner (dispnet, masks)
    "resnet18": {"depth_net": "resnet18", "use_mask": False},
    "dispnet": {"depth_net": "dispnet", "use_mask": True},
}
STAGES = ("convert", "preprocess", "depth", "pose", "upsample", "outputs")
PARTS = ("pipeline", "networks", "training", "contention")


# ---------------------------------------------------------------------------- helpers
def make_arch(name: str, height: int, width: int) -> dict[str, Any]:
    return {
        **ARCHS[name], "depth_kwargs": {}, "snippet_length": 3, "rotation": "euler",
        "height": height, "width": width,
    }  # fmt: skip


def random_checkpoint(arch: dict[str, Any], folder: Path) -> Path:
    depth_net, pose_net = build_networks(arch)
    path = folder / f"{arch['depth_net']}_{arch['height']}x{arch['width']}.pt"
    atomic_torch_save(make_checkpoint(0, arch, {}, depth_net, pose_net), path)
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """Result of `fn(*args)` and its wall time in ms (the device synchronised before and after)."""
    sync(device)
    t0 = time.perf_counter()
    out = fn(*args)
    sync(device)
    return out, 1e3 * (time.perf_counter() - t0)


def p50(values: list[float]) -> float:
    return float(np.percentile(values, 50)) if values else float("nan")


def camera_frames(height: int, width: int, count: int = 4) -> list[np.ndarray]:
    """Smooth textured RGB frames (H, W, 3) uint8 that shift a little from one to the next."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    return [np.ascontiguousarray(big[i : i + height, i : i + width]) for i in range(count)]


def camera_K(height: int, width: int) -> np.ndarray:
    f = 0.58 * width  # KITTI-like field of view
    return np.array([[f, 0.0, width / 2 - 0.5], [0.0, f, height / 2 - 0.5], [0.0, 0.0, 1.0]])


class Messages:
    """Image messages of a synthetic camera stream (10 Hz stamps) and its CameraInfo."""

    def __init__(self, height: int, width: int) -> None:
        self.frames = camera_frames(height, width)
        self.K = camera_K(height, width)
        hdr = cv.header(TYPES, 0, "camera")
        self.info = cv.camera_info_msg(TYPES, self.K, width, height, hdr)
        self.i = 0

    def next(self) -> Any:
        self.i += 1
        hdr = cv.header(TYPES, self.i * 100_000_000, "camera")
        return cv.numpy_to_image(TYPES, self.frames[self.i % len(self.frames)], "rgb8", hdr)


def make_pipeline(est: DepthPoseEstimator, msgs: Messages) -> DepthOdometryPipeline:
    cfg = PipelineConfig(max_time_gap_s=1e9)  # default outputs: depth, colormap, points, odom
    pipe = DepthOdometryPipeline(cfg, TYPES, estimator=est)
    pipe.on_camera_info(msgs.info)
    return pipe


# ---------------------------------------------------------------------------- pipeline
class TimedNet:
    """Wraps a network to add each forward's wall time (ms, device synchronised) to `times`."""

    def __init__(self, net: Callable[..., Any], device: torch.device, times: list[float]) -> None:
        self.net, self.device, self.times = net, device, times

    def __call__(self, *args: Any) -> Any:
        out, ms = timed(self.device, self.net, *args)
        self.times.append(ms)
        return out


def bench_pipeline(est: DepthPoseEstimator, camera: tuple[int, int], frames: int) -> dict:
    """p50 ms per stage of the full pipeline on camera-size messages (3 warm-up frames).

    `outside` is each frame's pipeline time minus the time of its own network forwards (the
    issue-5 CPU target: at most 10 % of the frame); `outside_pct` is its p50 share of the frame.
    """
    msgs = Messages(*camera)
    pipe = make_pipeline(est, msgs)
    net_ms: list[float] = []
    nets = est._nets
    est._nets = (TimedNet(nets[0], est.device, net_ms), TimedNet(nets[1], est.device, net_ms))
    times: dict[str, list[float]] = {
        k: [] for k in ("convert", "inference", "outputs", "total", "outside")
    }
    shares = []
    try:
        for i in range(frames + 3):
            net_ms.clear()
            result = pipe.process(msgs.next())
            if i >= 3:
                for k in ("convert", "inference", "outputs"):
                    times[k].append(1e3 * result.timings[k])
                total = 1e3 * sum(result.timings.values())
                times["total"].append(total)
                times["outside"].append(total - sum(net_ms))
                shares.append(100.0 * times["outside"][-1] / total)
    finally:
        est._nets = nets
    row = {k: p50(v) for k, v in times.items()} | {"outside_pct": p50(shares)}
    return row | estimator_stages(est, msgs, frames)


def estimator_stages(est: DepthPoseEstimator, msgs: Messages, frames: int) -> dict[str, float]:
    """The estimator's `step` split into its stages, each timed on its own (p50 ms).

    Uses the estimator's internals on purpose: the library stays free of timing code.
    """
    device, image, K = est.device, msgs.frames[0], msgs.K
    shape = image.shape[:2]
    depth_net, pose_net = est._nets
    times: dict[str, list[float]] = {k: [] for k in ("preprocess", "depth", "pose", "upsample")}
    with torch.inference_mode():
        history = [est._prepare(image, K).image] * est.snippet_length
        for i in range(frames + 3):
            prep, t_prep = timed(device, est._prepare, image, K)
            disp, t_depth = timed(device, depth_net, prep.image)
            history = [*history[1:], prep.image]
            _, t_pose = timed(device, est._snippet_poses, pose_net, history)
            _, t_up = timed(device, est._depth_from_disp, disp[0], prep, shape)
            if i >= 3:
                for k, t in zip(times, (t_prep, t_depth, t_pose, t_up), strict=True):
                    times[k].append(t)
    return {k: p50(v) for k, v in times.items()}


# ---------------------------------------------------------------------------- networks
def cuda_graph(fn: Callable[..., Any], *examples: torch.Tensor) -> Callable[..., Any]:
    """`fn` captured in a CUDA graph for inputs shaped like `examples` (outputs are reused)."""
    static = [x.clone() for x in examples]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*static)

    def run(*xs: torch.Tensor) -> Any:
        for s, x in zip(static, xs, strict=True):
            s.copy_(x)
        graph.replay()
        return out

    return run


def network_variants(
    ckpt: Path, export_dir: Path | None, device: torch.device, quick: bool
) -> dict[str, Callable[[], tuple[Callable, Callable, torch.dtype, bool, str]]]:
    """Variant name -> factory of (depth_fn, pose_fn, input dtype, channels_last, mode)."""

    def torch_nets(dtype: torch.dtype, channels_last: bool, mode: str = "") -> tuple:
        depth_net, pose_net, _ = networks_from_checkpoint(ckpt)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        nets = [n.to(device, dtype).to(memory_format=fmt).eval() for n in (depth_net, pose_net)]
        if mode == "compile":
            nets = [torch.compile(n) for n in nets]
        return nets[0], nets[1], dtype, channels_last, mode

    def ort_nets(provider: Any) -> tuple:
        fallback = [] if provider == "CPUExecutionProvider" else ["CPUExecutionProvider"]
        depth_net, pose_net, _ = load_onnx_networks(export_dir, [provider, *fallback])
        return depth_net, pose_net, torch.float32, False, ""

    cuda = device.type == "cuda"
    f16 = torch.float16
    variants: dict[str, Callable[[], tuple]] = {
        "torch fp32": lambda: torch_nets(torch.float32, False),
        "torch fp32 channels_last": lambda: torch_nets(torch.float32, True),
    }
    if cuda:
        variants["torch fp16 channels_last"] = lambda: torch_nets(f16, True)
        variants["torch fp16 CUDA graphs"] = lambda: torch_nets(f16, True, "graph")
        variants["torch.compile fp16"] = lambda: torch_nets(f16, True, "compile")
    elif not quick:  # compiling on a CPU takes minutes
        variants["torch.compile fp32"] = lambda: torch_nets(torch.float32, False, "compile")
    if export_dir is not None:
        providers = (
            default_providers(export_dir / "trt_cache") if cuda else ["CPUExecutionProvider"]
        )
        for provider in providers:
            name = provider[0] if isinstance(provider, tuple) else provider
            if cuda and name == "CPUExecutionProvider":
                continue
            label = "onnxruntime " + name.replace("ExecutionProvider", "")
            variants[label] = lambda p=provider: ort_nets(p)
    return variants


def bench_networks(
    ckpt: Path, export_dir: Path | None, device: torch.device, iters: int, quick: bool
) -> list[dict]:
    """Depth and pose forward p50 (ms) at batch 1 for each variant the device supports."""
    rows = []
    arch = load_checkpoint(ckpt)["arch"]
    H, W = arch["height"], arch["width"]
    for name, factory in network_variants(ckpt, export_dir, device, quick).items():
        try:
            depth_fn, pose_fn, dtype, channels_last, mode = factory()
            image = torch.rand(1, 3, H, W, device=device, dtype=dtype)
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            srcs = torch.rand(1, 2, 3, H, W, device=device, dtype=dtype)
            times: dict[str, list[float]] = {"depth_ms": [], "pose_ms": []}
            with torch.inference_mode():
                if mode == "graph":
                    depth_fn, pose_fn = (
                        cuda_graph(depth_fn, image),
                        cuda_graph(pose_fn, image, srcs),
                    )
                for i in range(iters + 3):
                    _, t_depth = timed(device, depth_fn, image)
                    _, t_pose = timed(device, pose_fn, image, srcs)
                    if i >= 3:
                        times["depth_ms"].append(t_depth)
                        times["pose_ms"].append(t_pose)
            row = {k: p50(v) for k, v in times.items()}
            rows.append({"variant": name, **row, "total_ms": row["depth_ms"] + row["pose_ms"]})
        except Exception as exc:  # a variant this platform lacks must not stop the benchmark
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
    eager = next(
        (r["total_ms"] for r in rows if r["variant"] == "torch fp32" and "total_ms" in r), None
    )
    for row in rows:
        if eager and "total_ms" in row:
            row["speedup"] = eager / row["total_ms"]
    return rows


# ---------------------------------------------------------------------------- training
class TrainLoop:
    """Optimisation steps of both networks on a fixed random batch, as a fine-tuner runs them
    (`forward_snippets`, `ViewSynthesisLoss` of the arch's recipe, Adam, AMP on CUDA)."""

    def __init__(self, arch: dict[str, Any], device: torch.device, batch: int) -> None:
        self.device, self.amp = device, device.type == "cuda"
        self.depth_net, self.pose_net = (n.to(device).train() for n in build_networks(arch))
        params = [*self.depth_net.parameters(), *self.pose_net.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        preset = "sfmlearner" if arch["use_mask"] else "monodepth2"
        self.loss_fn = ViewSynthesisLoss(LossConfig.preset(preset, use_mask=arch["use_mask"]))
        H, W = arch["height"], arch["width"]
        gen = torch.Generator().manual_seed(0)
        self.tgt = torch.rand(batch, 3, H, W, generator=gen).to(device)
        self.srcs = torch.rand(batch, 2, 3, H, W, generator=gen).to(device)
        self.K = torch.as_tensor(camera_K(H, W), dtype=torch.float32).expand(batch, 3, 3).to(device)

    def step(self) -> float:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = forward_snippets(self.depth_net, self.pose_net, self.tgt, self.srcs)
        disps = [d.float() for d in out.disps]
        masks = [m.float() for m in out.masks] if out.masks is not None else None
        loss, _ = self.loss_fn(self.tgt, self.srcs, disps, out.T_src_tgt.float(), self.K, masks)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())


def bench_training(arch: dict[str, Any], device: torch.device, batch: int, steps: int) -> dict:
    loop = TrainLoop(arch, device, batch)
    loop.step()  # warm-up (allocations, cuDNN autotuning)
    _, ms = timed(device, lambda: [loop.step() for _ in range(steps)])
    s_per_step = ms / 1e3 / steps
    return {
        "batch": batch,
        "amp": loop.amp,
        "s_per_step": s_per_step,
        "snippets_per_s": batch / s_per_step,
    }


# ---------------------------------------------------------------------------- contention
def bench_contention(
    est: DepthPoseEstimator, arch: dict[str, Any], camera: tuple[int, int], frames: int, batch: int
) -> dict:
    """Pipeline latency p50/p99 (ms) alone and with a training thread on the same device."""
    msgs = Messages(*camera)
    pipe = make_pipeline(est, msgs)

    def latencies() -> list[float]:
        out = []
        for _ in range(frames):
            result = pipe.process(msgs.next())
            out.append(1e3 * sum(result.timings.values()))
        return out

    for _ in range(3):  # warm-up
        pipe.process(msgs.next())
    alone = latencies()
    loop = TrainLoop(arch, est.device, batch)
    loop.step()
    stop, steps = threading.Event(), [0]

    def train() -> None:
        cuda = est.device.type == "cuda"  # the fine-tuner gets its own CUDA stream
        with torch.cuda.stream(torch.cuda.Stream(est.device)) if cuda else contextlib.nullcontext():
            while not stop.is_set():
                loop.step()
                steps[0] += 1

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    t0 = time.perf_counter()
    busy = latencies()
    elapsed = time.perf_counter() - t0
    stop.set()
    worker.join()
    return {
        "p50_alone": p50(alone),
        "p99_alone": float(np.percentile(alone, 99)),
        "p50_training": p50(busy),
        "p99_training": float(np.percentile(busy, 99)),
        "train_steps_per_s": steps[0] / elapsed,
        "train_batch": batch,
    }


# ---------------------------------------------------------------------------- main
def backends(
    ckpt: Path, export_dir: Path | None, device: torch.device
) -> dict[str, Callable[[], DepthPoseEstimator]]:
    """Estimator backend name -> factory, for the pipeline benchmark."""
    dev = str(device)
    out = {"torch fp32": lambda: DepthPoseEstimator.from_checkpoint(ckpt, device=dev)}
    if device.type == "cuda":
        out["torch fp16"] = lambda: DepthPoseEstimator.from_checkpoint(ckpt, device=dev, fp16=True)
    if export_dir is not None:
        providers = None if device.type == "cuda" else ["CPUExecutionProvider"]
        out["onnxruntime"] = lambda: DepthPoseEstimator.from_onnx(export_dir, providers, device=dev)
    return out


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "camera": args.camera,
        "quick": args.quick,
    }
    try:
        ort = require("onnxruntime")
        env["onnxruntime"] = f"{ort.__version__} {ort.get_available_providers()}"
    except OnnxUnavailableError:
        env["onnxruntime"] = None
    return env


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    key = ["device", "net", "size"]
    parts = [
        "# sfm_ros speed benchmark",
        f"torch {env['torch']} ({env['torch_threads']} threads), GPU: {env['gpu']}, "
        f"onnxruntime: {env['onnxruntime']}; camera {env['camera']}; quick: {env['quick']}. "
        "Milliseconds, p50 unless noted.",
        "## Pipeline per frame (camera-size message in, messages out)",
        "depth, pose, upsample (+ inversion, copy to numpy) are timed on their own; "
        "total is the pipeline's; outside = total minus that frame's own network forwards, "
        "outside_pct its share of the frame (the CPU target is at most 10 %).",
        table(results["pipeline"], [*key, "backend", *STAGES, "total", "outside", "outside_pct"]),
        "## Networks alone (batch 1)",
        "speedup: eager fp32 PyTorch time / this variant's (same networks, same device).",
        table(
            results["networks"],
            [*key, "variant", "depth_ms", "pose_ms", "total_ms", "speedup", "error"],
        ),
        "## Training throughput",
        table(results["training"], [*key, "batch", "amp", "s_per_step", "snippets_per_s"]),
        "## Pipeline latency with a training thread on the same device",
        table(
            results["contention"],
            [
                *key,
                "backend",
                "p50_alone",
                "p99_alone",
                "p50_training",
                "p99_training",
                "train_steps_per_s",
                "train_batch",
            ],
        ),  # fmt: skip
    ]
    return "\n\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/speed", help="folder for speed.json, speed.md")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: one size, few frames")
    parser.add_argument("--devices", nargs="+", help="default: cpu, and cuda when available")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--sizes", nargs="+", help="network HxW (default 128x416 192x640)")
    parser.add_argument("--camera", default="375x1242", help="camera image HxW")
    parser.add_argument("--frames", type=int, help="timed frames / iterations per measurement")
    parser.add_argument("--batch", type=int, help="training batch size")
    parser.add_argument("--train-steps", type=int, help="timed training steps")
    parser.add_argument("--no-onnx", action="store_true", help="skip onnxruntime")
    parser.add_argument(
        "--parts", nargs="+", default=list(PARTS), choices=list(PARTS), help="what to measure"
    )
    args = parser.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sizes = args.sizes or (["128x416"] if args.quick else ["128x416", "192x640"])
    frames = args.frames or (5 if args.quick else 50)
    batch = args.batch or (2 if args.quick else 4)
    train_steps = args.train_steps or (2 if args.quick else 10)
    camera = parse_size(args.camera)
    use_onnx = not args.no_onnx
    if use_onnx:
        try:
            require("onnx")
            require("onnxruntime")
        except OnnxUnavailableError as exc:
            print(f"skipping onnxruntime: {exc}")
            use_onnx = False

    results: dict[str, Any] = {"environment": environment(args)}
    for name in PARTS:
        results[name] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for arch_name in args.archs:
                arch = make_arch(arch_name, *parse_size(size))
                ckpt = random_checkpoint(arch, Path(tmp))
                export_dir = None
                if use_onnx:
                    export_dir = Path(tmp) / ckpt.stem
                    export_onnx(ckpt, export_dir)
                for device in map(torch.device, devices):
                    key = {"device": device.type, "net": arch_name, "size": size}
                    pipeline_backends = backends(ckpt, export_dir, device)
                    for backend, make in (
                        pipeline_backends.items() if "pipeline" in args.parts else ()
                    ):
                        est = make()
                        if est.backend != "torch":  # name the execution provider that runs it
                            backend = est.backend
                        row = {**key, "backend": backend, **bench_pipeline(est, camera, frames)}
                        results["pipeline"].append(row)
                        print(json.dumps(row, default=fmt), flush=True)
                    if "networks" in args.parts:
                        for row in bench_networks(ckpt, export_dir, device, frames, args.quick):
                            results["networks"].append({**key, **row})
                            print(json.dumps(results["networks"][-1], default=fmt), flush=True)
                    if "training" in args.parts:
                        row = {**key, **bench_training(arch, device, batch, train_steps)}
                        results["training"].append(row)
                        print(json.dumps(row, default=fmt), flush=True)
        # Contention: the first arch at the first size, the default torch backend.
        arch = make_arch(args.archs[0], *parse_size(sizes[0]))
        ckpt = random_checkpoint(arch, Path(tmp))
        for device in map(torch.device, devices if "contention" in args.parts else []):
            est = DepthPoseEstimator.from_checkpoint(ckpt, device=str(device))
            row = {
                "device": device.type, "net": args.archs[0], "size": sizes[0],
                "backend": "torch fp32", **bench_contention(est, arch, camera, 2 * frames, batch),
            }  # fmt: skip
            results["contention"].append(row)
            print(json.dumps(row, default=fmt), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "speed.md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {out / 'speed.json'} and {out / 'speed.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

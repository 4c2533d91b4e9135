"""Issue-10 speed check: the node's per-frame estimator step against SfmLearner-Pytorch's
inference (DispNetS + PoseExpNet), side by side, interleaved frame by frame, same input size.

The reference networks are imported from a copy of SfmLearner-Pytorch that you fetch yourself
(https://github.com/ClementPinard/SfmLearner-Pytorch, MIT); nothing of it is in this repository:

    git clone https://github.com/ClementPinard/SfmLearner-Pytorch /tmp/sfmlearner
    OMP_NUM_THREADS=1 python benchmarks/versus_sfmlearner.py --reference /tmp/sfmlearner

One frame of each side, camera image (uint8 RGB at camera size) in, metric depth at camera size
and the newest relative pose out:
- reference: resize the new frame to the network size (bilinear with antialiasing, like its
  `skimage` resize but faster) and normalise it once, DispNetS on it, PoseExpNet on the last
  three prepared frames (target in the middle, as its `test_pose.py`), 6-DoF vectors to
  matrices (`pose_vec2mat`), upsample the disparity to the camera size and invert it.
- ours: `DepthPoseEstimator.step` with the packaged model's networks built at the same size
  (random weights: speed does not depend on them), on PyTorch and, when installed, onnxruntime.
The order of the two alternates each frame so that neither always runs on a warm cache.
Prints a Markdown table of p50 / p90 milliseconds and the speed-up; `--json` writes them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from speed import camera_frames, camera_K  # benchmarks/speed.py: the same test frames

from sfm_ros.core.camera import Camera
from sfm_ros.core.checkpoint import (
    atomic_torch_save,
    build_networks,
    load_checkpoint,
    make_checkpoint,
    resolve_checkpoint,
)
from sfm_ros.core.inference import DepthPoseEstimator


def reference_step(reference: Path, height: int, width: int) -> Callable[[np.ndarray], None]:
    """SfmLearner-Pytorch's inference on a stream: each frame is prepared once and kept for
    the 3-frame snippet of the pose network, like the node keeps its history (random weights)."""
    sys.path.insert(0, str(reference))
    models = importlib.import_module("models")
    pose_vec2mat = importlib.import_module("inverse_warp").pose_vec2mat
    disp_net = models.DispNetS().eval()
    pose_net = models.PoseExpNet(nb_ref_imgs=2, output_exp=False).eval()
    disp_net.init_weights()
    pose_net.init_weights()

    def prepare(image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, (height, width), mode="bilinear", antialias=True)
        return (x - 0.5) / 0.5

    history: deque[torch.Tensor] = deque(maxlen=3)

    @torch.inference_mode()
    def step(image: np.ndarray) -> None:
        history.append(prepare(image))
        while len(history) < 3:
            history.appendleft(history[0])
        disp = disp_net(history[-1])
        _, poses = pose_net(history[1], [history[0], history[2]])
        pose_vec2mat(poses[0], rotation_mode="euler")
        full = F.interpolate(disp, image.shape[:2], mode="bilinear", align_corners=False)
        (1.0 / full)[0, 0].numpy()

    return step


def our_estimator(folder: Path, height: int, width: int, onnx: bool) -> DepthPoseEstimator:
    """The packaged model's networks at `height` x `width` (random weights), torch or ONNX."""
    arch = {**load_checkpoint(resolve_checkpoint(""))["arch"], "height": height, "width": width}
    depth_net, pose_net = build_networks(arch)
    path = folder / "model.pt"
    atomic_torch_save(make_checkpoint(0, arch, {}, depth_net, pose_net), path)
    if not onnx:
        return DepthPoseEstimator.load(path, device="cpu")
    from sfm_ros.core.export import export_onnx

    export_onnx(path, folder / "onnx")
    return DepthPoseEstimator.load(folder / "onnx", device="cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="SfmLearner-Pytorch copy")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="128x416", help="network input HxW")
    parser.add_argument("--camera", default="375x1242", help="camera image HxW")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    cam_h, cam_w = (int(v) for v in args.camera.split("x"))
    if not (args.reference / "models" / "DispNetS.py").is_file():
        parser.error(f"{args.reference} has no models/DispNetS.py: not SfmLearner-Pytorch")

    frames = camera_frames(cam_h, cam_w, 8)
    camera = Camera(camera_K(cam_h, cam_w), cam_w, cam_h)
    sides: dict[str, Callable[[int], None]] = {}
    ref = reference_step(args.reference, height, width)
    sides["SfmLearner-Pytorch (DispNetS + PoseExpNet)"] = lambda i: ref(frames[i % len(frames)])
    with tempfile.TemporaryDirectory() as tmp:
        backends = [False]
        if importlib.util.find_spec("onnxruntime") is not None:
            backends.append(True)
        for onnx in backends:
            est = our_estimator(Path(tmp) / str(onnx), height, width, onnx)
            name = f"sfm_ros {est.arch['depth_net']} ({est.backend})"
            sides[name] = lambda i, est=est: est.step(frames[i % len(frames)], camera)
        times: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for i in range(args.frames + 5):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                start = time.perf_counter()
                sides[name](i)
                if i >= 5:
                    times[name].append(1e3 * (time.perf_counter() - start))
    reference_ms = statistics.median(times[names[0]])
    rows = {
        name: {
            "p50_ms": statistics.median(t),
            "p90_ms": float(np.percentile(t, 90)),
            "speedup": reference_ms / statistics.median(t),
        }
        for name, t in times.items()
    }
    print(
        f"{height}x{width} input, {cam_h}x{cam_w} camera, {torch.get_num_threads()} thread(s), "
        f"{args.frames} frames\n"
    )
    print("| estimator step | p50 ms | p90 ms | speed-up |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['speedup']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

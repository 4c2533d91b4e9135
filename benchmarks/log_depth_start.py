"""A disparity-output checkpoint rewritten as a log-depth one at metric scale: a warm start.

The packaged model until 2026-12-03 predicted depth in its own free monocular units (about
1/40 of a metre on the synthetic world) through a disparity output whose near end real scenes
saturate. Training the metric, log-depth recipe (``config/training/default_model.yaml``) from
scratch needs a GPU budget; starting it from that model's weights does not, if the starting
networks already predict what they did, in metres (the packaged model since then was trained
from this rewrite; `git show 132e73e:sfm_ros/models/default.pt > disparity_default.pt` gives
the former one back):

- each depth head's logit x is mapped to a x + c, with (a, c) fitted so that the log-depth
  output ``min * (max / min) ** sigmoid(a x + c)`` matches ``scale / (alpha sigmoid(x) + beta)``
  (least squares in log depth over the logits the old output can use);
- the pose network's translation scale is multiplied by `scale`, so its raw outputs mean the
  same motion in metres.

    python benchmarks/log_depth_start.py --checkpoint disparity_default.pt --scale 40 \
        --out runs/log_depth_start.pt
    sfm-ros train --config config/training/default_model.yaml \
        model.init_from=runs/log_depth_start.pt model.translation_scale=0.4 ...

(0.4 = the former model's translation scale 0.01 times `--scale`.) `--scale` is metres per
model unit: ``--measure`` prints a checkpoint's median ratio of true to predicted depth on
held-out synthetic sequences (street, corridor and field: 54, 16 and 41 for the former model).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from sfm_ros.core.checkpoint import (
    atomic_torch_save,
    make_checkpoint,
    networks_from_checkpoint,
    resolve_checkpoint,
)
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.models.posenet import POSE_SCALE
from sfm_ros.core.sources import open_source

WARM_START_SCALE = 40.0  # metres per unit of the packaged model (street 54, corridor 16, field 41)
MEASURE_ON = ("synthetic:street:20:500", "synthetic:corridor:20:500", "synthetic:field:20:500")


def fit_head_map(
    alpha: float, beta: float, scale: float, min_depth: float, max_depth: float
) -> tuple[float, float]:
    """(a, c) such that the log-depth output of a x + c approximates `scale` times the
    disparity output's depth of logit x, in log depth, over sigmoid(x) in [0.03, 0.97] (the
    old output's working range: depth 0.1 to 3.3 units)."""
    x = torch.logit(torch.linspace(0.03, 0.97, 400, dtype=torch.float64))
    target = math.log(scale) - torch.log(alpha * torch.sigmoid(x) + beta)
    a = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    c = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    log_min, log_range = math.log(min_depth), math.log(max_depth / min_depth)
    opt = torch.optim.LBFGS([a, c], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((log_min + log_range * torch.sigmoid(a * x + c) - target) ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    rms = math.sqrt(float(closure().detach()))
    a, c = a.detach(), c.detach()
    print(f"head map: a={float(a):.4f} c={float(c):.4f}, RMS log-depth error {rms:.3f}")
    return float(a), float(c)


def measure_scale(checkpoint: str) -> None:
    """Print the median ratio of true to predicted depth on held-out synthetic frames."""
    est = DepthPoseEstimator.from_checkpoint(
        resolve_checkpoint(checkpoint), device="cpu", min_depth=0.0, max_depth=math.inf
    )
    for spec in MEASURE_ON:
        seq = open_source(spec, height=est.height, width=est.width)[0]
        ratios = []
        for i in range(0, len(seq), 5):
            frame = seq.load(i)
            depth = est.depth(frame.image, frame.K)
            valid = np.isfinite(frame.depth_m) & (frame.depth_m > 0) & np.isfinite(depth)
            ratios.append(np.median(frame.depth_m[valid] / depth[valid]))
        print(f"{spec}: metres per unit {np.median(ratios):.1f}")


def convert(checkpoint: str, scale: float, min_depth: float, max_depth: float) -> dict:
    """The checkpoint's networks with a log-depth output and metric translations."""
    path = resolve_checkpoint(checkpoint)
    depth_net, pose_net, ckpt = networks_from_checkpoint(path)
    arch = dict(ckpt["arch"])
    if arch.get("depth_kwargs", {}).get("output", "disparity") != "disparity":
        raise SystemExit(f"{path} does not have a disparity output")
    a, c = fit_head_map(depth_net.alpha, depth_net.beta, scale, min_depth, max_depth)
    new_depth_kwargs = {"output": "log_depth", "min_depth": min_depth, "max_depth": max_depth}
    translation_scale = arch.get("pose_kwargs", {}).get("translation_scale", POSE_SCALE)
    arch["depth_kwargs"] = {**arch.get("depth_kwargs", {}), **new_depth_kwargs}
    arch["pose_kwargs"] = {"translation_scale": translation_scale * scale}
    with torch.no_grad():
        for head in depth_net.disp_heads:
            head.conv.weight.mul_(a)
            head.conv.bias.mul_(a).add_(c)
    config = ckpt["config"]
    config["model"] = {
        **config["model"],
        "depth_output": "log_depth",
        "min_depth": min_depth,
        "max_depth": max_depth,
        "translation_scale": arch["pose_kwargs"]["translation_scale"],
    }
    return make_checkpoint(0, arch, config, depth_net, pose_net, converted_from=str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        default="",
        help="disparity-output checkpoint ('' = packaged, which has none since 2026-12-03)",
    )
    parser.add_argument(
        "--scale", type=float, default=WARM_START_SCALE, help="metres per model unit"
    )
    parser.add_argument("--min-depth", type=float, default=0.05)
    parser.add_argument("--max-depth", type=float, default=300.0)
    parser.add_argument("--measure", action="store_true", help="print the scale and stop")
    parser.add_argument("--out", type=Path, default=Path("runs/log_depth_start.pt"))
    args = parser.parse_args()
    if args.measure:
        measure_scale(args.checkpoint)
        return
    ckpt = convert(args.checkpoint, args.scale, args.min_depth, args.max_depth)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(ckpt, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

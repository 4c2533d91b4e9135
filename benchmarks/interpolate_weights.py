"""Weight-space interpolation between a starting model and its warm-up (WiSE-FT), per network.

    python benchmarks/interpolate_weights.py WARMED OUT --depth 0.5 [--pose 1.0] [--start CKPT]

Writes a checkpoint whose depth network is ``(1 - depth) start + depth warmed`` and whose pose
network is ``(1 - pose) start + pose warmed`` (floating-point tensors; the rest is the warm-up's,
without its optimiser state). ``--start`` defaults to the packaged model. Measure the result
beside the start with ``benchmarks/warmup.py --steps 0 --measure OUT``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sfm_ros.core.checkpoint import atomic_torch_save, load_checkpoint, resolve_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warmed", help="the warm-up's checkpoint (e.g. OUT/steps_200/latest.pt)")
    parser.add_argument("out", help="checkpoint to write (must not exist)")
    parser.add_argument("--depth", type=float, required=True, help="weight of the warmed depth net")
    parser.add_argument("--pose", type=float, default=1.0, help="weight of the warmed pose net")
    parser.add_argument("--start", default="", help="starting model (default: packaged)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists; give a new path")
    start = load_checkpoint(resolve_checkpoint(args.start))
    warmed = load_checkpoint(args.warmed)
    warmed.pop("optimizer", None)
    for key, alpha in (("depth_net", args.depth), ("pose_net", args.pose)):
        if set(start[key]) != set(warmed[key]):
            parser.error(f"{key}: the two checkpoints hold different networks")
        for name, tensor in warmed[key].items():
            if tensor.is_floating_point():
                warmed[key][name] = (1 - alpha) * start[key][name].float() + alpha * tensor.float()
    atomic_torch_save(warmed, out)
    print(f"wrote {out}: depth {args.depth:g}, pose {args.pose:g} of the warm-up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

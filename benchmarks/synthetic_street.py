"""Issue-2 benchmark: train both recipes on the synthetic street domain for the same CPU
budget, evaluate on a held-out street sequence (another seed: another street), and print
depth and pose metrics beside the trivial baselines.

    python benchmarks/synthetic_street.py --minutes 25 --out runs/bench_street

Each preset trains in its own process with one thread (they run side by side on 2 cores).
Results: OUT/results.json and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TRAIN = "[synthetic:street:400:0,synthetic:street:400:1]"
VAL = "[synthetic:street:60:500]"
HELD_OUT = "synthetic:street:100:1000"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="training budget per preset")
    parser.add_argument("--out", default="runs/bench_street")
    parser.add_argument("--presets", nargs="+", default=["default", "sfmlearner"])
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=208)
    parser.add_argument("--skip-train", action="store_true", help="only evaluate existing runs")
    args = parser.parse_args()
    out = Path(args.out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "sfm_ros.cli"]
    if not args.skip_train:
        out.mkdir(parents=True, exist_ok=True)
        procs = [
            subprocess.Popen(
                [
                    *cli,
                    "train",
                    "--preset",
                    preset,
                    "--out",
                    str(out / preset),
                    f"data.train={TRAIN}",
                    f"data.val={VAL}",
                    f"data.height={args.height}",
                    f"data.width={args.width}",
                    "optim.steps=1000000",
                    f"optim.max_minutes={args.minutes}",
                    "log.val_every=500",
                    "log.save_every=500",
                ],
                env=env,
                stdout=(out / f"{preset}.log").open("w"),
                stderr=subprocess.STDOUT,
            )
            for preset in args.presets
        ]
        if any(p.wait() for p in procs):
            print("a training run failed; see the logs in", out)
            return 1
    results = {}
    for preset in args.presets:
        ckpt = out / preset / "checkpoints" / "last.pt"
        for what in ("depth", "pose"):
            path = out / f"{preset}_{what}.json"
            extra = ["--metric"] if what == "depth" else ["--plot", str(out / f"{preset}_plots")]
            subprocess.run(
                [
                    *cli,
                    "eval",
                    what,
                    "--checkpoint",
                    str(ckpt),
                    "--data",
                    HELD_OUT,
                    "--json",
                    str(path),
                    *extra,
                ],
                env=env,
                check=True,
            )
            results[f"{preset}/{what}"] = json.loads(path.read_text())
        log_tail = (out / f"{preset}.log").read_text().strip().splitlines()
        results[f"{preset}/train"] = [line for line in log_tail if line.startswith("done:")]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    lines = [
        "| recipe | Abs Rel | delta1 | 5-frame ATE (m) | RMSE ATE Sim(3) (m) | s/step |",
        "|---|---|---|---|---|---|",
    ]
    for preset in args.presets:
        depth = results[f"{preset}/depth"]["model"]["median_scaled"]
        (pose,) = results[f"{preset}/pose"]["sequences"].values()
        done = results[f"{preset}/train"][0] if results[f"{preset}/train"] else ""
        sps = done.split(",")[1].strip() if done else "?"
        lines.append(
            f"| {preset} | {depth['abs_rel']:.3f} | {depth['a1']:.3f} | "
            f"{pose['model']['ate5_mean']:.4f} | {pose['model']['ate_rmse_sim3']:.3f} "
            f"| {sps} |"
        )
    base_depth = results[f"{args.presets[0]}/depth"]["baseline_mean_depth"]["median_scaled"]
    (base_pose,) = results[f"{args.presets[0]}/pose"]["sequences"].values()
    base_pose = base_pose["baseline: constant velocity"]
    lines.append(
        f"| baseline (mean depth / constant velocity) | {base_depth['abs_rel']:.3f} | "
        f"{base_depth['a1']:.3f} | {base_pose['ate5_mean']:.4f} | "
        f"{base_pose['ate_rmse_sim3']:.3f} | - |"
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far the node's pose figures move under one grey level of sensor noise.

    OMP_NUM_THREADS=1 python benchmarks/pose_spread.py --data CLIP [--runs 4] \\
        [--params config/sfm.yaml] [--set key=value ...] [--render-size HxW] [--checkpoint CKPT]

`sfm-ros eval pose` on the node's pipeline, ``--runs`` times: run 0 on the clip as it is, run k
with seeded Gaussian noise of one grey level (sigma 1/255, rounded back to 8 bits: a camera's
own noise is larger) added to every image, the same noise to a repeated image. The keyframe
tracker makes discrete choices (keyframe switches, fallbacks, which initial motion wins) that
a rounding difference can flip, so one run's figures carry a spread of their own: this prints
each run's ATE5 / RE / Sim(3) ATE / t_err / r_err of the model, their mean, standard deviation
and range, and the baselines' (constant velocity, ORB + essential matrix) of run 0, their mean
over the same runs (the same noise) and in how many runs the model's figure is below theirs. A
change smaller than the spread is not a measured change.
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass, replace

import numpy as np

from sfm_ros.cli import image_size
from sfm_ros.core.data.sequence import Frame, FrameSequence
from sfm_ros.core.evaluate import POSE_FIGURES, evaluate_pose_sequences
from sfm_ros.messages.sources import open_sources
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config


@dataclass
class Noisy:
    """A sequence whose images get seeded Gaussian noise of ``sigma`` grey levels (8-bit)."""

    seq: FrameSequence
    seed: int
    sigma: float = 1.0

    @property
    def name(self) -> str:
        return self.seq.name

    @property
    def has_poses(self) -> bool:
        return bool(getattr(self.seq, "has_poses", True))

    def __len__(self) -> int:
        return len(self.seq)

    def load(self, i: int) -> Frame:
        frame = self.seq.load(i)
        # seeded by the image too: a repeated frame stays a repeated frame
        rng = np.random.default_rng((self.seed, zlib.crc32(frame.image.tobytes())))
        noisy = frame.image.astype(np.float32) + rng.normal(0, self.sigma, frame.image.shape)
        return replace(frame, image=np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="clips, as for sfm-ros eval pose")
    parser.add_argument("--runs", type=int, default=4, help="run 0 clean, then noisy seeds")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    parser.add_argument("--checkpoint")
    parser.add_argument(
        "--render-size", type=image_size, help="HxW of synthetic clips (default: the network's)"
    )
    args = parser.parse_args()
    predictor = PipelinePredictor(pipeline_config(args.params, args.set, args.checkpoint))
    estimator = predictor.estimator
    height, width = args.render_size or (estimator.height, estimator.width)
    sequences = open_sources(args.data, height=height, width=width)
    rows: dict[str, list[dict]] = {}
    baselines: dict[str, dict[str, list[dict]]] = {}
    for run in range(args.runs):
        runs = sequences if run == 0 else [Noisy(s, seed=run) for s in sequences]
        report = evaluate_pose_sequences(predictor, runs, progress=False)
        for name, entry in report["sequences"].items():
            rows.setdefault(name, []).append(entry["model"])
            for label, figures in entry.items():
                if label.startswith("baseline"):
                    baselines.setdefault(name, {}).setdefault(label, []).append(figures)
            values = " / ".join(f"{entry['model'][key]:.4g}" for key in POSE_FIGURES)
            print(f"{name} run {run} ({'clean' if run == 0 else 'noisy'}): {values}", flush=True)
    print(f"\nATE5 / RE / Sim(3) ATE / t_err / r_err over {args.runs} runs")
    for name, entries in rows.items():
        table = np.array([[e[key] for key in POSE_FIGURES] for e in entries])
        for label, values in (
            ("mean", table.mean(0)),
            ("std", table.std(0, ddof=1) if len(table) > 1 else np.zeros(len(POSE_FIGURES))),
            ("min", table.min(0)),
            ("max", table.max(0)),
        ):
            print(f"{name} model {label}: " + " / ".join(f"{v:.4g}" for v in values))
        for label, runs in baselines[name].items():
            base = np.array([[e[key] for key in POSE_FIGURES] for e in runs])
            print(f"{name} {label} run 0: " + " / ".join(f"{v:.4g}" for v in base[0]))
            print(f"{name} {label} mean: " + " / ".join(f"{v:.4g}" for v in base.mean(0)))
            wins = (table < base).sum(0)
            print(f"{name} model below {label} in runs: " + " / ".join(str(w) for w in wins))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The node's odometry when it does not see every frame: a live node that takes longer than a
frame interval processes the newest image and drops the others, so the intervals between the
frames it sees vary.

    OMP_NUM_THREADS=1 python benchmarks/frame_drops.py --data CLIP [CLIP ...] \\
        [--params config/sfm.yaml] [--set key=value ...] [--render-size HxW] [--seed 0] \\
        [--longest 3] [--observe]

`sfm-ros eval pose` (the node's pipeline, ground truth at the frames kept) on each clip with
every frame, every second frame, and a seeded irregular pattern that keeps the next frame after
1 to ``--longest`` intervals at random (what a node taking 1-3 frame intervals per frame sees;
a 30 Hz camera feeding a node at 4-6 Hz: 5-8);
constant velocity and ORB + E on the same frames beside it. With ``--observe`` the frames
left out are given to `DepthOdometryPipeline.catch_up` as a live node does with the frames it
fell behind on (the pose network sees those it needs; nothing else).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from sfm_ros.cli import image_size
from sfm_ros.core.data.sequence import Frame, FrameSequence
from sfm_ros.core.evaluate import POSE_FIGURES, evaluate_pose_sequences
from sfm_ros.messages.sources import open_sources
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config


@dataclass
class Kept:
    """The frames ``indices`` of ``seq``."""

    seq: FrameSequence
    indices: list[int]
    label: str

    def __post_init__(self) -> None:
        self.name = f"{self.seq.name} ({self.label})"
        self.has_poses = True

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> Frame:
        return self.seq.load(self.indices[i])


class Observing:
    """A predictor that observes the frames of ``seq`` between those it is asked to predict."""

    def __init__(self, predictor: PipelinePredictor, seq: FrameSequence) -> None:
        self.predictor, self.seq = predictor, seq
        self.index = {seq.load(i).stamp_ns: i for i in range(len(seq))}
        self.last: int | None = None

    def reset(self) -> None:
        self.predictor.reset()
        self.last = None

    def predict(self, frame: Frame):
        i = self.index[frame.stamp_ns]
        if self.last is not None:
            self.predictor.catch_up([self.seq.load(j) for j in range(self.last + 1, i)])
        self.last = i
        return self.predictor.predict(frame)


def patterns(seq: FrameSequence, seed: int, longest: int = 3) -> list[Kept]:
    """Every frame, every second one, and 1 to ``longest`` intervals at random."""
    rng = np.random.default_rng(seed)
    irregular = [0]
    while irregular[-1] + longest < len(seq):
        irregular.append(irregular[-1] + int(rng.integers(1, longest + 1)))
    return [
        Kept(seq, list(range(len(seq))), "every frame"),
        Kept(seq, list(range(0, len(seq), 2)), "every second frame"),
        Kept(seq, irregular, f"1-{longest} intervals"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="clips, as for sfm-ros eval pose")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    parser.add_argument("--checkpoint")
    parser.add_argument("--render-size", type=image_size, help="HxW of synthetic clips")
    parser.add_argument("--seed", type=int, default=0, help="of the irregular pattern")
    parser.add_argument("--observe", action="store_true", help="observe the frames left out")
    parser.add_argument("--longest", type=int, default=3, help="longest gap, in intervals")
    args = parser.parse_args()
    predictor = PipelinePredictor(pipeline_config(args.params, args.set, args.checkpoint))
    height, width = args.render_size or (predictor.estimator.height, predictor.estimator.width)
    for seq in open_sources(args.data, height=height, width=width):
        model = Observing(predictor, seq) if args.observe else predictor
        kept = patterns(seq, args.seed, args.longest)
        report = evaluate_pose_sequences(model, kept, progress=False)
        for name, entry in report["sequences"].items():
            for method, figures in entry.items():
                if method == "model" or method.startswith("baseline"):
                    values = " / ".join(f"{figures[k]:.4g}" for k in POSE_FIGURES)
                    print(f"{name}, {method}: {values}", flush=True)
    print("(ATE5 / RE / Sim(3) ATE / t_err / r_err)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

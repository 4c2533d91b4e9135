"""Something moving through the view while the camera drives: a truck alongside, a person
walking past a robot.

    OMP_NUM_THREADS=1 python benchmarks/moving_object.py [--data synthetic:street:40:1000] \\
        [--first 12] [--fraction 0.3] [--speed 0.03] [--params config/sfm.yaml] \\
        [--set key=value ...]

From frame ``--first`` on, a textured object ``--fraction`` of the image wide (the lower nine
tenths of it; `passing_object`) crosses the view from the left at ``--speed`` of the image's
width a frame. Printed, for the clip as it is and with the object:
- `sfm-ros eval pose`'s figures (ATE5 / RE / Sim(3) ATE / t_err / r_err) of the node, constant
  velocity and ORB + essential-matrix VO;
- over the frames with the object in view: the published steps' rotation error and the angle
  of their translation to the true one (degrees, mean / worst);
- the published ``depth/confidence`` on the object's pixels and on the rest (mean, and the
  share above 0.5, a user's threshold for marking a costmap), and, where the clip has true
  depth, the published depth's Abs Rel on the rest (`evaluate_depth`'s, median-scaled per
  frame, as `sfm-ros eval depth` scores): what the object does to the static scene's depth.
The object has no true depth: its own depth is not scored, only how far it is trusted.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np

from sfm_ros.core.data.sequence import Frame, FrameSequence
from sfm_ros.core.evaluate import POSE_FIGURES, evaluate_pose_sequences
from sfm_ros.core.metrics import direction_error_deg, evaluate_depth, rotation_error_deg
from sfm_ros.core.synthetic.occluder import passing_object, passing_object_mask
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config


@dataclass
class Passing:
    """``seq`` with an object crossing its view from frame ``first`` on."""

    seq: FrameSequence
    first: int
    fraction: float
    speed: float

    def __post_init__(self) -> None:
        self.name = f"{self.seq.name} (object {self.fraction:g} wide at {self.speed:g})"
        self.has_poses = True

    def __len__(self) -> int:
        return len(self.seq)

    def _paint(self, image: np.ndarray, i: int) -> np.ndarray:
        return passing_object(image, i - self.first, self.fraction, self.speed)

    def load(self, i: int) -> Frame:
        frame = self.seq.load(i)
        if i < self.first:
            return frame
        return replace(frame, image=self._paint(frame.image, i))

    def mask(self, i: int, shape: tuple[int, ...]) -> np.ndarray:
        """(H, W) bool: the object's pixels in frame ``i``."""
        if i < self.first:
            return np.zeros(shape[:2], bool)
        return passing_object_mask(*shape[:2], i - self.first, self.fraction, self.speed)


def in_view(predictor: PipelinePredictor, seq: Passing, painted: bool) -> str:
    """Steps, confidence and depth figures over the frames with the object in view (with it
    painted in, or the same frames as they are)."""
    predictor.reset()
    rotation, direction, conf_in, conf_out, high_in, high_out = ([] for _ in range(6))
    true_depths, rest_depths = [], []  # the published depth, the object's pixels left out
    last = None
    for i in range(len(seq)):
        frame = seq.load(i) if painted else seq.seq.load(i)
        result = predictor.process(frame, outputs={"depth", "depth/confidence"})
        if result is None:
            continue
        mask = seq.mask(i, frame.image.shape)
        if mask.any() and result.T_prev_cur is not None and last is not None:
            G = np.linalg.inv(last.T_world_cam) @ frame.T_world_cam
            rotation.append(rotation_error_deg(G, result.T_prev_cur))
            direction.append(direction_error_deg(result.T_prev_cur[:3, 3], G[:3, 3]))
            c = result.confidence
            conf_in.append(c[mask].mean())
            conf_out.append(c[~mask].mean())
            high_in.append((c[mask] > 0.5).mean())
            high_out.append((c[~mask] > 0.5).mean())
            if frame.depth_m is not None:
                true_depths.append(frame.depth_m)
                rest_depths.append(np.where(mask, np.nan, result.depth_m))
        last = frame
    predictor.reset()
    depth = ""
    if true_depths:
        abs_rel = evaluate_depth(true_depths, rest_depths).median_scaled["abs_rel"]
        depth = f"; Abs Rel of the rest {abs_rel:.3f}"
    return (
        f"{len(rotation)} frames: rotation {np.mean(rotation):.2f} / {np.max(rotation):.2f} deg, "
        f"direction {np.nanmean(direction):.1f} / {np.nanmax(direction):.1f} deg; confidence "
        f"object {np.mean(conf_in):.2f} ({np.mean(high_in):.0%} above 0.5), rest "
        f"{np.mean(conf_out):.2f} ({np.mean(high_out):.0%}){depth}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:street:40:1000")
    parser.add_argument("--first", type=int, default=12, help="first frame with the object")
    parser.add_argument("--fraction", type=float, default=0.3, help="its width / the image's")
    parser.add_argument("--speed", type=float, default=0.03, help="image widths a frame")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    args = parser.parse_args()
    predictor = PipelinePredictor(pipeline_config(args.params, args.set))
    clean = open_source(args.data)[0]
    if not 1 <= args.first < len(clean) - 5:
        parser.error(f"--first must leave at least 5 of the clip's {len(clean)} frames after it")
    passing = Passing(clean, args.first, args.fraction, args.speed)
    report = evaluate_pose_sequences(predictor, [clean, passing], progress=False)
    for name, entry in report["sequences"].items():
        for method, figures in entry.items():
            if method == "model" or method.startswith("baseline"):
                values = " / ".join(f"{figures[k]:.4g}" for k in POSE_FIGURES)
                print(f"{name}, {method}: {values}")
    print("(ATE5 / RE / Sim(3) ATE / t_err / r_err)\n")
    print("with the object in view (mean / worst):")
    print(f"  as it is:    {in_view(predictor, passing, painted=False)}")
    print(f"  with object: {in_view(predictor, passing, painted=True)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

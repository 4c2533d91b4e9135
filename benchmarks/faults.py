"""What a real camera does to the node now and then: exposure jumps, a covered lens, dropped and
repeated frames, motion blur, low-light noise, an object crossing the view, injected into a real
clip.

    OMP_NUM_THREADS=1 python benchmarks/faults.py [--data ../shared/data/real/kitti_odometry_00] \\
        [--only NAME] [--params config/sfm.yaml] [--set key=value ...] [--checkpoint CKPT]

Runs the node's pipeline (`sfm-ros eval pose`'s) over the clip as it is and with the faults of
`FAULTS` (each on a few frames, far enough apart to recover in between; with ``--only``, those
whose name contains NAME), and prints
- `sfm-ros eval pose`'s figures of both runs, with constant velocity and ORB + E on the clean
  clip beside them;
- per fault, the published steps from the frame before it to four frames after: the worst
  rotation error (degrees), the worst angle of the translation to the true one (degrees) and
  the worst length over the true one, divided by the run's median of that ratio (the
  monocular scale), and whether every published value was finite.
A fault that a node should ride through costs a few tenths of a degree there and leaves the
figures of the whole run close to the clean run's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from sfm_ros.core.data.sequence import Frame, FrameSequence
from sfm_ros.core.evaluate import POSE_FIGURES, evaluate_pose_sequences
from sfm_ros.core.metrics import direction_error_deg, rotation_error_deg
from sfm_ros.core.synthetic.occluder import passing_object
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config

Effect = Callable[[np.ndarray, int], np.ndarray]
"""What a fault does to an image, given the frame's index within the fault."""


def _gain(gain: float) -> Effect:
    return lambda image, _: np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _black(image: np.ndarray, _: int) -> np.ndarray:
    return np.zeros_like(image)


def _crossing(image: np.ndarray, k: int) -> np.ndarray:
    """An object 40 % of the image wide crossing it, 12 % of its width a frame."""
    return passing_object(image, k + 1, fraction=0.4, speed=0.12)


def _blur(image: np.ndarray, _: int, width: int = 9) -> np.ndarray:
    """Horizontal motion blur over ``width`` pixels (a pan during the exposure)."""
    kernel = np.ones(width, np.float32) / width
    rows = image.astype(np.float32)
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, rows)
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def _noise(image: np.ndarray, _: int, sigma: float = 8.0) -> np.ndarray:
    rng = np.random.default_rng(int(image[::97, ::89].sum()))
    noisy = image.astype(np.float32) + rng.normal(0, sigma, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Fault:
    name: str
    first: int
    """Index of the first faulty frame in the clean clip."""
    count: int
    image: Effect | None = None
    """What the fault does to each image; None: the frames are dropped."""
    repeat: bool = False
    """The frames show the image before them again (a driver or recorder repeating a frame)."""


FAULTS = (
    Fault("auto-exposure dip, gain 0.5", 20, 4, _gain(0.5)),
    Fault("overexposed, gain 2.5", 32, 2, _gain(2.5)),
    Fault("lens covered (black)", 44, 3, _black),
    Fault("three frames dropped", 60, 3),
    Fault("one frame repeated", 76, 1, repeat=True),
    Fault("motion blur, 9 px", 92, 3, _blur),
    Fault("low-light noise, 8 grey levels", 108, 6, _noise),
    Fault("an object crossing 40 % of the view", 124, 11, _crossing),
)


@dataclass
class Faulted:
    """``seq`` with ``faults``: dropped frames left out, the others' images changed."""

    seq: FrameSequence
    faults: tuple[Fault, ...]

    def __post_init__(self) -> None:
        dropped = {
            f.first + k for f in self.faults if f.image is None and not f.repeat
            for k in range(f.count)
        }  # fmt: skip
        self.indices = [i for i in range(len(self.seq)) if i not in dropped]
        self.name = self.seq.name + " (faults)"
        self.has_poses = True

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> Frame:
        index = self.indices[i]
        frame = self.seq.load(index)
        for fault in self.faults:
            if fault.first <= index < fault.first + fault.count:
                if fault.repeat:
                    return replace(frame, image=self.seq.load(fault.first - 1).image)
                if fault.image is not None:
                    return replace(frame, image=fault.image(frame.image, index - fault.first))
        return frame


def _steps(predictor: PipelinePredictor, seq: Faulted) -> list[tuple[int, int, np.ndarray | None]]:
    """Each published step: (clean-clip index it starts from, index it ends at, the motion;
    None where the frame was processed without one); frames skipped are not listed, the next
    step starts from the last frame processed."""
    predictor.reset()
    steps, last = [], None
    for i in range(len(seq)):
        prediction = predictor.predict(seq.load(i))
        if prediction is None:
            continue
        index = seq.indices[i]
        if last is not None:
            steps.append((last, index, prediction.T_prev_cur))
        last = index
    predictor.reset()
    return steps


def _window_errors(
    clean: FrameSequence, steps: list[tuple[int, int, np.ndarray | None]], fault: Fault
) -> str:
    """Worst rotation, direction and relative length errors of the published steps that end
    from the frame before ``fault`` to four after it, and finiteness."""
    truths = []
    for start, end, _ in steps:
        truths.append(np.linalg.inv(clean.load(start).T_world_cam) @ clean.load(end).T_world_cam)
    ratios = [
        np.linalg.norm(T[:3, 3]) / np.linalg.norm(G[:3, 3])
        for (_, _, T), G in zip(steps, truths, strict=True)
        if T is not None and np.linalg.norm(G[:3, 3]) > 1e-6
    ]
    scale = float(np.median(ratios))
    rotation, direction, length, finite, missing = [], [], [], True, 0
    for (_, end, T), G in zip(steps, truths, strict=True):
        if not fault.first - 1 <= end <= fault.first + fault.count + 4:
            continue
        if T is None:
            missing += 1
            continue
        finite &= bool(np.isfinite(T).all())
        rotation.append(float(rotation_error_deg(G[None], T[None])[0]))
        t, g = T[:3, 3], G[:3, 3]
        direction.append(direction_error_deg(t, g))
        length.append(float(np.linalg.norm(t) / np.linalg.norm(g) / scale))
    return (
        f"rotation {max(rotation):.2f} deg, direction {np.nanmax(direction):.1f} deg, length "
        f"{min(length):.2f}-{max(length):.2f} x, finite {'yes' if finite else 'NO'}"
        + (f", {missing} steps without a motion" if missing else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/real/kitti_odometry_00")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    parser.add_argument("--checkpoint")
    parser.add_argument("--only", default="", help="the faults whose name contains this")
    args = parser.parse_args()
    faults = tuple(f for f in FAULTS if args.only in f.name)
    if not faults:
        parser.error(f"no fault's name contains {args.only!r}")
    predictor = PipelinePredictor(pipeline_config(args.params, args.set, args.checkpoint))
    clean = open_source(args.data)[0]
    last = max(f.first + f.count + 5 for f in faults)
    if len(clean) < last:
        parser.error(f"{args.data} has {len(clean)} frames; the faults need {last}")
    faulted = Faulted(clean, faults)
    report = evaluate_pose_sequences(predictor, [clean, faulted], progress=False)
    for name, entry in report["sequences"].items():
        for method, figures in entry.items():
            if method == "model" or (method.startswith("baseline") and name == clean.name):
                values = " / ".join(f"{figures[k]:.4g}" for k in POSE_FIGURES)
                print(f"{name}, {method}: {values}")
    print("(ATE5 / RE / Sim(3) ATE / t_err / r_err)\n")
    for label, seq in (("clean", Faulted(clean, ())), ("faults", faulted)):
        steps = _steps(predictor, seq)
        for fault in faults:
            print(f"{fault.name:34s} {label:6s} {_window_errors(clean, steps, fault)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How far the node's odometry creeps while the camera stands still.

    OMP_NUM_THREADS=1 python benchmarks/stop_drift.py --data CLIP [--at 40] [--frames 20] \\
        [--noise 2] [--mover 0.4 [--mover-from 3] [--mover-speed 0.03]] [--after 1] \\
        [--params config/sfm.yaml] [--set key=value ...]

The clip's frames 0..AT, then frame AT again ``--frames`` times, each with fresh seeded
Gaussian sensor noise of ``--noise`` grey levels (a still camera's images differ by their noise;
identical images would be skipped as repeats), then the next ``--after`` frames. With
``--mover``, an object that wide (a fraction of the image's width; `passing_object`) crosses
the view from the ``--mover-from``-th frame standing still on (a truck at a junction, people
walking past a robot). Printed: the node's mean step before the stop and how far its chained
pose moves (metres in the node's units, and in those steps) and turns (degrees) over the stop,
and its steps after it (in those steps), beside constant velocity (the last true motion
repeated: the stop's length in steps) and ORB + essential-matrix VO with unit steps (a failed
pair keeps the previous motion, as `sfm-ros eval pose` chains it).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from sfm_ros.core.classical_vo import orb_essential_motions
from sfm_ros.core.metrics import chain_relative_poses, rotation_error_deg
from sfm_ros.core.synthetic.occluder import passing_object
from sfm_ros.messages.sources import open_sources
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config

FRAME_INTERVAL_NS = 100_000_000


def moved(T_first: np.ndarray, T_last: np.ndarray) -> tuple[float, float]:
    """Distance and rotation angle (degrees) between two (4, 4) poses."""
    distance = float(np.linalg.norm(T_last[:3, 3] - T_first[:3, 3]))
    return distance, float(rotation_error_deg(T_first[:3, :3], T_last[:3, :3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a clip, as for sfm-ros eval pose")
    parser.add_argument("--at", type=int, default=40, help="frame the camera stops at")
    parser.add_argument("--frames", type=int, default=20, help="frames standing still")
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise, grey levels")
    parser.add_argument("--mover", type=float, default=0.0, help="object width (0: none)")
    parser.add_argument("--mover-from", type=int, default=3, help="stop frame it enters on")
    parser.add_argument("--mover-speed", type=float, default=0.03, help="image widths a frame")
    parser.add_argument("--after", type=int, default=1, help="frames after the stop")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    args = parser.parse_args()
    predictor = PipelinePredictor(pipeline_config(args.params, args.set))
    size = {"height": predictor.estimator.height, "width": predictor.estimator.width}
    seq = open_sources([args.data], **size)[0]
    if not 0 < args.at < len(seq) - args.after or args.frames < 1 or args.after < 1:
        parser.error(
            f"--at must leave --after frames of the clip's {len(seq)}, --frames and --after >= 1"
        )
    order = [*range(args.at + 1), *[args.at] * args.frames]
    order += range(args.at + 1, args.at + 1 + args.after)
    stamp0, frames = seq.load(0).stamp_ns, []
    for k, i in enumerate(order):
        frame = seq.load(i)
        rng = np.random.default_rng((k, 7))
        noisy = frame.image.astype(np.float32) + rng.normal(0, args.noise, frame.image.shape)
        image = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
        entered = k - args.at - args.mover_from + 1  # its frames in view so far
        if args.mover > 0 and entered >= 1 and k <= args.at + args.frames:
            image = passing_object(image, entered, args.mover, args.mover_speed)
        frames.append(replace(frame, image=image, stamp_ns=stamp0 + k * FRAME_INTERVAL_NS))
    predictor.reset()
    motions = []
    for k, frame in enumerate(frames):
        prediction = predictor.predict(frame)
        if k and (prediction is None or prediction.T_prev_cur is None):
            motions.append(np.eye(4))
        elif k:
            motions.append(prediction.T_prev_cur)
    node = chain_relative_poses(np.stack(motions))
    unit_steps, _ = orb_essential_motions((f.image for f in frames), frames[0].K)
    classical = chain_relative_poses(unit_steps)
    stop = (args.at, args.at + args.frames)
    mover = f", an object {args.mover:g} wide crossing from stop frame {args.mover_from}"
    print(
        f"{seq.name}: {args.frames} frames standing at frame {args.at}, noise {args.noise}"
        + (mover if args.mover > 0 else "")
    )
    for name, T in (("node", node), ("ORB + essential matrix (unit steps)", classical)):
        step = np.linalg.norm(np.diff(T[: args.at + 1, :3, 3], axis=0), axis=1).mean()
        distance, angle = moved(T[stop[0]], T[stop[1]])
        after = np.linalg.norm(np.diff(T[stop[1] :, :3, 3], axis=0), axis=1) / step
        print(
            f"{name}: mean step before the stop {step:.3f}; over the stop it moves "
            f"{distance:.3f} ({distance / step:.2f} steps) and turns {angle:.2f} deg; "
            f"steps after it {', '.join(f'{x:.2f}' for x in after)}"
        )
    print(f"constant velocity: moves {args.frames} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

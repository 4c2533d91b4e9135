"""The node's odometry when the camera turns on the spot, as a differential-drive robot does.

    OMP_NUM_THREADS=1 python benchmarks/turn_in_place.py [--domain street] [--seed 1000] \\
        [--render-size 128x416] [--before 21] [--turn-deg 30] [--rate-deg 3] [--after 15] \\
        [--imu] [--params config/sfm.yaml] [--set key=value ...] [--plot DIR]

A synthetic clip (the plain world: level camera, 90 degree field of view, 10 Hz;
`synthetic.render_turn_on_the_spot`) drives ``--before`` frames along its path, stops, turns on
the spot by ``--turn-deg`` at ``--rate-deg`` a frame and back again, then drives ``--after``
frames more. No translation during the turn: a pure rotation has no parallax, so a monocular
method cannot see its depth or its translation's direction, and the essential matrix is
degenerate. Printed: ATE5 / RE / Sim(3) ATE / t_err / r_err over the clip for the node, constant
velocity and ORB + essential-matrix VO (as ``sfm-ros eval pose`` computes them), and over the
turn: the path each travels (in its mean step before the turn; the truth 0), its largest
heading change against the true one, and its rotation error at the end. ``--imu`` adds a
simulated gyroscope as `benchmarks/gyro.py` does (BMI088 noise, 0.5 deg/s bias, 200 Hz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gyro import GyroPredictor

from sfm_ros.cli import image_size
from sfm_ros.core.classical_vo import orb_essential_motions
from sfm_ros.core.data import InMemorySequence
from sfm_ros.core.evaluate import (
    CLASSICAL,
    POSE_FIGURES,
    evaluate_pose_sequences,
    predict_trajectory,
)
from sfm_ros.core.frames import R_OPTICAL_BODY
from sfm_ros.core.metrics import (
    chain_relative_poses,
    constant_velocity_baseline,
    format_table,
    rotation_error_deg,
)
from sfm_ros.core.synthetic import render_turn_on_the_spot
from sfm_ros.core.synthetic.imu import BIAS_RAD_S, NOISE_DENSITY_RAD_S, gyro_samples, random_bias
from sfm_ros.core.visualize import plot_trajectories
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config


def over_the_turn(T: np.ndarray, gt: np.ndarray, turn: range) -> tuple[float, float, float]:
    """Path length over the turn in mean steps before it, the largest heading change's error
    and the rotation error at its end (degrees), for camera poses T and truth gt (N, 4, 4),
    both relative to the first frame."""
    steps = np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1)
    moved = steps[turn.start : turn.stop - 1].sum() / max(steps[: turn.start].mean(), 1e-12)
    start, end = T[turn.start], T[turn.stop - 1]
    turned = [rotation_error_deg(start[:3, :3], X[:3, :3]) for X in T[turn]]
    true_turned = [rotation_error_deg(gt[turn.start, :3, :3], X[:3, :3]) for X in gt[turn]]
    peak = int(np.argmax(true_turned))
    R_end = (np.linalg.inv(start) @ end)[:3, :3]
    R_true = (np.linalg.inv(gt[turn.start]) @ gt[turn.stop - 1])[:3, :3]
    return float(moved), turned[peak] - true_turned[peak], float(rotation_error_deg(R_end, R_true))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="street")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--render-size", type=image_size, default=(128, 416), help="HxW")
    parser.add_argument("--before", type=int, default=21, help="frames driven before the turn")
    parser.add_argument("--turn-deg", type=float, default=30.0, help="turn, out and back")
    parser.add_argument("--rate-deg", type=float, default=3.0, help="turn a frame")
    parser.add_argument("--after", type=int, default=15, help="frames driven after it")
    parser.add_argument("--imu", action="store_true", help="with a simulated gyroscope")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    parser.add_argument("--plot", help="folder for the trajectory plot (PNG)")
    args = parser.parse_args()
    if args.before < 6 or args.after < 1 or not 0 < args.rate_deg <= args.turn_deg:
        parser.error("needs --before >= 6, --after >= 1 and 0 < --rate-deg <= --turn-deg")
    turning, turn = render_turn_on_the_spot(
        args.domain, args.seed, *args.render_size, args.before, args.turn_deg, args.rate_deg,
        args.after,
    )  # fmt: skip
    name = f"{args.domain}_{args.seed}_turn{args.turn_deg:g}"
    seq = InMemorySequence(
        name, turning.images, turning.K, turning.stamps_ns, turning.T_world_cam, turning.depth_m
    )
    cfg = pipeline_config(args.params, args.set)
    predictor = PipelinePredictor(cfg)
    if args.imu:
        times, rates = gyro_samples(
            seq.T_world_cam, seq.stamps_ns, 200.0, R_OPTICAL_BODY,
            random_bias(np.random.default_rng(0), BIAS_RAD_S), NOISE_DENSITY_RAD_S,
            np.random.default_rng(1),
        )  # fmt: skip
        predictor = GyroPredictor(cfg, predictor.estimator, times, rates)
    report = evaluate_pose_sequences(predictor, [seq], progress=False)
    entry = report["sequences"][seq.name]
    names = ("model", CLASSICAL, "baseline: constant velocity")
    rows = {name: {k: entry[name][k] for k in POSE_FIGURES} for name in names}
    print(f"{seq.name}: {len(seq)} frames, the turn over frames {turn.start}-{turn.stop - 1}")
    print(format_table(rows))
    gt = np.linalg.inv(seq.T_world_cam[0]) @ seq.T_world_cam
    node, _ = predict_trajectory(predictor, seq)
    unit_steps, _ = orb_essential_motions((seq.load(i).image for i in range(len(seq))), seq.K[0])
    for name, T in (
        ("node", node),
        ("constant velocity", constant_velocity_baseline(gt)),
        ("ORB + essential matrix (unit steps)", chain_relative_poses(unit_steps)),
    ):
        moved, peak_error, end_error = over_the_turn(T, gt, turn)
        print(
            f"{name} over the turn: travels {moved:.2f} steps; heading at the turn's peak off "
            f"by {peak_error:+.2f} deg; rotation error at its end {end_error:.2f} deg"
        )
    if args.plot:
        path = Path(args.plot) / f"trajectory_{seq.name}.png"
        plot_trajectories(path, entry["trajectory_xyz"], title=seq.name)
        print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

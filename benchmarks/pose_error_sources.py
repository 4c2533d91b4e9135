"""What a clip's legacy 5-frame ATE is made of (issues 9 and 10).

Parts of a prediction are replaced by the ground truth, so one sees whether the rotation, the
direction of translation or its length carries the error:

- for the clip alone: constant velocity, the truth at constant speed, the truth without its
  rotation, one fixed (mean true) direction without rotation;
- with ``--checkpoint``: the network's motions (the estimator's stream, as ``sfm-ros eval pose``
  without refinement) and the same with the true speed or the true direction put back, the
  mean direction error and how the length of its translations drifts;
- with ``--checkpoint``, the start of a stream: the length of the first motion after a reset
  against the same motion seen with its real predecessor (1 = no start-up error);
- with ``--jitter``: the truth with that much random error in the length and direction of each
  translation, raw and through `VelocitySmoother` at a few time constants (what smoothing does
  to a good estimator on this platform).

    python benchmarks/pose_error_sources.py --clip ../shared/data/kitti_odometry_06 \\
        [--checkpoint CKPT] [--jitter 0.05] [--rate-hz 10]
"""

from __future__ import annotations

import argparse

import numpy as np

from sfm_ros.core.evaluate import as_predictor, predict_trajectory
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.metrics import (
    direction_error_deg,
    evaluate_snippets,
    evaluate_snippets_rotation,
)
from sfm_ros.core.velocity_filter import VelocitySmoother
from sfm_ros.messages.sources import open_source


def with_translation(T: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = T.copy()
    out[:, :3, 3] = t
    return out


def unit(t: np.ndarray) -> np.ndarray:
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def first_motion_ratios(estimator: DepthPoseEstimator, frames: list) -> np.ndarray:
    """Length of the first motion of a stream started at frame k, over the length of the same
    motion (k -> k+1) when frame k-1 came before it, for every other k."""
    ratios = []
    for k in range(1, len(frames) - 1, 2):
        lengths = []
        for start in (k, k - 1):
            estimator.reset()
            for frame in frames[start : k + 2]:
                T = estimator.step(frame.image, frame.K).T_prev_cur
            lengths.append(np.linalg.norm(T[:3, 3]))
        ratios.append(lengths[0] / lengths[1])
    estimator.reset()
    return np.array(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", required=True, help="a source with ground-truth poses")
    parser.add_argument("--checkpoint", help="also decompose this model's error")
    parser.add_argument("--jitter", type=float, default=0.0, help="relative jitter, e.g. 0.05")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="frame rate for --jitter")
    args = parser.parse_args()

    seq = open_source(args.clip)[0]
    gt = np.stack([seq.load(i).T_world_cam for i in range(len(seq))])
    true = np.linalg.inv(gt[:-1]) @ gt[1:]
    t_true = true[:, :3, 3]
    speed = np.linalg.norm(t_true, axis=1)
    still = np.tile(np.eye(4), (len(true), 1, 1))

    def row(name: str, rel: np.ndarray) -> None:
        ate5, re = evaluate_snippets(gt, rel)[0], evaluate_snippets_rotation(gt, rel)[0]
        print(f"{name:48s} ATE5 {ate5:.4f}  RE {re:.4f}")

    forward = np.zeros_like(t_true)
    forward[:, 2] = speed.mean()
    row("constant velocity", with_translation(still, forward))
    row("truth at constant speed", with_translation(true, unit(t_true) * speed.mean()))
    row("truth, rotation left out", with_translation(still, t_true))
    row("one fixed (mean true) direction, no rotation", with_translation(still, t_true.mean(0)))
    mean_dir = unit(t_true).mean(0)
    pitch_yaw = np.degrees(np.arccos(mean_dir[2] / np.linalg.norm(mean_dir)))
    print(f"mean direction of travel: {np.round(mean_dir, 4)}, {pitch_yaw:.2f} deg off the axis")

    if args.checkpoint:
        estimator = DepthPoseEstimator.from_checkpoint(args.checkpoint)
        T, _ = predict_trajectory(as_predictor(estimator), seq)
        pred = np.linalg.inv(T[:-1]) @ T[1:]
        t_pred = pred[:, :3, 3]
        length = np.linalg.norm(t_pred, axis=1)
        angle = direction_error_deg(t_pred, t_true)
        ratio = length / speed
        ratio = ratio / ratio.mean()
        change = np.diff(ratio)
        drift = np.corrcoef(ratio[1:] - ratio[1:].mean(), ratio[:-1] - ratio[:-1].mean())[0, 1]
        row("model", pred)
        row("model, true speed", with_translation(pred, unit(t_pred) * speed[:, None]))
        row("model, true direction", with_translation(pred, unit(t_true) * length[:, None]))
        row("model, true rotation", with_translation(true, t_pred))
        print(
            f"direction error {angle.mean():.2f} deg (median {np.median(angle):.2f}); length / "
            f"true length varies by {ratio.std():.3f} (frame-to-frame {np.abs(change).mean():.3f},"
            f" lag-1 autocorrelation {drift:.2f})"
        )
        frames = [seq.load(i) for i in range(len(seq))]
        median = np.array([np.nanmedian(estimator.depth(f.image, f.K)) for f in frames[:-1]])
        steadied = ratio / median  # the motion t-1 -> t is predicted in frame t-1's scale
        print(
            f"divided by frame t-1's median depth, the length varies by "
            f"{(steadied / steadied.mean()).std():.3f}"
        )
        ratios = first_motion_ratios(estimator, frames[:61])
        print(
            f"first motion of a stream / the same motion mid-stream: {ratios.mean():.2f} "
            f"+- {ratios.std():.2f} ({len(ratios)} starts)"
        )

    if args.jitter > 0:
        rng = np.random.default_rng(0)
        noisy = t_true * (1 + args.jitter * rng.standard_normal((len(t_true), 1)))
        noisy += 0.3 * args.jitter * speed[:, None] * rng.standard_normal(t_true.shape)
        row(f"truth with {args.jitter:.0%} jitter", with_translation(true, noisy))
        dt = 1.0 / args.rate_hz
        for tau in (0.1, 0.25, 0.5, 1.0):
            smoother = VelocitySmoother(tau)
            smoothed = np.stack([smoother.update(T, dt) for T in with_translation(true, noisy)])
            row(f"  smoothed, time constant {tau} s", smoothed)


if __name__ == "__main__":
    main()

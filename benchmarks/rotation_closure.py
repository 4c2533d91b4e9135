"""How much of classical VO's error against the ground truth is its own? A closure test.

    OMP_NUM_THREADS=1 python benchmarks/rotation_closure.py \\
        [--clips ../shared/data/real/kitti_odometry_00 synthetic:street:60:1000 ...] \\
        [--lags 3] [--frames N]

For each clip, ORB + essential matrix (the node's classical VO: features spread over the view,
matches refined by Lucas-Kanade, MAGSAC++) fits the rotation between every frame and the
frames 1 to ``--lags`` after it, each pair matched afresh. Printed per clip:
- each lag's rotation error against the ground truth (median / rms, degrees);
- the closure of each lag k > 1: the angle between the rotation fitted over k frames directly
  and the chain of the k single steps (median / rms). It involves no ground truth. With
  independent errors of sigma a pair it is sigma * sqrt(k + 1), so "own" is the closure's rms
  over sqrt(k + 1): the single step's own error as the estimates themselves bound it;
- what the rms error against the truth leaves beside it, sqrt(truth^2 - own^2) (0 where the
  own error explains it all): the error of the ground truth's own steps, if the estimates'
  errors are independent between pairs (an error every pair repeats, such as a wrong focal
  length, cancels in the closure and would land here too);
- the gain of the classical yaw (rotation about the camera's y axis) against the truth's;
- the same for the translation's direction over two frames: its angle to the chain of the two
  unit steps (u01 + R01 u12, equal lengths assumed: the truth's length ratio gave the same
  figures on KITTI and rendered clips), whose mean square with independent errors of sigma
  per degree of freedom is 2 * 1.5 sigma^2, so "own" is its rms over sqrt(1.5).

On rendered clips the truth is exact, so what is left there measures how far the closure's
assumption holds; on real clips it bounds what any rotation estimate can show against that
ground truth (`benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from sfm_ros.core.classical_vo import (
    CLASSICAL_MAX_WIDTH,
    RELIABLE_INLIERS,
    downsized,
    matched_indices,
    refine_matches,
    relative_motion,
    spread_features,
)
from sfm_ros.core.lie import se3_inverse
from sfm_ros.messages.sources import open_sources

DATA = "../shared/data"
CLIPS = (
    f"{DATA}/real/kitti_odometry_00",
    f"{DATA}/kitti_odometry_06",
    "synthetic:street:60:1000",
    "synthetic:field:60:1000",
    "synthetic:rural:60:1000",
)


def angle_deg(R: np.ndarray) -> float:
    """Rotation angle (degrees) of a (3, 3) rotation."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def pair_motions(seq, lags: int, frames: int | None) -> tuple[dict, np.ndarray]:
    """{(i, j): (4, 4) T_i_j} classical motions (unit translations) of every pair j - i in
    1..lags (where the fit succeeds) and the (N, 4, 4) true T_world_cam."""
    orb, matcher = cv2.ORB_create(8000), cv2.BFMatcher(cv2.NORM_HAMMING)
    count = len(seq) if frames is None else min(frames, len(seq))
    features, greys, truth, motions = [], [], [], {}
    for j in range(count):
        frame = seq.load(j)
        grey, K = downsized(frame.image, frame.K, CLASSICAL_MAX_WIDTH)
        features.append(spread_features(orb, grey, 2000))
        greys.append(grey)
        truth.append(frame.T_world_cam)
        for i in range(max(0, j - lags), j):
            ia, ib = matched_indices(matcher, features[i], features[j])
            pa = np.float64([features[i][0][k].pt for k in ia]).reshape(-1, 2)
            pb = np.float64([features[j][0][k].pt for k in ib]).reshape(-1, 2)
            fit = relative_motion(pa, refine_matches(greys[i], grey, pa, pb), K, RELIABLE_INLIERS)
            if fit is not None:
                motions[(i, j)] = fit[0]
    return motions, np.array(truth)


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) between two (3,) vectors."""
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def direction_report(motions: dict, truth: np.ndarray) -> str:
    """The line of the translation direction's error a step and its closure over two frames
    (module docstring)."""
    errors, closures = [], []
    for (i, j), T in motions.items():
        true = se3_inverse(truth[i]) @ truth[j]
        if j - i == 1 and np.linalg.norm(true[:3, 3]) > 1e-3:
            errors.append(angle_between_deg(T[:3, 3], true[:3, 3]))
        first, second = motions.get((i, i + 1)), motions.get((i + 1, j))
        if j - i == 2 and first is not None and second is not None:
            chain = first[:3, 3] + first[:3, :3] @ second[:3, 3]
            closures.append(angle_between_deg(T[:3, 3], chain))
    rms = float(np.sqrt(np.mean(np.square(errors))))
    own = float(np.sqrt(np.mean(np.square(closures)) / 1.5))
    left = np.sqrt(max(rms**2 - own**2, 0.0))
    return (
        f"  direction a step: against the truth {np.median(errors):.3f} / {rms:.3f}; closure "
        f"{np.median(closures):.3f} / {np.sqrt(np.mean(np.square(closures))):.3f}, own {own:.3f},"
        f" left to the truth's steps {left:.3f}"
    )


def closure_report(motions: dict, truth: np.ndarray, lags: int) -> list[str]:
    """Lines of the per-lag rotation errors, closures and the yaw gain, and the direction's
    (module docstring)."""
    rotations = {pair: T[:3, :3] for pair, T in motions.items()}

    def true_rotation(i: int, j: int) -> np.ndarray:
        return (se3_inverse(truth[i]) @ truth[j])[:3, :3]

    def stats(values: list[float]) -> str:
        return f"{np.median(values):.4f} / {np.sqrt(np.mean(np.square(values))):.4f}"

    lines, own = [], []
    for k in range(1, lags + 1):
        pairs = [(i, j) for (i, j) in rotations if j - i == k]
        errors = [angle_deg(rotations[p].T @ true_rotation(*p)) for p in pairs]
        line = f"  lag {k}: against the truth {stats(errors)} ({len(pairs)} pairs)"
        closures = []
        for i, j in pairs:
            steps = [rotations.get((m, m + 1)) for m in range(i, j)]
            if k > 1 and all(R is not None for R in steps):
                chain = np.linalg.multi_dot(steps)
                closures.append(angle_deg(chain.T @ rotations[(i, j)]))
        if closures:
            sigma = float(np.sqrt(np.mean(np.square(closures)) / (k + 1)))
            own.append(sigma)
            line += f"; closure {stats(closures)}, own error a step {sigma:.4f}"
        lines.append(line)
    steps = [(i, j) for (i, j) in rotations if j - i == 1]
    truth_rms = float(
        np.sqrt(np.mean([angle_deg(rotations[p].T @ true_rotation(*p)) ** 2 for p in steps]))
    )
    if own:
        left = np.sqrt(max(truth_rms**2 - float(np.mean(own)) ** 2, 0.0))
        lines.append(
            f"  a step: rms against the truth {truth_rms:.4f}, own (mean of the "
            f"closures) {np.mean(own):.4f}, left to the truth's steps {left:.4f}"
        )
    yaw = np.array(
        [[cv2.Rodrigues(R)[0][1, 0] for R in (rotations[p], true_rotation(*p))] for p in steps]
    )
    gain = float(yaw[:, 0] @ yaw[:, 1] / max(yaw[:, 1] @ yaw[:, 1], 1e-30))
    lines.append(
        f"  yaw gain against the truth {gain:.4f} (the truth's yaw a step rms "
        f"{np.degrees(np.sqrt(np.mean(yaw[:, 1] ** 2))):.3f} degrees)"
    )
    return [*lines, direction_report(motions, truth)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--lags", type=int, default=3, help="frames apart, 1 to this")
    parser.add_argument("--frames", type=int, default=None, help="first frames of each clip")
    parser.add_argument("--render-size", default="128x416", help="synthetic clips' HxW")
    args = parser.parse_args()
    height, width = (int(v) for v in args.render_size.split("x"))
    for clip in args.clips:
        seq = open_sources([clip], height=height, width=width)[0]
        motions, truth = pair_motions(seq, max(args.lags, 2), args.frames)
        print(f"{clip} ({len(truth)} frames; degrees, median / rms)")
        print("\n".join(closure_report(motions, truth, args.lags)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

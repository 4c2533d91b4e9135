"""Where classical VO takes a pair of frames for a camera that only turns, and how right it is.

    OMP_NUM_THREADS=1 python benchmarks/pure_rotation.py \\
        [--data ../shared/data/kitti_odometry_06 ../shared/data/real/kitti_odometry_00 \\
         ../shared/data/real/redkitchen_7scenes turn:corridor turn:street] [--frames 100]

Per clip, frame to frame at full size (`turn:DOMAIN` renders `render_turn_on_the_spot` at
128x416, seed 1000): the pairs where the essential matrix or the rotation alone gives a motion
(at least `RELIABLE_INLIERS` inliers, as in the node), the pairs GRIC gives to the rotation alone
(`pure_rotation.turns_only`), and the mean rotation error (degrees) on those pairs of the
rotation alone and of the essential matrix (where it has one), and on all others of the
essential matrix. A camera that turns on the spot has no parallax: the essential matrix's
translation is free and it keeps few inliers.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from sfm_ros.core.classical_vo import CLASSICAL_MAX_WIDTH, RELIABLE_INLIERS, OrbMotion
from sfm_ros.core.metrics import format_table, rotation_error_deg
from sfm_ros.core.synthetic import render_turn_on_the_spot
from sfm_ros.messages.sources import open_sources

DEFAULT_DATA = [
    "../shared/data/kitti_odometry_06",
    "../shared/data/real/kitti_odometry_00",
    "../shared/data/real/redkitchen_7scenes",
    "turn:corridor",
    "turn:street",
]


def frames(spec: str, count: int):
    """(images, (3, 3) K, (N, 4, 4) T_world_cam) of the first ``count`` frames of a clip."""
    if spec.startswith("turn:"):
        seq, _ = render_turn_on_the_spot(spec.removeprefix("turn:"), 1000, 128, 416)
        return seq.images[:count], seq.K, seq.T_world_cam[:count]
    seq = open_sources([spec])[0]
    loaded = [seq.load(i) for i in range(min(count, len(seq)))]
    return [f.image for f in loaded], loaded[0].K, np.stack([f.T_world_cam for f in loaded])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for spec in args.data:
        images, K, T_world = frames(spec, args.frames)
        streams = [
            OrbMotion(max_width=CLASSICAL_MAX_WIDTH, min_inliers=RELIABLE_INLIERS, detect_turns=d)
            for d in (True, False)
        ]
        turn_errors, essential_there, essential_elsewhere, motions = [], [], [], 0
        for k, image in enumerate(images):
            T, T_essential = (s.step(image, K) for s in streams)
            if k == 0 or T is None:
                continue
            motions += 1
            R_true = (np.linalg.inv(T_world[k - 1]) @ T_world[k])[:3, :3]
            if streams[0].last_turns_only:
                turn_errors.append(rotation_error_deg(T[:3, :3], R_true))
                if T_essential is not None:
                    essential_there.append(rotation_error_deg(T_essential[:3, :3], R_true))
            else:
                essential_elsewhere.append(rotation_error_deg(T[:3, :3], R_true))
        row = {"pairs": len(images) - 1, "with a motion": motions, "turns only": len(turn_errors)}
        for name, errors in (
            ("rotation alone there (deg)", turn_errors),
            ("essential matrix there", essential_there),
            ("essential matrix elsewhere", essential_elsewhere),
        ):
            row[name] = float(np.mean(errors)) if errors else math.nan
        row["pairs with both there"] = len(essential_there)
        rows[spec.rstrip("/").rsplit("/", 1)[-1]] = row
    print(format_table(rows, precision=3))  # counts print with decimals too
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

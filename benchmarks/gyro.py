"""The node's pose with a (simulated) gyroscope beside it (``use_imu``, `core/gyro.py`).

    OMP_NUM_THREADS=1 python benchmarks/gyro.py --data CLIP [CLIP ...] \\
        [--params config/sfm.yaml] [--render-size 128x416] [--bias-deg-s 0.5] \\
        [--noise-deg-s-rt-hz 0.014] [--rate-hz 200] [--plot DIR]

The clips have no IMU, so one is simulated on the ground-truth trajectory
(`synthetic.imu.gyro_samples`: the camera turns at a constant rate between frames), mounted in
base_link's axes (x forward, z up; TF's camera <- IMU rotation given to the pipeline), with a
consumer MEMS gyro's white noise (0.014 deg/s/sqrt(Hz), a BMI088's) and a constant bias of
``--bias-deg-s`` in a fixed random direction, at 200 Hz. Its messages (sensor_msgs/Imu) reach
the pipeline up to 10 ms after each image, as a live IMU's would. Printed per clip (as ``sfm-ros
eval pose``): ATE5 / RE / Sim(3) ATE / t_err / r_err of the node without and with the gyro
beside constant velocity and ORB + essential-matrix VO, the frames whose rotation was the
gyro's, and the bias it removed against the simulated one (deg/s, optical frame).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sfm_ros import messages as cv
from sfm_ros.cli import image_size
from sfm_ros.core.evaluate import CLASSICAL, POSE_FIGURES, evaluate_pose_sequences
from sfm_ros.core.frames import R_OPTICAL_BODY
from sfm_ros.core.metrics import format_table
from sfm_ros.core.synthetic.imu import BIAS_RAD_S, NOISE_DENSITY_RAD_S, gyro_samples, random_bias
from sfm_ros.core.visualize import plot_trajectories
from sfm_ros.messages.sources import open_sources
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config

LATENCY_NS = 10_000_000


class GyroPredictor(PipelinePredictor):
    """`PipelinePredictor` fed the Imu messages of one sequence before each frame."""

    def __init__(self, cfg, estimator, stamps_ns: np.ndarray, rates: np.ndarray) -> None:
        super().__init__(cfg, estimator)
        self.samples = [self._imu(int(t), w) for t, w in zip(stamps_ns, rates, strict=True)]
        self.used, self.summary = 0, (0, np.zeros(3), 0.0)

    def _imu(self, stamp_ns: int, w: np.ndarray):
        return stamp_ns, cv.imu_msg(self.types, cv.header(self.types, stamp_ns, "imu_link"), w)

    def reset(self) -> None:
        gyro = self.pipeline.gyro_gate.gyro
        if self.pipeline.stats.frames_processed:  # the sequence just run (evaluation resets after)
            self.summary = (self.used, np.degrees(gyro.bias_rad_s), gyro.disagreement_deg)
        super().reset()
        T_cam_imu = np.eye(4)
        T_cam_imu[:3, :3] = R_OPTICAL_BODY
        self.pipeline.set_imu_extrinsics(T_cam_imu)
        self._next, self.used = 0, 0

    def predict(self, frame):
        while self._next < len(self.samples) and (
            self.samples[self._next][0] <= frame.stamp_ns + LATENCY_NS
        ):
            self.pipeline.on_imu(self.samples[self._next][1])
            self._next += 1
        prediction = super().predict(frame)
        self.used += self.pipeline.gyro_gate.used
        return prediction


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True, help="clips with poses")
    parser.add_argument("--params", default="config/sfm.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="node parameter overrides")
    parser.add_argument("--render-size", type=image_size, default=None, help="HxW (synthetic)")
    parser.add_argument("--bias-deg-s", type=float, default=float(np.degrees(BIAS_RAD_S)))
    noise = float(np.degrees(NOISE_DENSITY_RAD_S))
    parser.add_argument("--noise-deg-s-rt-hz", type=float, default=noise)
    parser.add_argument("--rate-hz", type=float, default=200.0)
    parser.add_argument("--plot", help="folder for trajectory plots (PNG), without and with")
    args = parser.parse_args()
    cfg = pipeline_config(args.params, args.set)
    plain = PipelinePredictor(cfg)
    height, width = args.render_size or (plain.estimator.height, plain.estimator.width)
    bias = random_bias(np.random.default_rng(0), np.radians(args.bias_deg_s))
    for seq in open_sources(args.data, height=height, width=width):
        frames = [seq.load(i) for i in range(len(seq))]
        poses = np.stack([f.T_world_cam for f in frames])
        stamps = np.array([f.stamp_ns for f in frames], dtype=np.int64)
        times, rates = gyro_samples(
            poses, stamps, args.rate_hz, R_OPTICAL_BODY, bias,
            np.radians(args.noise_deg_s_rt_hz), np.random.default_rng(1),
        )  # fmt: skip
        gyro = GyroPredictor(cfg, plain.estimator, times, rates)
        rows = {}
        for name, predictor in (("node", plain), ("node with the gyro", gyro)):
            report = evaluate_pose_sequences(predictor, [seq], progress=False)
            entry = next(iter(report["sequences"].values()))
            rows[f"{seq.name}, {name}"] = {k: entry["model"][k] for k in POSE_FIGURES}
            if args.plot:
                path = Path(args.plot) / f"trajectory_{seq.name}_{name.replace(' ', '_')}.png"
                plot_trajectories(path, entry["trajectory_xyz"], title=f"{seq.name}, {name}")
        for base in ("baseline: constant velocity", CLASSICAL):
            rows[f"{seq.name}, {base}"] = {k: entry[base][k] for k in POSE_FIGURES}
        print(format_table(rows))
        used, removed, disagreement = gyro.summary
        simulated = np.degrees(R_OPTICAL_BODY @ bias)
        print(
            f"  gyro rotation on {used} of {len(seq) - 1} frames; bias removed "
            f"{np.round(removed, 3)} deg/s, simulated {np.round(simulated, 3)}; disagreement "
            f"with the camera {disagreement:.3g} deg rms a frame",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

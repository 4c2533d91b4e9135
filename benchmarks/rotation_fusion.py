"""How well does `pose_source: fused` weigh its two rotations? Per-frame errors against the truth.

    OMP_NUM_THREADS=1 python benchmarks/rotation_fusion.py [--checkpoint CKPT] \\
        [--clips ../shared/data/kitti_odometry_06 synthetic:field:61:1000 ...] [--scales 1,2,3]

Runs the node's pipeline (`PipelinePredictor`, default parameters: `pose_source: fused`) over
each clip and records, for every frame the fusion ran on, the network's rotation, the refined
one, the classical one (ORB + essential matrix, ``fuse_classical``), the refined variance the
tracker claims, the weight the fusion gave the refinement and the fused rotation's variance
(1 / sum of 1 / variance). Against the ground truth it prints the RMS rotation error per
axis (degrees a frame) of each and of the fusion; the calibration (mean squared error over
mean variance, per axis: 1 = honest, above 1 overconfident) of the refined covariance, of the
fused variance (after 10 frames) and, for comparison, of the odometry noise model's rotation
variance at the true step (what the odometry published before), with the Gaussian negative
log-likelihood of the fused rotation's errors under both (after 10 frames); the refined weight
the fusion used on average and the fixed network-refined weight that would have been best in
hindsight; and the two-way fusion without the classical rotation replayed on the same
rotations with the refined variance multiplied by each of ``--scales`` (x1 is the fusion
before ``fuse_classical``). A second line per clip checks the three-cornered hat's variances
against the truth (`variance_check`).
"""

from __future__ import annotations

import argparse

import numpy as np

from sfm_ros.core.lie import se3_inverse, so3_log
from sfm_ros.core.odometry import OdometryNoise
from sfm_ros.core.rotation_fusion import RotationFusion
from sfm_ros.messages.sources import open_source
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.evaluate import PipelinePredictor

DATA = "../shared/data"
CLIPS = (
    f"{DATA}/kitti_odometry_06",
    f"{DATA}/real/kitti_odometry_00",
    "synthetic:street:61:1000",
    "synthetic:field:61:1000",
)


def record(checkpoint: str, source: str) -> dict[str, np.ndarray]:
    """The fusion's inputs and output on every frame it ran on, with the true rotation of that
    motion: ``R_true``, ``R_network``, ``R_network_corrected`` (scaled by its gain, less its offset,
    as fused), ``R_refined``, ``R_fused``, ``R_classical`` (M, 3, 3; NaN where ORB + E failed, is
    off, was not fused or was a mismatch, `rotation_fusion.MISMATCH_RATIO`), ``refined_var`` and
    ``weight`` (M,), ``variances`` (M, 3: the network's, refined and classical variance per axis the
    fusion had estimated after the frame) and ``mismatches`` (their count)."""
    seq = open_source(source)[0]
    predictor = PipelinePredictor(PipelineConfig(checkpoint=checkpoint, pose_source="fused"))
    fusion = predictor.pipeline.fusion.rotation_fusion
    fuse, rows, frame = fusion.fuse, [], {}

    def recording_fuse(  # noqa: ANN202
        R_network,
        R_refined,
        refined_var,
        R_classical=None,
        classical_var=None,
        use=True,  # noqa: ANN001
    ):
        inputs = (np.array(R_network), np.array(R_refined), float(refined_var))  # views: copy
        R_corrected = fusion.corrected_network(inputs[0])[-1]  # before fuse updates them
        R, weight = fuse(*inputs, R_classical, classical_var, use)
        classical = np.full((3, 3), np.nan)
        if R_classical is not None and use and not fusion.last_mismatch:
            classical = np.array(R_classical)
        rows.append((frame["R_true"], *inputs, weight, R, classical, frame["d_true"],
                     fusion.last_variance, R_corrected, fusion.variances))  # fmt: skip
        return R, weight

    fusion.fuse = recording_fuse
    previous = None  # the last frame the pipeline took (it skips repeated ones)
    for i in range(len(seq)):
        current = seq.load(i)
        if previous is not None:
            T_true = se3_inverse(previous.T_world_cam) @ current.T_world_cam
            frame["R_true"], frame["d_true"] = T_true[:3, :3], np.linalg.norm(T_true[:3, 3])
        if predictor.predict(current) is not None:
            previous = current
    names = ("R_true", "R_network", "R_refined", "refined_var", "weight", "R_fused", "R_classical")
    names += ("d_true", "fused_var", "R_network_corrected", "variances")
    recorded = {name: np.array([row[k] for row in rows]) for k, name in enumerate(names)}
    return {**recorded, "mismatches": np.array(fusion.mismatches)}


def errors(R_true: np.ndarray, R_est: np.ndarray) -> np.ndarray:
    """(M, 3) axis-angle error of each estimate (radians)."""
    return np.stack([so3_log(a.T @ b) for a, b in zip(R_true, R_est, strict=True)])


def rms_deg(err: np.ndarray) -> float:
    """RMS rotation error per axis, degrees."""
    return float(np.degrees(np.sqrt((err**2).mean())))


def calibration(err: np.ndarray, variance: np.ndarray, skip: int = 0) -> float:
    """Mean squared error per axis over the mean variance (1 = honest, above 1 overconfident),
    after the first ``skip`` frames."""
    return float((err[skip:] ** 2).mean() / variance[skip:].mean())


def nll(err: np.ndarray, variance: np.ndarray, skip: int = 10) -> float:
    """Mean Gaussian negative log-likelihood per axis of (M, 3) errors under (M,) variances
    (lower is better: honest on average and high where the errors are), after ``skip`` frames."""
    var = variance[skip:, None]
    return float((0.5 * (np.log(2 * np.pi * var) + err[skip:] ** 2 / var)).mean())


def noise_model_variance(rec: dict[str, np.ndarray]) -> np.ndarray:
    """(M,) rotation variance per axis of the odometry's noise model at each true step."""
    noise, angles = OdometryNoise(), [np.linalg.norm(so3_log(R)) for R in rec["R_true"]]
    stds = [noise.step_stds(d, a)[1] for d, a in zip(rec["d_true"], angles, strict=True)]
    return np.square(stds)


def replay(rec: dict[str, np.ndarray], scale: float, classical: bool) -> tuple[np.ndarray, float]:
    """The fusion run again with the refined variance times ``scale``, with or without the
    classical rotation: rotations, mean refined weight."""
    fusion, out, weights = RotationFusion(), [], []
    inputs = zip(
        rec["R_network"], rec["R_refined"], rec["refined_var"], rec["R_classical"], strict=True
    )
    for R_n, R_r, var, R_c in inputs:
        use = classical and np.isfinite(R_c).all()
        R, w = fusion.fuse(R_n, R_r, scale * var, R_c if use else None)
        out.append(R)
        weights.append(w)
    return np.array(out), float(np.mean(weights))


def variance_check(rec: dict[str, np.ndarray], skip: int = 10) -> str:
    """What the three-cornered hat estimated against the truth, over the frames with all three
    rotations after the first ``skip``: each source's rms error (degrees a frame, per axis; the
    network's scaled by its gain and less its offset, as fused), the correlations of their errors,
    the variances the hat estimated (mean over those frames) against the true mean squared errors,
    and the rms error of the fusion with the weights those give (the truth's: the best that any
    variance estimate could do, errors weighed as independent)."""
    ok = np.isfinite(rec["R_classical"]).all(axis=(1, 2))
    ok[:skip] = False
    if ok.sum() < 3:
        return "too few frames with all three rotations"
    keys = ("R_network_corrected", "R_refined", "R_classical")
    e = np.stack([errors(rec["R_true"][ok], rec[key][ok]) for key in keys])  # (3, M, 3)
    C = np.einsum("imk,jmk->ij", e, e) / (3 * ok.sum())  # per axis, rad^2
    sd = np.sqrt(np.diag(C))
    corr = C / np.outer(sd, sd)
    estimated = rec["variances"][ok].mean(axis=0)

    def fused_rms(variances: np.ndarray) -> float:
        w = (1 / variances) / (1 / variances).sum()
        return float(np.degrees(np.sqrt(w @ C @ w)))

    deg2 = np.degrees(1.0) ** 2 * 1e3
    return (
        f"{ok.sum()} frames: rms {' / '.join(f'{d:.3f}' for d in np.degrees(sd))} | "
        f"correlation n-r {corr[0, 1]:.2f}, n-c {corr[0, 2]:.2f}, r-c {corr[1, 2]:.2f} | "
        f"variance 1e-3 deg^2 true {' / '.join(f'{v:.2f}' for v in np.diag(C) * deg2)}, "
        f"estimated {' / '.join(f'{v:.2f}' for v in estimated * deg2)} | "
        f"fused with those: {fused_rms(np.diag(C)):.3f} / {fused_rms(estimated):.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="", help="empty = the packaged model")
    parser.add_argument("--clips", nargs="*", default=list(CLIPS))
    parser.add_argument("--scales", default="1,2,3", help="refined-variance factors to replay")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    print(
        "clip | frames | RMS deg/frame: network / refined / classical / fused | calibration "
        "(1 = honest): refined covariance / fused variance / noise model at the true step | "
        "NLL per axis of the fused rotation: fused variance / noise model | "
        "refined weight: used / best fixed | without classical: "
        + " | ".join(f"x{s:g}" for s in scales)
    )
    for clip in args.clips:
        rec = record(args.checkpoint, clip)
        if not len(rec["weight"]):
            print(f"{clip} | 0 | the fusion never ran")
            continue
        e_net = errors(rec["R_true"], rec["R_network"])
        e_ref = errors(rec["R_true"], rec["R_refined"])
        ok = np.isfinite(rec["R_classical"]).all(axis=(1, 2))
        e_cls = errors(rec["R_true"][ok], rec["R_classical"][ok]) if ok.any() else np.nan
        e_fused = errors(rec["R_true"], rec["R_fused"])
        noise_var = noise_model_variance(rec)
        calibrations = (
            calibration(e_ref, rec["refined_var"]),
            calibration(e_fused, rec["fused_var"], skip=10),  # while the variances settle
            calibration(e_fused, noise_var),
        )
        likelihoods = (nll(e_fused, rec["fused_var"]), nll(e_fused, noise_var))
        grid = np.linspace(0.0, 1.0, 21)
        best = min(grid, key=lambda w: (((1 - w) * e_net + w * e_ref) ** 2).mean())
        replayed = [replay(rec, s, classical=False) for s in scales]
        cells = [f"{rms_deg(errors(rec['R_true'], R)):.3f} (w {w:.2f})" for R, w in replayed]
        fused = rms_deg(e_fused)
        print(
            f"{clip} | {len(rec['weight'])} | {rms_deg(e_net):.3f} / {rms_deg(e_ref):.3f} / "
            f"{rms_deg(e_cls):.3f} ({ok.sum()}) / {fused:.3f} | "
            + " / ".join(f"{c:.2f}" for c in calibrations)
            + f" | {likelihoods[0]:.2f} / {likelihoods[1]:.2f} | "
            f"{rec['weight'].mean():.2f} / {best:.2f} | " + " | ".join(cells)
        )
        print(
            f"  network / refined / classical ({int(rec['mismatches'])} classical mismatches "
            f"left out): {variance_check(rec)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`sfm-ros` end to end on tiny synthetic data: synth, train, eval, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_overrides
from sfm_ros.cli import main
from sfm_ros.messages import sources


def test_synth_writes_a_sequence(tmp_path: Path) -> None:
    out = tmp_path / "seq"
    assert (
        main(
            [
                "synth",
                "--domain",
                "corridor",
                "--frames",
                "3",
                "--height",
                "32",
                "--width",
                "48",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    images = sorted((out / "images").glob("*.png"))
    assert len(images) == 3
    assert np.asarray(Image.open(images[0])).shape == (32, 48, 3)


def test_train_then_eval_depth_and_pose(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", *tiny_overrides(run, steps=2)]) == 0
    ckpt = run / "checkpoints" / "last.pt"
    assert ckpt.is_file()

    depth_json = tmp_path / "depth.json"
    assert (
        main(
            [
                "eval",
                "depth",
                "--checkpoint",
                str(ckpt),
                "--data",
                "synthetic:street:5:7",
                "--json",
                str(depth_json),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "abs_rel" in table and "baseline: mean depth" in table
    depth = json.loads(depth_json.read_text())
    assert depth["model"]["num_images"] == 5
    assert 0 <= depth["model"]["median_scaled"]["a1"] <= 1

    pose_json = tmp_path / "pose.json"
    assert (
        main(
            [
                "eval",
                "pose",
                "--checkpoint",
                str(ckpt),
                "--data",
                "synthetic:street:8:7",
                "--json",
                str(pose_json),
                "--plot",
                str(tmp_path),
            ]
        )
        == 0
    )
    pose = json.loads(pose_json.read_text())
    (entry,) = pose["sequences"].values()
    assert {"ate5_mean", "re_mean", "ate_rmse_sim3", "t_err_percent"} <= set(entry["model"])
    assert "baseline: constant velocity" in entry and entry["frames_without_motion"] == 0
    classical_name = "baseline: ORB + essential matrix"
    classical = entry[classical_name]  # the classical baseline beside it
    assert np.isfinite(classical["re_mean"]) and entry["classical_failed_pairs"] >= 0
    assert pose["pipeline"]["pose_source"] == "fused"  # the default
    assert list(tmp_path.glob("trajectory_*.png"))
    # plotted as the ATE sees them: each method Sim(3)-aligned to the ground truth
    xyz = {k: np.array(v) for k, v in entry["trajectory_xyz"].items()}
    assert set(xyz) == {"ground truth", "model", "baseline: constant velocity", classical_name}
    rmse = np.sqrt(np.mean(np.sum((xyz["model"] - xyz["ground truth"]) ** 2, axis=1)))
    assert rmse == pytest.approx(entry["model"]["ate_rmse_sim3"], rel=1e-6)


def test_eval_runs_the_nodes_pipeline_with_its_parameters(
    small_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    """--params / --set reach the pipeline: refined poses differ from the network's, and a
    depth range that excludes everything leaves no valid depth (exit 2)."""
    data = ["--checkpoint", str(small_checkpoint), "--data", "synthetic:street:6:3"]
    data += ["--device", "cpu"]
    reports = {}
    for source in ("network", "refined"):
        out = tmp_path / f"{source}.json"
        args = ["eval", "pose", *data, "--set", f"pose_source={source}", "--json", str(out)]
        assert main(args) == 0
        reports[source] = json.loads(out.read_text())
    assert reports["refined"]["pipeline"]["pose_source"] == "refined"
    (net,), (ref,) = (r["sequences"].values() for r in reports.values())
    assert net["trajectory_xyz"]["model"] != ref["trajectory_xyz"]["model"]
    # synthetic sources render at the network's input size, or at --render-size
    sizes = []
    real_open_sources = sources.open_sources

    def recording_open_sources(specs, **kwargs):
        sequences = real_open_sources(specs, **kwargs)
        sizes.append(sequences[0].load(0).image.shape[:2])
        return sequences

    monkeypatch.setattr(sources, "open_sources", recording_open_sources)
    for extra in ([], ["--render-size", "48x160"]):
        assert main(["eval", "pose", *data, "--set", "pose_source=network", *extra]) == 0
    arch = torch.load(small_checkpoint, weights_only=True)["arch"]
    assert sizes == [(arch["height"], arch["width"]), (48, 160)]
    params = tmp_path / "params.yaml"
    params.write_text("depth_odometry:\n  ros__parameters:\n    min_depth: 500.0\n")
    assert main(["eval", "depth", *data, "--params", str(params), "--set", "max_depth=600"]) == 2


def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert main(["eval", "depth", "--checkpoint", str(bad), "--data", "synthetic:street:5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfm-ros: error:") and "corrupt" in err and "\n" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", *tiny_overrides(tmp_path / "r"), f"data.train=[{empty}]"]) == 2
    assert str(empty) in capsys.readouterr().err
    assert main(["train", "optim.nonsense=1"]) == 2
    assert "unknown parameter 'optim.nonsense'" in capsys.readouterr().err


def test_torchrun_data_parallel_on_cpu(tmp_path: Path) -> None:
    """Two gloo processes (the CPU stand-in for multi-GPU) train and rank 0 saves."""
    import os
    import subprocess
    import sys

    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29531",
        "-m",
        "sfm_ros.cli",
        "train",
        *tiny_overrides(run, steps=2),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    # the launcher's traceback ends stderr; the failing rank's own error is earlier in it
    causes = [line for line in result.stderr.splitlines() if "rror" in line or "terminate" in line]
    assert result.returncode == 0, "\n".join(causes[:20]) + "\n" + result.stderr[-1500:]
    assert result.stdout.count("done: 2 steps") == 1  # only rank 0 reports
    assert (run / "checkpoints" / "last.pt").is_file()


def _eval_depth(checkpoint: Path, *extra: str) -> list[str]:
    return ["eval", "depth", "--checkpoint", str(checkpoint), "--data", "synthetic:street:1:7",
            "--device", "cpu", *extra]  # fmt: skip


def test_eval_depth_counts_invalid_predictions_and_fails_on_none(
    small_checkpoint: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from sfm_ros.core.inference import DepthPoseEstimator

    real_step = DepthPoseEstimator.step

    def left_half_nan(self, image, K, stamp_ns, **kwargs):
        out = real_step(self, image, K, stamp_ns, **kwargs)
        out.depth_m[:, : out.depth_m.shape[1] // 2] = np.nan
        return out

    monkeypatch.setattr(DepthPoseEstimator, "step", left_half_nan)
    report = tmp_path / "depth.json"
    assert main(_eval_depth(small_checkpoint, "--json", str(report))) == 0
    out = capsys.readouterr().out
    assert "WARNING: the model gave no valid depth (NaN or inf) at" in out and "invalid" in out
    model = json.loads(report.read_text())["model"]
    assert 0.3 < model["invalid_fraction"] < 0.7 and model["num_images"] == 1

    def all_nan(self, image, K, stamp_ns, **kwargs):
        out = real_step(self, image, K, stamp_ns, **kwargs)
        out.depth_m[:] = np.nan
        return out

    monkeypatch.setattr(DepthPoseEstimator, "step", all_nan)
    assert main(_eval_depth(small_checkpoint)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("sfm-ros: error: the model predicts no valid depth")


def test_unusable_devices_are_one_line_errors(small_checkpoint: Path, capsys, monkeypatch) -> None:
    import torch

    assert main([*_eval_depth(small_checkpoint), "--device", "banana"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown device 'banana'" in err and "\n" not in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*_eval_depth(small_checkpoint), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA is not available" in err and "use cpu or auto" in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["finetune", "--bag", "synthetic:street", "--out", "o", "--max-frames", "-1"],
         "--max-frames: must be a positive integer, got -1"),
        (["finetune", "--bag", "synthetic:street", "--out", "o", "--steps-per-frame", "-3"],
         "--steps-per-frame: must be an integer >= 0, got -3"),
        (["eval", "depth", "--data", "synthetic:street", "--max-frames", "-1"],
         "--max-frames: must be a positive integer, got -1"),
        (["eval", "depth", "--data", "synthetic:street", "--max-frames", "two"],
         "--max-frames: must be a positive integer, got 'two'"),
        (["eval", "pose", "--data", "synthetic:street", "--render-size", "128"],
         "--render-size: expected HxW such as 128x416, got '128'"),
    ],
)  # fmt: skip
def test_negative_counts_are_refused(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

"""`sfm-ros` end to end on tiny synthetic data: synth, train, eval, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import tiny_overrides
from sfm_ros.cli import main


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
    assert {"ate5_mean", "ate_rmse_sim3", "t_err_percent"} <= set(entry["model"])
    assert "baseline: constant velocity" in entry
    assert list(tmp_path.glob("trajectory_*.png"))


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
    assert "unknown option optim.nonsense" in capsys.readouterr().err


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
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("done: 2 steps") == 1  # only rank 0 reports
    assert (run / "checkpoints" / "last.pt").is_file()

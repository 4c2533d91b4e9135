"""ONNX export and the onnxruntime backend of the estimator."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore

from sfm_ros.core.checkpoint import (
    atomic_torch_save,
    build_networks,
    load_checkpoint,
    make_checkpoint,
    networks_from_checkpoint,
)
from sfm_ros.core.errors import CheckpointError, InputError

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from sfm_ros import messages as cv  # noqa: E402
from sfm_ros.core.export import ExportError, export_onnx  # noqa: E402
from sfm_ros.core.inference import DepthPoseEstimator  # noqa: E402
from sfm_ros.core.online import OnlineAdapter, OnlineConfig  # noqa: E402
from sfm_ros.core.onnx_backend import OnnxUnavailableError, load_onnx_networks  # noqa: E402
from sfm_ros.core.synthetic import render_sequence  # noqa: E402
from sfm_ros.pipeline.config import PipelineConfig  # noqa: E402
from sfm_ros.pipeline.frame_pipeline import DepthOdometryPipeline  # noqa: E402


@pytest.fixture(scope="module")
def moving_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with explainability masks (new random layers) and a 100x pose head,
    so that poses are clearly not the identity."""
    ckpt = load_checkpoint(tiny_checkpoint)
    arch = {**ckpt["arch"], "use_mask": True}
    depth_net, pose_net = build_networks(arch)
    depth_net.load_state_dict(ckpt["depth_net"])
    pose_net.load_state_dict(ckpt["pose_net"], strict=False)
    with torch.no_grad():
        pose_net.pose_pred.weight.mul_(100.0)
    path = tmp_path_factory.mktemp("moving") / "moving.pt"
    atomic_torch_save(make_checkpoint(ckpt["step"], arch, {}, depth_net, pose_net), path)
    return path


@pytest.fixture(scope="module")
def export_dir(moving_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    export_onnx(moving_checkpoint, out)
    return out


def test_export_writes_models_and_sidecar(export_dir: Path, moving_checkpoint: Path) -> None:
    meta = json.loads((export_dir / "export.json").read_text())
    arch = load_checkpoint(moving_checkpoint)["arch"]
    assert meta["arch"] == arch
    assert meta["rotation"] == arch["rotation"]
    assert (meta["input"]["height"], meta["input"]["width"]) == (arch["height"], arch["width"])
    assert meta["checkpoint"]["path"] == str(moving_checkpoint.resolve())
    assert meta["outputs"]["pose"] == ["pose_vec", "mask"]
    assert max(meta["check"]["max_abs_diff"].values()) < 1e-3
    names = [i.name for i in ort.InferenceSession(str(export_dir / "pose.onnx")).get_inputs()]
    assert names == ["tgt", "srcs"]


def test_onnxruntime_matches_torch_with_other_batch(
    export_dir: Path, moving_checkpoint: Path
) -> None:
    depth_torch, pose_torch, ckpt = networks_from_checkpoint(moving_checkpoint)
    depth_torch.eval()
    pose_torch.eval()
    depth_ort, pose_ort, _ = load_onnx_networks(export_dir, ["CPUExecutionProvider"])
    H, W = ckpt["arch"]["height"], ckpt["arch"]["width"]
    gen = torch.Generator().manual_seed(3)
    tgt, srcs = torch.rand(3, 3, H, W, generator=gen), torch.rand(3, 2, 3, H, W, generator=gen)
    tgt[0] *= 0.3  # under the brightness band: `in_band` must be in the exported graph
    srcs[1, 0] *= 0.5  # an exposure step: so must `exposure_matched`
    with torch.no_grad():
        disp_ref = depth_torch(tgt)[0]
        T_ref, masks_ref = pose_torch(tgt, srcs)
    (disp,) = depth_ort(tgt)
    T, masks = pose_ort(tgt, srcs)
    assert disp.shape == disp_ref.shape == (3, 1, H, W)
    assert T.shape == (3, 2, 4, 4)
    assert (T_ref[..., :3, 3].abs().max()) > 1e-3  # the poses are not trivially the identity
    torch.testing.assert_close(disp, disp_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(T, T_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masks[0], masks_ref[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(InputError, match="takes 96x64"):
        depth_ort(torch.rand(1, 3, 32, 32))


def test_onnx_estimator_matches_torch_estimator(export_dir: Path, moving_checkpoint: Path) -> None:
    seq = render_sequence("street", 3, seed=0, height=48, width=80)
    ref = DepthPoseEstimator.from_checkpoint(moving_checkpoint, device="cpu")
    est = DepthPoseEstimator.from_onnx(export_dir, providers=["CPUExecutionProvider"])
    for i in range(3):
        a = ref.step(seq.images[i], seq.K, i, with_flow=True)
        b = est.step(seq.images[i], seq.K, i, with_flow=True)
        assert b.depth_m.shape == (48, 80)
        np.testing.assert_allclose(b.depth_m, a.depth_m, rtol=1e-4, atol=1e-5)
    assert np.linalg.norm(a.T_prev_cur[:3, 3]) > 1e-3
    np.testing.assert_allclose(b.T_prev_cur, a.T_prev_cur, atol=1e-5)
    np.testing.assert_allclose(b.explainability, a.explainability, atol=1e-5)
    np.testing.assert_allclose(b.flow, a.flow, atol=1e-3)


def test_an_export_folder_serves_as_the_model(
    export_dir: Path, moving_checkpoint: Path, tmp_path: Path
) -> None:
    """Node, bag tool and CLI take an export folder wherever they take a checkpoint."""
    est = DepthPoseEstimator.load(export_dir, device="cpu", fp16=True)  # fp16: warned, ignored
    assert est.backend == "onnxruntime CPU" and est.model_path == str(export_dir)
    assert est.checkpoint_path == str(moving_checkpoint.resolve())  # what a fine-tuner adapts
    assert DepthPoseEstimator.load(moving_checkpoint).backend == "torch"
    est.load_weights(moving_checkpoint)  # a fine-tuned version arrives: PyTorch takes over
    assert est.backend == "torch" and est.model_path == str(moving_checkpoint)

    seq = render_sequence("street", 2, seed=0, height=48, width=80)
    types = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
    pipe = DepthOdometryPipeline(PipelineConfig(checkpoint=str(export_dir)), types)
    pipe.on_camera_info(cv.camera_info_msg(types, seq.K, 80, 48, cv.header(types, 0, "cam")))
    msg = cv.numpy_to_image(types, seq.images[0], "rgb8", cv.header(types, 1, "cam"))
    assert np.isfinite(pipe.process(msg).depth_m).any()
    assert pipe.diagnostics()["backend"] == "onnxruntime CPU"

    adapter = OnlineAdapter(OnlineConfig(checkpoint=str(export_dir), out_dir=str(tmp_path / "a")))
    want = networks_from_checkpoint(moving_checkpoint)[0].state_dict()
    for key, value in adapter.depth_net.state_dict().items():
        torch.testing.assert_close(value.cpu(), want[key])
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in export_dir.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    meta = json.loads((moved / "export.json").read_text())
    meta["checkpoint"]["path"] = str(tmp_path / "elsewhere.pt")
    (moved / "export.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="fine-tuning needs that .pt checkpoint"):
        OnlineAdapter(OnlineConfig(checkpoint=str(moved), out_dir=str(tmp_path / "b")))


def test_export_rejects_bad_opset_and_fails_above_tolerance(
    moving_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExportError, match="opset must be in"):
        export_onnx(moving_checkpoint, tmp_path, opset=5)
    with pytest.raises(ExportError, match="differ from PyTorch"):
        export_onnx(moving_checkpoint, tmp_path, tolerance=0.0, check_batch=1)
    assert not (tmp_path / "export.json").exists()  # an unchecked export cannot be loaded
    with pytest.raises(CheckpointError, match="not an sfm_ros ONNX export"):
        DepthPoseEstimator.from_onnx(tmp_path)


def test_missing_onnxruntime_gives_install_hint(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    with pytest.raises(OnnxUnavailableError, match=r"pip install sfm_ros\[onnx\]"):
        export_onnx(tiny_checkpoint, tmp_path)
    with pytest.raises(OnnxUnavailableError, match="onnxruntime is not installed"):
        DepthPoseEstimator.from_onnx(tmp_path)


def test_cli_export_reports_errors_in_one_line(
    moving_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sfm_ros.cli import main

    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(moving_checkpoint),
                "--out",
                str(tmp_path),
                "--opset",
                "5",
            ]
        )
        == 2
    )
    assert "opset must be in [11, 20], got 5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "export.json").write_bytes(b"\x00{ not json"), "corrupt or not JSON"),
        (lambda d: (d / "export.json").write_text("[1, 2]"), "not an sfm_ros ONNX export"),
        (
            lambda d: (d / "export.json").write_text(
                json.dumps({**json.loads((d / "export.json").read_text()), "arch": {
                    **json.loads((d / "export.json").read_text())["arch"], "height": 0}})
            ),
            "height 0 is not a multiple of 8",
        ),
        (lambda d: (d / "depth.onnx").write_bytes(b"garbage"), "cannot load the ONNX model"),
        (lambda d: (d / "pose.onnx").write_bytes((d / "depth.onnx").read_bytes()),
         r"takes inputs \['image'\], expected \['tgt', 'srcs'\]"),
    ],
)  # fmt: skip
def test_damaged_export_folder_gives_one_line_errors(
    export_dir: Path, tmp_path: Path, damage, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sfm_ros.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    damage(broken)
    with pytest.raises(CheckpointError, match=message):
        DepthPoseEstimator.load(broken, device="cpu")
    args = ["eval", "depth", "--checkpoint", str(broken), "--data", "synthetic:street:1:7"]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sfm-ros: error:") and "\n" not in err

"""Checkpoints: round trip, versioning, atomic writes and one-line errors on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sfm_ros.core import checkpoint as ck
from sfm_ros.core.errors import CheckpointError

ARCH = {
    "depth_net": "resnet18_half",
    "depth_kwargs": {},
    "snippet_length": 3,
    "use_mask": False,
    "rotation": "euler",
    "height": 64,
    "width": 96,
}


def _ckpt(step: int, arch: dict = ARCH) -> dict:
    torch.manual_seed(step)
    depth_net, pose_net = ck.build_networks(arch)
    return ck.make_checkpoint(step, arch, {"note": "test"}, depth_net, pose_net)


def test_round_trip_restores_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    depth_net, pose_net = ck.build_networks(ARCH)
    path = tmp_path / "a.pt"
    ck.atomic_torch_save(ck.make_checkpoint(7, ARCH, {"x": 1}, depth_net, pose_net), path)
    depth2, pose2, loaded = ck.networks_from_checkpoint(path)
    assert loaded["step"] == 7 and loaded["config"] == {"x": 1}
    assert set(loaded["versions"]) == {"sfm_ros", "torch", "python"}
    image = torch.rand(1, 3, 64, 96)
    depth_net.eval(), depth2.eval(), pose_net.eval(), pose2.eval()
    assert torch.equal(depth_net(image)[0], depth2(image)[0])
    srcs = torch.rand(1, 2, 3, 64, 96)
    assert torch.equal(pose_net(image, srcs)[0], pose2(image, srcs)[0])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "corrupt"),
        (b"not a checkpoint at all", "corrupt"),
    ],
)
def test_unreadable_files_give_one_clear_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        ck.load_checkpoint(path)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "good.pt"
    ck.atomic_torch_save(_ckpt(1), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        ck.load_checkpoint(path)


def test_missing_foreign_and_future_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an sfm_ros checkpoint"):
        ck.load_checkpoint(tmp_path / "foreign.pt")
    future = {**_ckpt(1), "format_version": ck.CHECKPOINT_VERSION + 1}
    torch.save(future, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="upgrade sfm_ros"):
        ck.load_checkpoint(tmp_path / "future.pt")


def test_other_architecture_is_rejected_with_names(tmp_path: Path) -> None:
    ckpt = _ckpt(1)
    with pytest.raises(CheckpointError, match="height: checkpoint has 64, expected 128"):
        ck.check_arch(ckpt, {"height": 128})
    # weights of one architecture under the name of another
    wrong = {**ckpt, "arch": {**ARCH, "depth_net": "dispnet"}}
    ck.atomic_torch_save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="depth weights do not fit"):
        ck.networks_from_checkpoint(tmp_path / "wrong.pt")


def test_manager_keeps_last_k_and_best(tmp_path: Path) -> None:
    manager = ck.CheckpointManager(tmp_path, keep_last=2)
    for step, score in [(1, 0.5), (2, 0.3), (3, 0.4), (4, 0.6)]:
        manager.save(_ckpt(step), score=score)
    assert [p.name for p in manager.step_checkpoints()] == ["ckpt_00000003.pt", "ckpt_00000004.pt"]
    assert ck.load_checkpoint(tmp_path / "best.pt")["step"] == 2
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 4
    # a new manager remembers the best score
    assert ck.CheckpointManager(tmp_path).best_score == pytest.approx(0.3)


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    manager = ck.CheckpointManager(tmp_path)
    manager.save(_ckpt(1))

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        manager.save(_ckpt(2))
    monkeypatch.undo()
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_latest_skips_damaged_files(tmp_path: Path) -> None:
    manager = ck.CheckpointManager(tmp_path)
    manager.save(_ckpt(1))
    manager.save(_ckpt(2))
    (tmp_path / "last.pt").write_bytes(b"garbage")
    assert manager.latest() == tmp_path / "ckpt_00000002.pt"


def test_packed_checkpoint_is_smaller_and_equivalent(tmp_path: Path) -> None:
    src = tmp_path / "train.pt"
    depth_net, pose_net = ck.build_networks(ARCH)
    optimizer = torch.optim.Adam(depth_net.parameters())
    ckpt = ck.make_checkpoint(3, ARCH, {}, depth_net, pose_net, optimizer=optimizer.state_dict())
    ck.atomic_torch_save(ckpt, src)
    packed = ck.pack_checkpoint(src, tmp_path / "packed.pt")
    assert packed.stat().st_size < 0.6 * src.stat().st_size
    depth2, _, loaded = ck.networks_from_checkpoint(packed)
    assert "optimizer" not in loaded and loaded["step"] == 3
    image = torch.rand(1, 3, 64, 96)
    depth_net.eval(), depth2.eval()
    torch.testing.assert_close(depth2(image)[0], depth_net(image)[0], rtol=2e-2, atol=2e-2)

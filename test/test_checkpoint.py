"""Checkpoints: round trip, versioning, atomic writes and one-line errors on bad files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
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


# ---------------------------------------------------------------------- malformed files
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": {**ARCH, "height": 0}}, "height 0 is not a multiple of 8 of at least 32"),
        ({"arch": {**ARCH, "width": "96"}}, "width '96' is not a multiple of 8"),
        ({"arch": {**ARCH, "snippet_length": 4}}, "snippet_length 4 is not 3 or 5"),
        ({"arch": {**ARCH, "use_mask": "yes"}}, "use_mask 'yes' is not true or false"),
        ({"arch": [1, 2]}, "incomplete: missing"),
        ({"depth_net": [torch.zeros(1)]}, "depth weights are not a state dict"),
        ({"pose_net": {"w": 1.0}}, "pose weights hold non-tensor entries"),
        ({"step": -1}, "invalid step count -1"),
        ({"format_version": "1"}, "format version 1"),
    ],
)
def test_malformed_metadata_gives_one_clear_error(tmp_path: Path, change: dict, message: str):
    path = tmp_path / "odd.pt"
    torch.save({**_ckpt(1), **change}, path)
    with pytest.raises(CheckpointError, match=message) as info:
        ck.networks_from_checkpoint(path)
    assert "\n" not in str(info.value)


def _nan_checkpoint(path: Path, arch: dict = ARCH) -> Path:
    ckpt = _ckpt(1, arch)
    ckpt["depth_net"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v
                         for k, v in ckpt["depth_net"].items()}  # fmt: skip
    ck.atomic_torch_save(ckpt, path)
    return path


def test_checkpoint_full_of_nan_is_refused(tmp_path: Path) -> None:
    path = _nan_checkpoint(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="depth weight tensor.* hold NaN or inf"):
        ck.load_checkpoint(path)


def test_hot_swap_refuses_non_finite_weights_and_keeps_serving(
    small_checkpoint: Path, tmp_path: Path
) -> None:
    from sfm_ros.core.inference import DepthPoseEstimator

    estimator = DepthPoseEstimator.from_checkpoint(small_checkpoint, device="cpu")
    arch = ck.load_checkpoint(small_checkpoint)["arch"]
    bad = _nan_checkpoint(tmp_path / "nan.pt", arch)
    with pytest.raises(CheckpointError, match="NaN or inf"):
        estimator.load_weights(bad)
    depth_net, pose_net = ck.build_networks(arch)
    with torch.no_grad():
        next(pose_net.parameters()).fill_(float("inf"))
    with pytest.raises(CheckpointError, match="pose weight tensor"):
        estimator.swap_networks(depth_net, pose_net, source="in memory")
    assert estimator.model_version == 0 and estimator.model_path == str(small_checkpoint)
    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    K = np.array([[40.0, 0.0, 32.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])
    estimator.step(image, K, 0)
    out = estimator.step(image, K, 100_000_000)
    assert np.isfinite(out.T_prev_cur).all() and np.isfinite(out.depth_m).any()


def test_malicious_pickle_is_refused_with_torch_reason(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": ck.CHECKPOINT_FORMAT, "payload": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        ck.load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"refusing to load {path}") and "could run code" in message
    assert "GLOBAL" in message and "system" in message  # torch's own reason, not cut off
    assert "\n" not in message and not marker.exists()


# ---------------------------------------------------------------------- durable writes
def test_folder_is_flushed_after_the_rename(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ck.atomic_torch_save(_ckpt(1), tmp_path / "a.pt")
    assert events == ["fsync file", "replace", "fsync folder"]


def test_temp_files_of_killed_writers_are_removed_and_nothing_else(tmp_path: Path) -> None:
    old = time.time() - 2 * ck.STALE_TEMP_AGE_S
    orphans = [tmp_path / ".last.pt.k3j_x9q2.tmp", tmp_path / ".ckpt_00000002.pt.abcdefgh.tmp"]
    live = tmp_path / ".last.pt.zz99zz99.tmp"  # a writer busy right now
    users = [tmp_path / ".notes.tmp", tmp_path / "draft.tmp", tmp_path / ".last.pt.ABCDEFGH.tmp"]
    for path in [*orphans, live, *users]:
        path.write_bytes(b"partial")
    for path in [*orphans, *users]:
        os.utime(path, (old, old))
    ck.CheckpointManager(tmp_path)
    assert not any(p.exists() for p in orphans)
    assert live.exists() and all(p.exists() for p in users)

    # A later write of the same target also clears what a writer killed since left behind.
    orphan = tmp_path / ".last.pt.q1w2e3r4.tmp"
    orphan.write_bytes(b"partial")
    os.utime(orphan, (old, old))
    ck.atomic_torch_save(_ckpt(2), tmp_path / "last.pt")
    assert not orphan.exists() and live.exists()
    assert ck.load_checkpoint(tmp_path / "last.pt")["step"] == 2


def test_unwritable_finetune_output_is_one_clear_error(
    small_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    """The adapter's first publish into a folder that cannot exist (below a regular file)."""
    from sfm_ros.core.online import OnlineAdapter, OnlineConfig

    blocker = tmp_path / "a_file"
    blocker.write_text("user data")
    cfg = OnlineConfig(checkpoint=str(small_checkpoint), out_dir=str(blocker / "out"))
    adapter = OnlineAdapter(cfg.replace(device="cpu"))
    with pytest.raises(CheckpointError, match="cannot write the adapted model to .*a_file/out"):
        adapter._publish({"holdout_loss": 1.0})
    assert adapter.version == 0 and blocker.read_text() == "user data"
    # Through save() (the node's service and its final save): reported, not raised.
    monkeypatch.setattr(adapter, "check", lambda: adapter._publish({}))
    ok, message = adapter.save()
    assert not ok and message.startswith("not saved: cannot write the adapted model")

"""Training: the networks learn one snippet, gradients reach both, resume is exact, bad steps
are skipped and collapse is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from conftest import tiny_overrides
from sfm_ros.core.checkpoint import load_checkpoint
from sfm_ros.core.config import load_config
from sfm_ros.core.data import InMemorySequence, SnippetDataset
from sfm_ros.core.errors import CheckpointError, ConfigError
from sfm_ros.core.losses import LossConfig, ViewSynthesisLoss
from sfm_ros.core.models import build_depth_net, build_pose_net
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.train import CollapseMonitor, Trainer, _StepBatches, any_rank, forward_snippets
from sfm_ros.core.visualize import save_png


@pytest.fixture(scope="module")
def snippet() -> dict[str, torch.Tensor]:
    seq = render_sequence("street", 3, seed=3, height=64, width=96)
    ds = SnippetDataset(InMemorySequence.from_synthetic(seq), 3, height=64, width=96)
    return {k: v[None] for k, v in ds[0].items() if torch.is_tensor(v)}


def _loss(depth_net, pose_net, loss_fn, batch):
    out = forward_snippets(depth_net, pose_net, batch["tgt"], batch["srcs"])
    return loss_fn(batch["tgt"], batch["srcs"], out.disps, out.T_src_tgt, batch["K"], out.masks)


def test_gradients_reach_both_networks(snippet) -> None:
    torch.manual_seed(0)
    depth_net, pose_net = build_depth_net("resnet18_half"), build_pose_net(3, use_mask=True)
    loss, _ = _loss(
        depth_net, pose_net, ViewSynthesisLoss(LossConfig.preset("sfmlearner")), snippet
    )
    loss.backward()
    for net in (depth_net, pose_net):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def _ground_truth_loss(loss_fn: ViewSynthesisLoss, batch, use_mask: bool) -> float:
    """The loss of the true depth and pose: the floor that training should approach."""
    depth = batch["depth_m"].clone()
    depth[depth <= 0] = 100.0  # sky
    disps = [F.interpolate(1.0 / depth, scale_factor=0.5**s, mode="area") for s in range(4)]
    masks = [torch.ones(1, 2, *d.shape[-2:]) for d in disps] if use_mask else None
    loss, _ = loss_fn(batch["tgt"], batch["srcs"], disps, batch["T_src_tgt"], batch["K"], masks)
    return loss.item()


@pytest.mark.parametrize("preset", ["monodepth2", "sfmlearner"])
def test_networks_overfit_one_snippet(snippet, preset: str) -> None:
    """40 steps from scratch close at least half the gap between the initial loss and the
    loss of the ground-truth depth and pose."""
    torch.manual_seed(0)
    use_mask = preset == "sfmlearner"
    depth_net = build_depth_net("resnet18_half")
    pose_net = build_pose_net(3, use_mask=use_mask)
    loss_fn = ViewSynthesisLoss(LossConfig.preset(preset))
    params = list(depth_net.parameters()) + list(pose_net.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for _ in range(40):
        loss, _ = _loss(depth_net, pose_net, loss_fn, snippet)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    floor = _ground_truth_loss(loss_fn, snippet, use_mask)
    assert floor < losses[0]
    assert min(losses[-5:]) < losses[0] - 0.5 * (losses[0] - floor), (losses, floor)


def test_resume_gives_the_same_weights(tmp_path: Path) -> None:
    straight = load_config(overrides=tiny_overrides(tmp_path / "a", steps=4))
    Trainer(straight, progress=False).run()
    first = load_config(overrides=tiny_overrides(tmp_path / "b", steps=2))
    Trainer(first, progress=False).run()
    second = load_config(overrides=tiny_overrides(tmp_path / "b", steps=4))
    Trainer(second, resume=True, progress=False).run()
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4
    for net in ("depth_net", "pose_net"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{net}.{key} differs after resume"


def test_init_from_starts_a_new_input_size_from_trained_weights(tmp_path: Path) -> None:
    Trainer(load_config(overrides=tiny_overrides(tmp_path / "a", steps=2)), progress=False).run()
    last = tmp_path / "a" / "checkpoints" / "last.pt"
    bigger = {"data.height": 96, "data.width": 128, "model.init_from": str(last)}
    cfg = load_config(overrides=tiny_overrides(tmp_path / "b", **bigger))
    trainer = Trainer(cfg, progress=False)
    trained = load_checkpoint(last)
    assert trainer.step == 0
    for net, module in (("depth_net", trainer.depth_net), ("pose_net", trainer.pose_net)):
        for key, value in module.state_dict().items():
            assert torch.equal(value, trained[net][key]), f"{net}.{key} was not loaded"
    trainer.run()  # a resumed run continues from its own checkpoint, not from init_from
    resumed = Trainer(cfg, resume=True, progress=False)
    own = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert resumed.step == own["step"] == 4
    for key, value in resumed.depth_net.state_dict().items():
        assert torch.equal(value, own["depth_net"][key]), key
    other_head = {**bigger, "model.depth_output": "log_depth"}
    with pytest.raises(CheckpointError, match="depth_kwargs"):
        Trainer(load_config(overrides=tiny_overrides(tmp_path / "c", **other_head)), progress=False)


def test_velocity_supervision_needs_true_poses_and_logs_its_error(tmp_path: Path) -> None:
    cfg = load_config(overrides=tiny_overrides(tmp_path / "a", **{"loss.velocity_weight": 0.05}))
    trainer = Trainer(cfg, progress=False)
    batch = _StepBatches(trainer.train_set, batch_size=2, seed=0, rank=0)[0]
    stats = trainer.train_step(batch)
    assert stats is not None and stats["velocity"] > 0
    seq = render_sequence("street", 4, seed=3, height=64, width=96)
    images, K = seq.images, seq.K
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        save_png(folder / f"{i:03d}.png", image)
    (folder / "intrinsics.txt").write_text(" ".join(str(v) for v in K.ravel()) + "\n")
    no_poses = {"loss.velocity_weight": 0.05, "data.train": f"[{folder}]", "data.val": "[]"}
    with pytest.raises(ConfigError, match="velocity_weight needs true poses"):
        Trainer(load_config(overrides=tiny_overrides(tmp_path / "b", **no_poses)), progress=False)


def test_geometry_consistency_runs_depth_on_the_sources_and_logs_its_term(tmp_path: Path) -> None:
    cfg = load_config(overrides=tiny_overrides(tmp_path, **{"loss.consistency_weight": 0.5}))
    trainer = Trainer(cfg, progress=False)
    batch = _StepBatches(trainer.train_set, batch_size=2, seed=0, rank=0)[0]
    out = forward_snippets(trainer.depth_net, trainer.pose_net, batch["tgt"], batch["srcs"], True)
    B, S, _, H, W = batch["srcs"].shape
    assert out.src_disps.shape == (B, S, 1, H, W) and out.disps[0].shape == (B, 1, H, W)
    stats = trainer.train_step(batch)
    assert stats is not None and stats["consistency"] > 0


def test_run_writes_versioned_checkpoints_logs_and_previews(tmp_path: Path) -> None:
    cfg = load_config(overrides=tiny_overrides(tmp_path, steps=4, **{"log.val_every": 2}))
    summary = Trainer(cfg, progress=False).run()
    ckpts = tmp_path / "checkpoints"
    assert {p.name for p in ckpts.iterdir()} >= {
        "ckpt_00000002.pt",
        "ckpt_00000004.pt",
        "last.pt",
        "best.pt",
    }
    saved = load_checkpoint(ckpts / "last.pt")
    assert saved["config"]["data"]["height"] == 64  # the resolved config travels along
    assert {"optimizer", "scheduler", "scaler"} <= set(saved)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(list((tmp_path / "previews").glob("*.png"))) == 4
    # synthetic validation has ground truth: depth and pose metrics are reported
    assert {"photometric", "abs_rel", "a1", "snippet_ate"} <= set(summary.val)


def test_non_finite_loss_skips_the_step(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config(overrides=tiny_overrides(tmp_path, steps=3))
    trainer = Trainer(cfg, progress=False)
    real_forward = trainer.loss_fn.forward
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        loss, stats = real_forward(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan"), stats) if calls["n"] == 2 else (loss, stats)

    monkeypatch.setattr(trainer.loss_fn, "forward", sometimes_nan)
    before = {k: v.clone() for k, v in trainer.depth_net.state_dict().items()}
    summary = trainer.run()
    assert summary.skipped_nonfinite == 1
    after = trainer.depth_net.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)


SCENARIOS = [(True, False), (False, True), (False, False)]
"""Local flags of ranks 0 and 1 in each round of the two-process test."""


def _any_rank_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        decisions = [any_rank(flags[rank], torch.device("cpu")) for flags in SCENARIOS]
    finally:
        dist.destroy_process_group()
    (Path(out_dir) / f"rank{rank}.txt").write_text(repr(decisions))


def test_any_rank_gives_every_rank_the_same_decision(tmp_path: Path) -> None:
    """Two gloo processes: a flag raised on either rank (a NaN loss, the time limit) is seen by
    both, so both skip the step or stop together."""
    assert any_rank(True, torch.device("cpu")) and not any_rank(False, torch.device("cpu"))
    mp.spawn(_any_rank_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    expected = repr([True, True, False])
    assert (tmp_path / "rank0.txt").read_text() == (tmp_path / "rank1.txt").read_text() == expected


def test_a_step_skipped_or_a_stop_on_another_rank_is_followed(tmp_path: Path, monkeypatch) -> None:
    """The loss here is finite and the time budget unused, but another rank reports a NaN loss
    and its time limit: this rank skips the step without touching the weights, and stops."""
    local_flags = []

    def another_rank_says_yes(flag: bool, device: torch.device) -> bool:
        local_flags.append(flag)
        return True

    monkeypatch.setattr("sfm_ros.core.train.any_rank", another_rank_says_yes)
    trainer = Trainer(load_config(overrides=tiny_overrides(tmp_path, steps=3)), progress=False)
    before = [p.detach().clone() for p in trainer.optimizer.param_groups[0]["params"]]
    summary = trainer.run()
    assert local_flags == [False, False]  # finite loss, in time: both decisions came from outside
    assert summary.steps_done == 1 and summary.skipped_nonfinite == 1
    after = trainer.optimizer.param_groups[0]["params"]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1


def test_collapse_monitor_reports_constant_disparity_and_dead_mask() -> None:
    monitor = CollapseMonitor(patience=2)
    flat = torch.full((2, 1, 8, 8), 0.5)
    dead_mask = [torch.zeros(2, 2, 8, 8)]
    assert monitor.check(flat, dead_mask) == []
    messages = monitor.check(flat, dead_mask)
    assert any("disparity is constant" in m for m in messages)
    assert any("explainability mask went to zero" in m for m in messages)
    assert monitor.check(flat, dead_mask) == []  # reported once
    healthy = CollapseMonitor(patience=1)
    assert healthy.check(torch.rand(2, 1, 8, 8) + 0.1, [torch.ones(2, 2, 8, 8)]) == []


def test_resume_refuses_another_input_size_and_keeps_files(tmp_path: Path) -> None:
    Trainer(load_config(overrides=tiny_overrides(tmp_path, steps=2)), progress=False).run()
    last = tmp_path / "checkpoints" / "last.pt"
    before = last.read_bytes()
    other = load_config(overrides=tiny_overrides(tmp_path, steps=4, **{"data.height": 96}))
    with pytest.raises(CheckpointError, match="height: checkpoint has 64, expected 96"):
        Trainer(other, resume=True, progress=False)
    assert last.read_bytes() == before

"""`sfm-ros finetune`: a recording streamed in order through the OnlineAdapter, without ROS."""

from __future__ import annotations

import time

import pytest
import torch

from sfm_ros import cli
from sfm_ros.core.checkpoint import (
    load_checkpoint,
)
from sfm_ros.core.data import InMemorySequence
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.online import (
    LATEST,
    OnlineAdapter,
    OnlineConfig,
    adapt_sequences,
    torch_threads,
)
from sfm_ros.core.synthetic import render_sequence, write_sequence
from sfm_ros.messages.bag_io import make_bag

# No replay or memory (rendering costs seconds), and the test networks' nearly constant depth
# accepted.
FAST = [
    "--device", "cpu", "--no-progress", "--set", "warmup_snippets=1", "holdout_every=3",
    "replay_data=''", "memory_domains=''", "collapse_min_rel_std=1e-3",
]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_finetune_on_an_image_folder_writes_loadable_versions(small_checkpoint, tmp_path, capsys):
    folder, out = tmp_path / "corridor", tmp_path / "out"
    write_sequence(render_sequence("corridor", 15, seed=0, height=48, width=64), folder)
    args = ["finetune", "--bag", str(folder), "--checkpoint", str(small_checkpoint)]
    assert cli.main([*args, "--out", str(out), "--lr", "1e-3", *FAST, "save_period=2"]) == 0
    printed = capsys.readouterr().out
    assert f"starting from {small_checkpoint}" in printed
    assert "frames: 15" in printed and "snippets: 3 training, 2 held out" in printed
    assert "steps: 10 (0 skipped as non-finite)" in printed  # one a frame once warm
    assert "stopped by: end of the recording" in printed
    latest = load_checkpoint(out / LATEST)
    # Published at a check (every 2 steps), when the held-out loss had not worsened.
    assert latest["online"]["version"] >= 1 and latest["online"]["steps"] in (2, 4, 6, 8, 10)
    assert f"checkpoint: {out / LATEST}" in printed
    DepthPoseEstimator.from_checkpoint(out / LATEST, device="cpu")  # usable by everything else


def test_finetune_on_a_bag(small_checkpoint, tmp_path, capsys):
    bag = make_bag(tmp_path / "bag", synthetic="corridor", frames=9, height=48, width=64)
    args = ["finetune", "--bag", str(bag), "--checkpoint", str(small_checkpoint)]
    assert cli.main([*args, "--out", str(tmp_path / "out"), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "frames: 9" in printed and "snippets: 2 training, 1 held out" in printed


def test_without_checkpoint_starts_from_the_default_model_or_from_scratch(
    small_checkpoint, tmp_path, capsys, monkeypatch
):
    import sfm_ros.core.checkpoint as checkpoint

    args = ["finetune", "--bag", "synthetic:corridor:3", "--steps-per-frame", "0", *FAST]
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", tmp_path / "absent.pt")
    assert cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "starting from scratch" in capsys.readouterr().out
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", small_checkpoint)
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 0
    assert f"starting from {small_checkpoint}" in capsys.readouterr().out


def test_bad_input_exits_2(small_checkpoint, tmp_path, capsys):
    base = ["finetune", "--checkpoint", str(small_checkpoint), "--out", str(tmp_path)]
    assert cli.main([*base, "--bag", str(tmp_path / "missing")]) == 2
    assert cli.main([*base, "--bag", "synthetic:corridor:3", "--set", "duty_cycle=2"]) == 2
    assert "duty_cycle" in capsys.readouterr().err


def test_realtime_mode_paces_frames_and_trains_in_the_background(small_checkpoint, tmp_path):
    seq = render_sequence("corridor", 8, seed=0, height=32, width=64)
    frames = InMemorySequence("corridor", seq.images, seq.K, seq.stamps_ns)  # 10 Hz
    cfg = OnlineConfig(
        checkpoint=str(small_checkpoint), out_dir=str(tmp_path), device="cpu",
        warmup_snippets=1, holdout_every=3, duty_cycle=1.0, replay_data="", memory_domains="",
    )  # fmt: skip
    adapter = OnlineAdapter(cfg)
    start = time.perf_counter()
    summary = adapt_sequences(adapter, [frames], realtime=True, progress=False)
    assert time.perf_counter() - start >= 0.7 - 0.05  # 8 frames 0.1 s apart
    assert not adapter.running and summary.frames == 8
    assert summary.stats.snippets_train == 1 and summary.stats.steps >= 1


def test_a_step_budget_keeps_training_on_a_short_clip(small_checkpoint, tmp_path, capsys):
    args = ["finetune", "--bag", "synthetic:corridor:9", "--checkpoint", str(small_checkpoint)]
    out = tmp_path / "out"
    assert cli.main([*args, "--out", str(out), "--max-steps", "12", *FAST, "save_period=4"]) == 0
    printed = capsys.readouterr().out
    # 9 frames make 2 training snippets and 6 steps at one a frame; the budget asks for 12.
    assert "snippets: 2 training, 1 held out" in printed
    assert "steps: 12 (0 skipped as non-finite)" in printed and "stopped by: step budget" in printed
    assert "held-out depth at the last check" in printed


def test_a_time_budget_stops_reading_and_training(small_checkpoint, tmp_path, capsys):
    args = ["finetune", "--bag", "synthetic:corridor:30", "--checkpoint", str(small_checkpoint)]
    assert cli.main([*args, "--out", str(tmp_path), "--max-minutes", "0.0001", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "stopped by: time budget" in printed and "frames: 30" not in printed
    assert cli.main([*args, "--out", str(tmp_path), "--max-minutes", "-1"]) == 2
    assert "budgets must be positive" in capsys.readouterr().err


def test_threads_option_sets_the_training_threads(small_checkpoint, tmp_path, monkeypatch):
    seen = []
    real = OnlineAdapter.step_once

    def step_once(self):
        seen.append((self.cfg.threads, torch.get_num_threads()))
        return real(self)

    monkeypatch.setattr(OnlineAdapter, "step_once", step_once)
    args = ["finetune", "--bag", "synthetic:corridor:6", "--checkpoint", str(small_checkpoint)]
    with torch_threads(2):
        assert cli.main([*args, "--out", str(tmp_path), "--threads", "1", *FAST]) == 0
        assert seen and set(seen) == {(1, 1)} and torch.get_num_threads() == 2  # restored


def test_make_bag_help_shows_the_frame_limit(capsys):
    with pytest.raises(SystemExit):
        cli.main(["make-bag", "-h"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "the first frames of --images (default: 100)" in help_text

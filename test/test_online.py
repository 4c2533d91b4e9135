"""OnlineAdapter: keyframe gating, bounded buffer, adaptation, safeguards, publishing, threads."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sfm_ros.core.checkpoint import atomic_torch_save, load_checkpoint, resolve_checkpoint
from sfm_ros.core.errors import ConfigError, DatasetError, InputError
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.online import (
    LATEST,
    DepthGuard,
    OnlineAdapter,
    OnlineConfig,
    SnippetBuilder,
    camera_aspect_size,
    depth_stats,
    rank_correlation,
    torch_threads,
)
from sfm_ros.core.online.adapter import disparity_bounds
from sfm_ros.core.sources import open_source
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.synthetic.domains import DOMAINS

MS = 1_000_000


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors and a background thread: one intra-op thread is faster, above all on a
    busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corridor():
    """36 frames of a domain the tiny street checkpoint never saw."""
    return render_sequence("corridor", 36, seed=0, height=64, width=96)


# The test networks (untrained, or trained for 4 steps) predict a nearly constant depth (log
# spread ~7e-3, below the default collapse threshold): tests of other mechanics lower it.
NEARLY_CONSTANT_OK = {"collapse_min_rel_std": 1e-3}


def make_adapter(checkpoint: Path, out_dir: Path, on_publish=None, **kw) -> OnlineAdapter:
    values = {"warmup_snippets": 1, "holdout_every": 3, "device": "cpu", "save_period": 1000,
              "replay_data": "", "memory_domains": "", **NEARLY_CONSTANT_OK}  # fmt: skip
    cfg = OnlineConfig(checkpoint=str(checkpoint), out_dir=str(out_dir), **{**values, **kw})
    return OnlineAdapter(cfg, on_publish=on_publish)


def feed(adapter: OnlineAdapter, seq, count: int | None = None) -> list[str]:
    n = len(seq.images) if count is None else count
    return [adapter.push(seq.images[i], seq.K, int(seq.stamps_ns[i])) for i in range(n)]


def weights(adapter: OnlineAdapter) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.detach().clone()
        for name, net in (("depth", adapter.depth_net), ("pose", adapter.pose_net))
        for k, v in net.state_dict().items()
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------- config and gating
@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"duty_cycle": 0.0}, "duty_cycle"),
        ({"buffer_size": 0}, "buffer_size"),
        ({"replay_fraction": 1.0}, "replay_fraction"),
        ({"lr": "fast"}, "lr"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"no_such_thing": 1}, "no_such_thing"),
        ({"max_forgetting": -0.1}, "max_forgetting"),
        ({"memory_frames": 0}, "memory_frames"),
    ],
)
def test_config_rejects_bad_values(changes, match):
    assert OnlineConfig().replace(lr="1e-4").lr == 1e-4  # YAML reads 1e-4 as a string
    with pytest.raises(ConfigError, match=match):
        OnlineConfig().replace(**changes)


def test_builder_makes_disjoint_snippets_and_restarts_after_a_gap(corridor):
    builder = SnippetBuilder(3, min_motion=0.01, min_texture=0.02, max_gap_ns=500 * MS)
    K = corridor.K
    statuses = [builder.add(corridor.images[i], K, i * 100 * MS)[0] for i in range(2)]
    assert statuses == ["keyframe", "keyframe"]
    # 2 s later: the two frames are dropped and a new snippet starts.
    results = [builder.add(corridor.images[i], K, 2000 * MS + i * 100 * MS) for i in range(2, 5)]
    assert [r[0] for r in results] == ["keyframe", "keyframe", "snippet"]
    snippet = results[-1][1]
    assert snippet.frames.shape == (3, 3, 64, 96) and snippet.frames.dtype == torch.uint8
    assert snippet.stamp_ns == 2000 * MS + 3 * 100 * MS  # the middle frame is the target
    np.testing.assert_array_equal(snippet.frames[0].permute(1, 2, 0).numpy(), corridor.images[2])
    # The next snippet shares no frame with this one.
    assert builder.add(corridor.images[5], K, 2000 * MS + 500 * MS) == ("keyframe", None)


def test_static_input_produces_no_snippets_and_no_updates(small_checkpoint, corridor, tmp_path):
    adapter = make_adapter(small_checkpoint, tmp_path / "out", save_period=1)
    before = weights(adapter)
    frame = corridor.images[0]
    statuses = [adapter.push(frame, corridor.K, i * 100 * MS) for i in range(15)]
    # A keyframe older than max_keyframe_gap_s (1 s) is dropped: frame 11 starts anew.
    assert statuses == ["keyframe"] + ["static"] * 10 + ["keyframe"] + ["static"] * 3
    assert adapter.stats.skipped["static"] == 13 and len(adapter.buffer) == 0
    assert not adapter.ready() and adapter.step_once() is None
    adapter.start()
    time.sleep(0.3)
    adapter.stop()
    assert adapter.stats.steps == 0 and adapter.version == 0
    assert_same(before, weights(adapter))
    assert not (tmp_path / "out").exists()


def test_textureless_frames_and_bad_input(small_checkpoint, tmp_path):
    adapter = make_adapter(small_checkpoint, tmp_path)
    grey = np.full((48, 80, 3), 128, np.uint8)
    K = np.array([[40.0, 0, 39.5], [0, 40.0, 23.5], [0, 0, 1]])
    assert [adapter.push(grey, K, i * 100 * MS) for i in range(4)] == ["textureless"] * 4
    with pytest.raises(InputError, match="uint8"):
        adapter.push(grey.astype(np.float32), K, 0)
    with pytest.raises(InputError):
        adapter.push(grey, np.diag([40.0, 40.0, 2.0]), 0)  # last row is not [0, 0, 1]


def test_buffer_stays_within_its_bound_and_reports_memory(small_checkpoint, corridor, tmp_path):
    adapter = make_adapter(small_checkpoint, tmp_path, buffer_size=3, holdout_size=2)
    statuses = feed(adapter, corridor)
    assert statuses.count("snippet") == 8 and statuses.count("holdout") == 4
    assert len(adapter.buffer) == 3 and len(adapter.holdout) == 2
    per_snippet = 3 * 3 * 32 * 64 + 9 * 4  # uint8 frames at the network size + K
    held, bound = adapter.buffer_bytes()
    assert held == 5 * per_snippet and bound == 5 * per_snippet
    status = adapter.status()
    assert status["buffer fill"] == "3/3" and status["held-out fill"] == "2/2"


# ---------------------------------------------------------------------- adaptation
@pytest.fixture(scope="module")
def adapted(tiny_checkpoint, corridor, tmp_path_factory):
    """The tiny street model adapted for 15 steps on corridor frames (checks every 5)."""
    published = []
    out = tmp_path_factory.mktemp("adapted")
    cfg = OnlineConfig(
        checkpoint=str(tiny_checkpoint), out_dir=str(out), device="cpu", lr=1e-4,
        warmup_snippets=2, holdout_every=3, save_period=5, keep_versions=2, replay_data="",
        **NEARLY_CONSTANT_OK,
    )  # fmt: skip

    def on_publish(path: Path, version: int) -> None:
        # Called only after a passed check: the file holds the good weights.
        published.append((path, version, load_checkpoint(path)))

    adapter = OnlineAdapter(cfg, on_publish=on_publish)
    feed(adapter, corridor)
    start_loss = adapter.evaluate_holdout("current")
    results = [adapter.step_once() for _ in range(15)]
    return adapter, start_loss, results, published


def test_adapter_lowers_the_photometric_loss_on_a_new_domain(adapted):
    adapter, start_loss, results, published = adapted
    assert all(r is not None and not r.skipped for r in results)
    assert adapter.evaluate_holdout("start") == pytest.approx(start_loss)
    assert adapter.evaluate_holdout("good") < 0.95 * start_loss
    assert published and adapter.version == len(published)


def test_published_versions_increase_and_passed_their_check(adapted):
    adapter, _, results, published = adapted
    checks = [r.check for r in results if r.check is not None]
    assert [c.outcome for c in checks if c.outcome == "published"] == ["published"] * len(published)
    assert [v for _, v, _ in published] == list(range(1, len(published) + 1))
    for (path, version, ckpt), check in zip(
        published, [c for c in checks if c.outcome == "published"], strict=True
    ):
        assert path.name == f"adapted_{version:06d}.pt"
        assert ckpt["online"]["version"] == version
        assert ckpt["metrics"]["holdout_loss"] <= ckpt["metrics"]["previous_holdout_loss"]
        assert check.loss <= check.good_loss
    # Old versions are pruned; latest.pt is the newest version, loadable for inference.
    assert [p.name for p in adapter.versioned_checkpoints()] == [
        f"adapted_{v:06d}.pt" for v in range(max(1, adapter.version - 1), adapter.version + 1)
    ]
    latest = load_checkpoint(adapter.out_dir / LATEST)
    assert latest["online"]["version"] == adapter.version
    estimator = DepthPoseEstimator.from_checkpoint(adapter.out_dir / LATEST, device="cpu")
    depth = estimator.depth(np.zeros((64, 96, 3), np.uint8) + 90, np.array(
        [[48.0, 0, 47.5], [0, 48.0, 31.5], [0, 0, 1]]))  # fmt: skip
    assert depth.shape == (64, 96)


def test_resume_continues_from_its_own_output(adapted, tiny_checkpoint):
    adapter = adapted[0]
    resumed = OnlineAdapter(adapter.cfg.replace(lr=2e-5))
    assert resumed.version == adapter.version
    assert resumed.stats.steps == load_checkpoint(adapter.out_dir / LATEST)["online"]["steps"]
    assert_same(weights(resumed), weights(adapter))  # the adapter stands at its last good version
    assert resumed.optimizer.param_groups[0]["lr"] == 2e-5
    assert resumed.optimizer.state_dict()["state"]  # Adam moments restored
    fresh = OnlineAdapter(adapter.cfg.replace(resume=False))
    assert fresh.version == 0


def test_steps_are_deterministic_given_the_seed(small_checkpoint, corridor, tmp_path):
    runs = []
    for seed in (0, 0, 1):
        adapter = make_adapter(small_checkpoint, tmp_path / str(len(runs)), lr=1e-3, seed=seed,
                               buffer_size=8, batch_size=2)  # fmt: skip
        feed(adapter, corridor, 15)
        losses = [adapter.step_once().loss for _ in range(2)]
        runs.append((losses, weights(adapter)))
    assert runs[0][0] == runs[1][0]
    assert_same(runs[0][1], runs[1][1])
    assert runs[0][0][1] != runs[2][0][1]  # another seed samples other batches


def test_replay_of_original_data_and_anchor_to_the_start(small_checkpoint, corridor, tmp_path):
    adapter = make_adapter(small_checkpoint, tmp_path, lr=1e-3, replay_data="synthetic:street:4:0",
                           replay_fraction=0.5, anchor_weight=1.0)  # fmt: skip
    feed(adapter, corridor, 6)
    first, second = adapter.step_once(), adapter.step_once()
    assert first.stats["replay"] == second.stats["replay"] == 1  # 1 live + 1 street snippet
    assert first.stats["anchor"] == 0.0 < second.stats["anchor"]  # pulled back once moved
    # The scale term: each frame's mean log depth against the starting weights'.
    assert first.stats["scale"] < 1e-10 < second.stats["scale"]


def test_geometry_consistency_is_trained_on_request(small_checkpoint, corridor, tmp_path):
    for weight in (0.0, 0.5):
        adapter = make_adapter(small_checkpoint, tmp_path / str(weight), lr=1e-3,
                               consistency_weight=weight)  # fmt: skip
        feed(adapter, corridor, 6)
        result = adapter.step_once()
        assert not result.skipped
        assert (
            result.stats.get("consistency", 0.0) > 0
            if weight
            else "consistency" not in result.stats
        )


def test_default_replay_is_synthetic_rendered_lazily_at_the_adaptation_size(
    small_checkpoint, corridor, tmp_path
):
    sources = OnlineConfig().replay_data.split(",")
    assert sorted(source.split(":")[1] for source in sources) == sorted(DOMAINS)  # all it saw
    adapter = make_adapter(small_checkpoint, tmp_path, replay_data=OnlineConfig().replay_data,
                           batch_size=4, replay_fraction=0.5)  # fmt: skip
    assert adapter._replay is None  # nothing rendered before training needs it
    feed(adapter, corridor, 12)
    replayed = sum(adapter.step_once().stats["replay"] for _ in range(2))
    pool = adapter._replay
    assert len(pool) == 5 * 20  # non-overlapping 3-frame windows of 60 frames per domain
    assert 0 < pool.rendered_frames <= 3 * replayed  # only the snippets drawn were rendered
    snippet = pool.sample(np.random.default_rng(0), 1)[0]
    assert snippet.frames.shape == (3, 3, 32, 64)  # the adaptation size, not the renderer's


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("synthetic:nowhere:10:0", ConfigError, "unknown synthetic domain"),
        ("synthetic:street:1000:0", DatasetError, "at most 300 frames"),
        ("synthetic:street,/no/such/folder", DatasetError, "does not exist"),
    ],
)
def test_bad_replay_data_is_refused_at_construction(small_checkpoint, tmp_path, spec, error, match):
    with pytest.raises(error, match=match):
        make_adapter(small_checkpoint, tmp_path, replay_data=spec)
    with pytest.raises(ConfigError, match="unknown synthetic domain 'moon'"):
        make_adapter(small_checkpoint, tmp_path, memory_domains="street,moon")


@pytest.mark.parametrize(
    ("camera", "size"),
    [((640, 480), (96, 128)), ((1226, 370), (64, 224)), ((640, 360), (96, 160))],
)
def test_camera_aspect_size_keeps_the_pixel_count_in_multiples_of_32(camera, size):
    assert camera_aspect_size(64 * 208, *camera) == size


def test_camera_aspect_policy_adapts_and_publishes_at_the_camera_aspect(small_checkpoint, tmp_path):
    portrait = render_sequence("corridor", 12, seed=0, height=96, width=48)
    adapter = make_adapter(small_checkpoint, tmp_path, adapt_resolution="camera_aspect",
                           lr=1e-4, min_rank_correlation=0.0)  # fmt: skip
    assert (adapter.height, adapter.width) == (32, 64)  # the checkpoint's until a frame comes
    feed(adapter, portrait)
    assert (adapter.height, adapter.width) == (64, 32)  # 2048 pixels at 1:2
    assert adapter.buffer.sample(np.random.default_rng(0), 1)[0].frames.shape[-2:] == (64, 32)
    adapter.step_once()
    adapter.step_once()
    assert adapter.save()[0] and adapter.version == 1
    estimator = DepthPoseEstimator.from_checkpoint(tmp_path / LATEST, device="cpu")
    assert (estimator.height, estimator.width) == (64, 32)
    assert adapter.status()["adaptation size"] == "32x64 (camera_aspect)"
    more = make_adapter(small_checkpoint, tmp_path / "more", adapt_resolution="camera_aspect",
                        adapt_pixels=4 * 2048)  # fmt: skip
    more.push(portrait.images[0], portrait.K, 0)
    assert (more.height, more.width) == (128, 64)  # 8192 pixels at 1:2


def test_training_uses_its_own_thread_count(small_checkpoint, corridor, tmp_path):
    seen = []
    adapter = make_adapter(small_checkpoint, tmp_path, threads=1)
    real_step = adapter.step_once

    def step():
        seen.append(torch.get_num_threads())
        real_step()
        adapter._stop.set()  # one step is enough

    adapter.step_once = step
    with torch_threads(2):
        feed(adapter, corridor, 6)
        adapter.start()
        adapter._thread.join(10.0)
        assert seen == [1] and torch.get_num_threads() == 2  # this thread keeps its own


def test_starts_from_a_packaged_fp16_model(small_checkpoint, corridor, tmp_path):
    from sfm_ros.core.checkpoint import pack_checkpoint

    packed = pack_checkpoint(small_checkpoint, tmp_path / "packed.pt", fp16=True)
    adapter = make_adapter(packed, tmp_path / "out", anchor_weight=1.0)
    feed(adapter, corridor, 6)
    assert not adapter.step_once().skipped
    assert np.isfinite(adapter.evaluate_holdout("start"))  # fp16 start weights, fp32 networks


# ---------------------------------------------------------------------- safeguards
def test_divergence_rolls_back_exactly_and_publishes_nothing(
    small_checkpoint, corridor, tmp_path, caplog
):
    published = []
    adapter = make_adapter(small_checkpoint, tmp_path / "out", lr=1e3, save_period=2,
                           on_publish=lambda p, v: published.append(v))  # fmt: skip
    feed(adapter, corridor, 12)
    adapter.step_once()  # a normal step at an absurd learning rate
    with caplog.at_level(logging.WARNING):
        result = adapter.step_once()
    assert result.check is not None and result.check.outcome == "rolled_back"
    assert "rolled back to version 0" in caplog.text
    assert "divergence" in result.check.reason or "not finite" in result.check.reason
    # Exactly the starting weights again (the last good version), and its optimiser state.
    start = load_checkpoint(small_checkpoint)
    assert_same(weights(adapter), {
        **{f"depth.{k}": v for k, v in start["depth_net"].items()},
        **{f"pose.{k}": v for k, v in start["pose_net"].items()},
    })  # fmt: skip
    assert adapter.optimizer.state_dict()["state"] == {}  # Adam moments of version 0: none
    assert published == [] and adapter.version == 0 and adapter.stats.rollbacks == 1
    assert not (tmp_path / "out").exists()


def test_nonfinite_loss_skips_the_step(small_checkpoint, corridor, tmp_path, monkeypatch):
    adapter = make_adapter(small_checkpoint, tmp_path)
    feed(adapter, corridor, 6)
    before = weights(adapter)
    real = adapter.loss_fn.forward
    monkeypatch.setattr(
        adapter.loss_fn, "forward", lambda *a: (real(*a)[0] * float("nan"), {"total": 0.0})
    )
    result = adapter.step_once()
    assert result.skipped and np.isnan(result.loss)
    assert adapter.stats.skipped_nonfinite == 1
    assert_same(before, weights(adapter))


def test_collapse_rolls_back(small_checkpoint, corridor, tmp_path):
    adapter = make_adapter(small_checkpoint, tmp_path)
    feed(adapter, corridor, 12)
    good = weights(adapter)
    with torch.no_grad():
        for p in adapter.depth_net.parameters():
            p.zero_()  # constant disparity everywhere
    adapter._dirty = True  # as if a training step had produced these weights
    result = adapter.check()
    assert result.outcome == "rolled_back" and "depth collapsed" in result.reason
    assert result.depth["depth_spread"] == 0.0 < result.depth["depth_spread_start"]
    assert_same(good, weights(adapter))


@pytest.mark.parametrize("memory_domains", ["field", ""])
def test_forgetting_what_the_model_knew_is_refused_where_the_clip_checks_pass(
    corridor, tmp_path, memory_domains
):
    # The packaged model adapted to a corridor for a few steps: the clip's held-out loss
    # improves and its depth statistics stay in bounds, but depth on the field's memory frames
    # gets worse than the starting weights' by more than the (here tight) limit.
    adapter = make_adapter(resolve_checkpoint(""), tmp_path, lr=1e-4, save_period=4,
                           memory_domains=memory_domains, memory_frames=1, max_forgetting=0.02,
                           collapse_min_rel_std=0.02)  # fmt: skip
    feed(adapter, corridor, 12)
    (check,) = [r.check for r in (adapter.step_once() for _ in range(4)) if r.check is not None]
    assert check.loss < check.good_loss
    if memory_domains:
        # Not published, nothing else refused it, and training goes on from these weights.
        assert check.outcome == "held" and check.reason.startswith("forgetting: field")
        assert "; " not in check.reason and adapter.stats.rollbacks == 0
        assert check.depth["memory_worst_change"] > 0.02
        assert check.depth["memory_abs_rel_start"] == pytest.approx(0.15, abs=0.05)
        assert adapter.version == 0 and not list(tmp_path.glob("*.pt"))
        trained = weights(adapter)
        adapter.step_once()
        assert not all(torch.equal(trained[k], v) for k, v in weights(adapter).items())
        assert adapter.status()["held for forgetting"] == "1"
    else:
        assert check.outcome == "published" and "memory_abs_rel" not in check.depth


def saturated_copy(checkpoint: Path, out: Path) -> Path:
    """``checkpoint`` with its disparity heads' biases at +50: disparity alpha + beta, i.e.
    depth 0.0999 at every pixel (the network's near bound), as in the indoor drone report."""
    ckpt = load_checkpoint(checkpoint)
    for name, value in ckpt["depth_net"].items():
        if name.startswith("disp_heads.") and name.endswith(".bias"):
            value.fill_(50.0)
    atomic_torch_save(ckpt, out)
    return out


def test_a_collapsed_network_is_never_published_even_when_its_predecessor_was(
    small_checkpoint, corridor, tmp_path
):
    # The starting weights (= version 0, the last good version) are collapsed already: before
    # the fix a collapse only counted when it was new, so every later collapsed version passed.
    start = saturated_copy(small_checkpoint, tmp_path / "saturated.pt")
    estimator = DepthPoseEstimator.from_checkpoint(start, device="cpu")
    assert np.isnan(estimator.depth(corridor.images[0], corridor.K)).all()  # 0.0999 < min_depth
    published = []
    adapter = make_adapter(start, tmp_path / "out", lr=1e-3, save_period=2,
                           on_publish=lambda p, v: published.append(v))  # fmt: skip
    feed(adapter, corridor, 18)
    checks = [r.check for r in (adapter.step_once() for _ in range(6)) if r.check is not None]
    assert [c.outcome for c in checks] == ["rolled_back"] * 3
    for check in checks:
        assert "depth collapsed" in check.reason and "depth saturated: 100%" in check.reason
    assert "version 0 is current (the starting weights)" in adapter.save()[1]
    assert published == [] and adapter.version == 0 and not (tmp_path / "out").exists()
    assert adapter.lr == pytest.approx(1e-3 / 8)  # halved after each rollback
    adapter.reset()
    assert adapter.lr == 1e-3


def test_real_indoor_clips_a_collapse_is_refused_even_after_one_was_accepted(shared_data, tmp_path):
    """The drone report on real images: the packaged model, driven to collapse on the NYU
    clips (a high learning rate, no scale term), predicts a constant depth at the network's
    bound. (Before the loss counted out-of-view pixels, such weights had a *better* held-out
    photometric loss; now they score worse.) Even with such weights already accepted as the
    last good version, the next collapsed weights are refused."""
    clips = [shared_data / "clips" / f"nyu_{i}" for i in range(4)]
    if not all(c.is_dir() for c in clips):
        pytest.skip("the NYU clips are absent")
    published = []
    cfg = OnlineConfig(
        checkpoint=str(resolve_checkpoint("")), out_dir=str(tmp_path / "out"), device="cpu",
        lr=1e-2, scale_weight=0.0, replay_data="", warmup_snippets=1, holdout_every=3,
        save_period=1000,
    )  # fmt: skip
    adapter = OnlineAdapter(cfg, on_publish=lambda p, v: published.append(v))
    for clip in clips:
        adapter.new_sequence()
        (seq,) = open_source(str(clip))
        for i in range(len(seq)):
            frame = seq.load(i)
            adapter.push(frame.image, frame.K, frame.stamp_ns)
    assert len(adapter.holdout) >= 2 and len(adapter.buffer) >= 4
    adapter.step_once()
    adapter.step_once()
    assert adapter.evaluate_holdout("current") > adapter.evaluate_holdout("start")
    adapter._good = adapter._snapshot()  # accepted, as the old check did with a collapsed start
    adapter.step_once()
    result = adapter.check()
    assert result.outcome == "rolled_back" and "depth collapsed" in result.reason
    assert result.depth["depth_saturation"] > 0.9 and result.depth["depth_saturation_start"] < 0.5
    assert published == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("output", ["disparity", "log_depth"])
def test_saturation_is_measured_at_the_network_output_bounds(output):
    from sfm_ros.core.models import build_depth_net

    net = build_depth_net("resnet18_half", output=output).eval()
    lo, hi = disparity_bounds(net)
    expected = (0.01, 10.01) if output == "disparity" else (1 / 300, 1 / 0.05)  # its defaults
    assert (lo, hi) == pytest.approx(expected)
    images = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    for sign in (1.0, -1.0):  # heads driven to the near, then to the far bound
        with torch.no_grad():
            for name, value in net.state_dict().items():
                if name.startswith("disp_heads.") and name.endswith(".bias"):
                    value.fill_(50.0 * sign)
            stats = depth_stats(net(images)[0], (lo, hi))
        assert stats.saturation == 1.0 and stats.spread < 1e-6


def test_depth_guard_refuses_saturation_spread_scale_and_ordering_changes():
    guard = DepthGuard(
        min_spread=0.02, max_saturation=0.5, max_saturation_increase=0.05, max_spread_ratio=2.0,
        max_scale_change=0.25, min_rank_correlation=0.8,
    )  # fmt: skip
    bounds = (0.01, 10.01)
    ramp = torch.linspace(-1.0, 1.0, 16 * 24).view(1, 1, 16, 24)
    disp = (ramp + torch.tensor([0.0, 0.3]).view(2, 1, 1, 1)).exp()  # 2 images, in bounds
    ref = depth_stats(disp, bounds)
    assert ref.saturation == 0.0 and ref.spread == pytest.approx(0.5796, abs=1e-4)
    assert guard.check(ref, ref, ref, 3) == []
    assert rank_correlation(ref, ref) == pytest.approx(1.0)

    near = disp.clone()
    near[..., :4, :] = 10.01  # a quarter of the pixels at the near bound
    reasons = guard.check(depth_stats(near, bounds), ref, ref, 3)
    assert reasons[0].startswith("depth saturation: 25.0% of held-out pixels at the output")
    flat = guard.check(depth_stats(disp**0.4, bounds), ref, ref, 3)
    assert any(r.startswith("depth spread") for r in flat)
    scaled = guard.check(depth_stats(disp * 2.0, bounds), ref, ref, 3)
    assert scaled == ["depth scale drift: held-out median depth x0.50 from version 3"]
    order = torch.randperm(disp[0].numel(), generator=torch.Generator().manual_seed(0))
    shuffled = disp.flatten(1)[:, order].view_as(disp)
    reasons = guard.check(depth_stats(shuffled, bounds), ref, ref, 3)
    assert reasons == [r for r in reasons if r.startswith("depth ordering: rank correlation")]
    assert reasons
    # Collapse is absolute: refused even when both references are collapsed too.
    constant = depth_stats(torch.full_like(disp, 10.01), bounds)
    reasons = guard.check(constant, constant, constant, 3)
    assert reasons[0].startswith("depth collapsed") and "depth saturated: 100%" in reasons[1]


def test_save_and_reset(small_checkpoint, corridor, tmp_path):
    published = []
    adapter = make_adapter(small_checkpoint, tmp_path, lr=1e-3,
                           on_publish=lambda p, v: published.append(v))  # fmt: skip
    start = weights(adapter)
    assert adapter.save()[0]  # nothing trained: nothing to write, and that is fine
    feed(adapter, corridor, 12)
    for _ in range(3):
        adapter.step_once()
    ok, message = adapter.save()
    assert ok and published == [1] and "version 1" in message
    message = adapter.reset()
    assert published == [1, 2] and "version 2" in message
    assert_same(start, weights(adapter))
    assert len(adapter.buffer) == 0 and len(adapter.holdout) == 0
    reset = load_checkpoint(tmp_path / LATEST)
    assert reset["online"]["version"] == 2
    assert_same({f"depth.{k}": v for k, v in reset["depth_net"].items()},
                {k: v for k, v in start.items() if k.startswith("depth.")})  # fmt: skip


def test_versions_are_weights_only_bounded_and_foreign_files_are_left_alone(
    small_checkpoint, corridor, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "adapted_000003.pt").write_text("the user's own file\n")
    (tmp_path / "mine.pt").write_text("kept\n")
    (out / "adapted_000004.pt").symlink_to(tmp_path / "mine.pt")
    (out / "notes.txt").write_text("notes\n")
    adapter = make_adapter(small_checkpoint, out, lr=1e-3, keep_versions=1)
    feed(adapter, corridor, 12)
    for _ in range(3):
        adapter.step_once()
    assert adapter.save()[0] and adapter.version == 5  # numbering continues after the files
    assert "optimizer" not in load_checkpoint(out / "adapted_000005.pt")
    assert "optimizer" in load_checkpoint(out / LATEST)  # Adam moments: twice the weights
    assert (out / "adapted_000005.pt").stat().st_size < 0.4 * (out / LATEST).stat().st_size
    adapter.reset()  # publishes the starting weights as version 6
    ours = [p.name for p in adapter.versioned_checkpoints() if not p.is_symlink()]
    assert sorted(ours) == ["adapted_000003.pt", "adapted_000006.pt"]  # version 5 pruned
    assert (out / "adapted_000003.pt").read_text() == "the user's own file\n"
    assert (out / "adapted_000004.pt").is_symlink() and (tmp_path / "mine.pt").is_file()
    assert (out / "notes.txt").is_file()


# ---------------------------------------------------------------------- threads
def test_background_training_respects_the_duty_cycle(small_checkpoint, corridor, tmp_path):
    adapter = make_adapter(small_checkpoint, tmp_path, duty_cycle=0.25)
    assert adapter.pause_after(0.1) == pytest.approx(0.3)
    pusher = threading.Thread(target=feed, args=(adapter, corridor, 12))
    adapter.start()
    pusher.start()  # frames arrive from another thread while training runs
    pusher.join()
    time.sleep(1.5)
    adapter.set_enabled(False)
    time.sleep(0.2)
    steps = adapter.stats.steps
    time.sleep(0.5)
    assert adapter.stats.steps == steps > 0  # paused
    adapter.stop()
    assert not adapter.running and not adapter.stats.error
    assert 0 < adapter.stats.duty_measured <= 0.25 + 0.05


class _ConstantDepth(nn.Module):
    """Disparity `value` everywhere, slowly (so that swaps happen mid-frame)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        time.sleep(0.004)
        return [torch.ones_like(x[:, :1]) * self.value]


class _ConstantMotion(nn.Module):
    """Every source 'value' metres behind the target along z."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, tgt: torch.Tensor, srcs: torch.Tensor):
        time.sleep(0.004)
        T = torch.eye(4).repeat(srcs.shape[0], srcs.shape[1], 1, 1)
        T[..., 2, 3] = self.value
        return T, None


def test_estimator_model_swap_is_atomic():
    arch = {"height": 16, "width": 16, "snippet_length": 3}
    estimator = DepthPoseEstimator(_ConstantDepth(1.0), _ConstantMotion(1.0), arch, device="cpu")
    stop = threading.Event()

    def swapper() -> None:
        value = 1.0
        while not stop.is_set():
            value = 3.0 - value  # 1, 2, 1, 2 ...
            estimator.swap_networks(_ConstantDepth(value), _ConstantMotion(value))
            time.sleep(0.003)

    thread = threading.Thread(target=swapper)
    thread.start()
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    K = np.array([[10.0, 0, 7.5], [0, 10.0, 7.5], [0, 0, 1]])
    outputs = [estimator.step(image, K, i) for i in range(40)]
    stop.set()
    thread.join()
    values = set()
    for out in outputs[1:]:
        value = 1.0 / float(np.nanmean(out.depth_m))
        assert np.nanstd(out.depth_m) < 1e-6
        # Depth and motion of a frame come from the same networks (T_prev_cur = T_src_tgt^-1).
        assert out.T_prev_cur[2, 3] == pytest.approx(-value, rel=1e-5)
        values.add(round(value))
    assert values == {1, 2}

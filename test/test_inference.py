"""DepthPoseEstimator: any image size and K in, depth at input resolution and SE(3) poses out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sfm_ros.core.camera import Camera
from sfm_ros.core.checkpoint import DEFAULT_MODEL, build_networks, load_checkpoint
from sfm_ros.core.errors import CheckpointError, InputError
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.metrics import rotation_error_deg
from sfm_ros.core.online.adapter import disparity_bounds
from sfm_ros.core.sources import open_source
from sfm_ros.core.synthetic import render_sequence


@pytest.fixture(scope="module")
def frames():
    return render_sequence("street", 4, seed=5, height=50, width=130)


def _is_se3(T: np.ndarray) -> bool:
    R = T[:3, :3]
    return (
        T.shape == (4, 4)
        and np.allclose(R @ R.T, np.eye(3), atol=1e-5)
        and np.isclose(np.linalg.det(R), 1.0, atol=1e-5)
        and np.allclose(T[3], [0, 0, 0, 1])
    )


def test_depth_at_input_resolution(tiny_checkpoint: Path, frames) -> None:
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    depth = est.depth(frames.images[0], frames.K)
    assert depth.shape == (50, 130) and depth.dtype == np.float32
    finite = np.isfinite(depth)
    assert finite.all() and (depth[finite] > 0).all()
    grey = est.depth(frames.images[0].mean(axis=2).astype(np.uint8), frames.K)
    assert grey.shape == (50, 130)


def test_cpu_resize_matches_float_antialiased_resize(tiny_checkpoint: Path) -> None:
    # The CPU path resizes uint8 for speed; it must agree with a float resize up to rounding.
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)  # 64x96 network input
    image = np.random.default_rng(0).integers(0, 256, (150, 260, 3), dtype=np.uint8)
    K = np.array([[120.0, 0, 129.5], [0, 120.0, 74.5], [0, 0, 1]])
    fast = est._prepare(image, Camera(K, 260, 150)).image
    as_float = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    exact = torch.nn.functional.interpolate(
        as_float, size=(64, 96), mode="bilinear", align_corners=False, antialias=True
    )
    assert fast.shape == exact.shape == (1, 3, 64, 96)
    assert (fast - exact).abs().max() <= 1.0 / 255.0  # one grey level (fixed-point weights)


def test_depth_bounds_hold_and_range_masks(tiny_checkpoint: Path, frames) -> None:
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    out = est.step(frames.images[0], frames.K)
    near, far = out.depth_bounds_m
    assert np.isfinite(out.depth_m).all()
    assert near <= out.depth_m.min() and out.depth_m.max() <= far
    # a narrower range than the network's output NaNs the pixels outside it, nothing else
    cut_at = float(np.median(out.depth_m))
    narrow = DepthPoseEstimator.from_checkpoint(tiny_checkpoint, max_depth=cut_at)
    cut = narrow.step(frames.images[0], frames.K)
    beyond = out.depth_m > cut_at
    assert beyond.any() and np.isnan(cut.depth_m[beyond]).all()
    np.testing.assert_array_equal(cut.depth_m[~beyond], out.depth_m[~beyond])
    assert cut.depth_bounds_m[1] <= cut_at


def test_crop_policy_marks_unseen_pixels_nan(tiny_checkpoint: Path, frames) -> None:
    # 50x130 is wider than the 64x96 network input: the crop policy drops the sides
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint, resize_policy="crop")
    depth = est.depth(frames.images[0], frames.K)
    assert depth.shape == (50, 130)
    assert np.isnan(depth[:, 0]).all() and np.isnan(depth[:, -1]).all()
    assert np.isfinite(depth[:, 65]).all()


def test_stream_poses_and_resets(tiny_checkpoint: Path, frames) -> None:
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    first = est.step(frames.images[0], frames.K, 0)
    assert first.T_prev_cur is None and first.depth_m.shape == (50, 130)
    second = est.step(frames.images[1], frames.K, 100, with_flow=True)
    assert _is_se3(second.T_prev_cur)
    assert second.flow.shape == (50, 130, 2) and np.isfinite(second.flow).all()
    third = est.step(frames.images[2], frames.K, 200)
    assert _is_se3(third.T_prev_cur)
    # a resolution change restarts the pose chain instead of mixing sizes
    small = frames.images[3][::2, ::2].copy()
    K_small = frames.K.copy()
    K_small[:2] /= 2
    assert est.step(small, K_small, 300).T_prev_cur is None
    est.reset()
    assert est.step(frames.images[0], frames.K, 400).T_prev_cur is None


def test_observed_frames_chain_into_the_next_steps_motion(tiny_checkpoint: Path, frames) -> None:
    """A live node keeps only the newest frame: the frames it drops are observed, and the next
    motion is the chain of the motions between neighbouring frames, exactly as stepping them."""
    every = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    motions = [every.step(image, frames.K).T_prev_cur for image in frames.images]
    chained = motions[1] @ motions[2] @ motions[3]
    dropping = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    assert dropping.step(frames.images[0], frames.K).T_prev_cur is None
    dropping.observe(frames.images[1], frames.K)
    dropping.observe(frames.images[2], frames.K)
    out = dropping.step(frames.images[3], frames.K)
    np.testing.assert_allclose(out.T_prev_cur, chained, atol=1e-6)
    # a stream whose first frames are only observed has no motion at its first step
    dropping.reset()
    dropping.observe(frames.images[0], frames.K)
    assert dropping.step(frames.images[1], frames.K).T_prev_cur is None
    assert _is_se3(dropping.step(frames.images[2], frames.K).T_prev_cur)


def test_first_motion_of_a_stream_is_as_long_as_inside_a_full_snippet() -> None:
    """The packaged model on a held-out street: the first motion of a stream (older frames
    mirrored) against the same motion seen with its real predecessor; repeating the first
    frame instead made it 20 % shorter."""
    seq = render_sequence("street", 9, seed=1000, height=64, width=208)
    est = DepthPoseEstimator.load()
    ratios = []
    for k in range(1, 8, 2):
        est.reset()
        est.step(seq.images[k], seq.K)
        first = est.step(seq.images[k + 1], seq.K).T_prev_cur
        est.reset()
        for i in (k - 1, k):
            est.step(seq.images[i], seq.K)
        full = est.step(seq.images[k + 1], seq.K).T_prev_cur
        ratios.append(np.linalg.norm(first[:3, 3]) / np.linalg.norm(full[:3, 3]))
    assert 0.9 < np.mean(ratios) < 1.1, ratios


def test_an_underexposed_frame_gets_the_depth_of_a_well_exposed_one() -> None:
    """The packaged model, held-out street frames (mean grey 0.29-0.30) darkened to a third:
    their depth's Abs Rel within 5 % of the clean frames' (before the input was brought into
    the brightness band it learnt: 0.33 against 0.21, and 0.31 against 0.18)."""
    seq = render_sequence("street", 2, seed=1001, height=64, width=208)
    est = DepthPoseEstimator.load()
    for image, true_m in zip(seq.images, seq.depth_m, strict=True):
        valid = true_m > 0
        abs_rel = []
        for gain in (1.0, 1 / 3):
            depth_m = est.depth((image * gain).astype(np.uint8), seq.K)[valid]
            depth_m *= np.median(true_m[valid]) / np.median(depth_m)
            abs_rel.append(np.mean(np.abs(depth_m - true_m[valid]) / true_m[valid]))
        assert abs_rel[1] < 1.05 * abs_rel[0]


def test_an_exposure_step_between_frames_leaves_the_motion_close_to_as_it_was() -> None:
    """The packaged model, a held-out street: the frames around the target darkened by half (an
    auto-exposure step) give nearly the snippet poses of the clean frames. Unmatched, they were
    0.8 and 1.9 degrees and 26 % apart (KITTI 00's steps: 3 degrees)."""
    seq = render_sequence("street", 3, seed=1001, height=64, width=208)
    images = [image & 0xFE for image in seq.images]  # even grey levels: halving is exact
    est = DepthPoseEstimator.load()
    clean = est.snippet_poses(images, seq.K)[1:]  # relative to the first frame
    stepped = est.snippet_poses([images[0] // 2, images[1], images[2] // 2], seq.K)[1:]
    assert np.all(rotation_error_deg(clean, stepped) < 0.1)
    shift = np.linalg.norm(clean[:, :3, 3] - stepped[:, :3, 3], axis=1)
    assert np.all(shift < 0.1 * np.linalg.norm(clean[:, :3, 3], axis=1))


def test_snippet_poses_are_relative_to_the_first_frame(tiny_checkpoint, frames):
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    poses = est.snippet_poses([frames.images[0]] * 3, frames.K)
    assert poses.shape == (3, 4, 4) and np.allclose(poses[0], np.eye(4), atol=1e-6)


def test_swap_is_atomic_and_versioned(tiny_checkpoint: Path, frames) -> None:
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    before = est.depth(frames.images[0], frames.K)
    ckpt = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(123)
    depth_net, pose_net = build_networks(ckpt["arch"])  # different (random) weights
    assert est.swap_networks(depth_net, pose_net) == 1
    out = est.step(frames.images[0], frames.K, 0)
    assert out.model_version == 1
    assert not np.allclose(out.depth_m, before)
    assert est.load_weights(tiny_checkpoint) == 2
    np.testing.assert_allclose(est.depth(frames.images[0], frames.K), before, rtol=1e-5)


def test_bad_inputs_raise_clear_errors(tiny_checkpoint: Path, frames, tmp_path: Path) -> None:
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    image = frames.images[0]
    with pytest.raises(InputError, match="uint8"):
        est.depth(image.astype(np.float32), frames.K)
    with pytest.raises(InputError, match="shape"):
        est.depth(image[..., :2], frames.K)
    with pytest.raises(InputError):
        est.depth(image, np.zeros((3, 3)))
    bad_K = frames.K.copy()
    bad_K[0, 0] = np.nan
    with pytest.raises(InputError):
        est.depth(image, bad_K)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        DepthPoseEstimator.from_checkpoint(corrupt)


@pytest.mark.parametrize(
    ("size_hw", "scaled_w", "x0"),
    [((50, 130), 166, 35), ((375, 1242), 212, 58)],  # into the 64x96 network input
    ids=["50x130", "kitti"],
)
def test_crop_policy_is_exact_both_ways(tiny_checkpoint: Path, size_hw, scaled_w, x0) -> None:
    """K of the network input and the map back use the integer sizes actually resampled."""
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint, resize_policy="crop")
    H, W = size_hw
    K = np.array([[0.8 * W, 0.0, W / 2 - 0.3], [0.0, 0.8 * W, H / 2 + 0.2], [0.0, 0.0, 1.0]])
    prep = est._prepare(np.zeros((H, W, 3), np.uint8), Camera(K, W, H))
    assert prep.scaled_hw == (64, scaled_w) and prep.offset == (0, x0)
    X = np.random.default_rng(0).uniform([-4, -1, 5], [4, 1, 30], (40, 3)).T
    uvw, uvw_net = K @ X, prep.K_net[0].double().numpy() @ X
    u, v = uvw[:2] / uvw[2]
    expected = [(u + 0.5) * scaled_w / W - 0.5 - x0, (v + 0.5) * 64 / H - 0.5]
    np.testing.assert_allclose(uvw_net[:2] / uvw_net[2], expected, atol=1e-3)

    # a map holding each network pixel's column comes back as the exact network column
    ramp = torch.arange(96, dtype=torch.float32).expand(1, 1, 64, 96)
    back = est._to_input_resolution(ramp, prep, (H, W))[0, 0].numpy()
    column = (np.arange(W) + 0.5) * scaled_w / W - 0.5 - x0  # network column of input pixels
    seen = (column >= -0.5) & (column < 95.5)
    assert np.isnan(back[:, ~seen]).all() and np.isfinite(back[:, seen]).all()
    np.testing.assert_allclose(back[0, seen], np.clip(column[seen], 0, 95), atol=1e-4)


def test_camera_or_K_and_refusals(tiny_checkpoint: Path, frames) -> None:
    est = DepthPoseEstimator.from_checkpoint(tiny_checkpoint)
    image = frames.images[0]
    camera = Camera(frames.K, 130, 50)
    np.testing.assert_array_equal(est.depth(image, camera), est.depth(image, frames.K))
    with pytest.raises(InputError, match="camera is for 65x25"):
        est.depth(image, camera.resized(65, 25))
    distorted = Camera(frames.K, 130, 50, (0.1, 0.0, 0.0, 0.0, 0.0), rectified=False)
    with pytest.raises(InputError, match="undistort"):
        est.step(image, distorted)


def test_packaged_depth_stays_inside_its_range_on_real_images(shared_data: Path) -> None:
    """Issue 10: the former packaged model sat at its near bound on every real image (1st
    percentile 0.101 m against its 0.0999 m bound), where a warm-up had nothing to move. Its
    successor's depth must stay well inside its output range on real driving, indoor and
    handheld frames (the network's range: the estimator's depth limits are lifted)."""
    clips = [shared_data / "kitti_odometry_06"] + [
        shared_data / "real" / name for name in ("alley_iphone", "redkitchen_7scenes")
    ]
    clips = [c for c in clips if c.is_dir()]
    if not clips:
        pytest.skip("no real clips")
    depth_net, _ = build_networks(load_checkpoint(DEFAULT_MODEL)["arch"])
    lowest_disp, highest_disp = disparity_bounds(depth_net)
    est = DepthPoseEstimator.load(min_depth=0.0, max_depth=math.inf)
    for clip in clips:
        (seq,) = open_source(str(clip))[:1]
        frame = seq.load(len(seq) // 2)
        p1, p99 = np.nanpercentile(est.depth(frame.image, frame.K), [1, 99])
        assert p1 > 3 / highest_disp and p99 < 0.3 / lowest_disp, (clip.name, p1, p99)

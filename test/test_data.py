"""Sequences (KITTI odometry/raw, image folders, in-memory), augmentation and snippets."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sfm_ros.core.data import (
    FolderSequence,
    InMemorySequence,
    SnippetDataset,
    color_jitter,
    flip_pose,
    horizontal_flip,
    open_sequences,
    random_scale_crop,
    resize,
)
from sfm_ros.core.errors import DatasetError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KITTI06 = DATA / "kitti_odometry_06"
needs_data = pytest.mark.skipif(not KITTI06.is_dir(), reason="../shared/data is absent")


def _K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


# --------------------------------------------------------------------------- KITTI odometry


@needs_data
def test_kitti_odometry_06_loads_grey_calib_and_poses():
    (seq,) = open_sequences(KITTI06)
    assert len(seq) == 51 and seq.has_poses
    frame = seq.load(7)
    assert frame.image.shape == (370, 1226, 3) and frame.image.dtype == np.uint8
    assert np.array_equal(frame.image[..., 0], frame.image[..., 2])  # grey replicated
    grey = np.asarray(Image.open(KITTI06 / "sequences/06/image_0/000007.png"))
    assert np.array_equal(frame.image[..., 1], grey)

    p0 = next(
        ln
        for ln in (KITTI06 / "sequences/06/calib.txt").read_text().splitlines()
        if ln.startswith("P0:")
    )
    P0 = np.array(p0.split()[1:], dtype=float).reshape(3, 4)
    np.testing.assert_allclose(frame.K, P0[:, :3])
    poses = np.loadtxt(KITTI06 / "poses/06.txt").reshape(-1, 3, 4)
    np.testing.assert_allclose(frame.T_world_cam[:3], poses[7])
    np.testing.assert_allclose(frame.T_world_cam[3], [0, 0, 0, 1])
    assert seq.load(10).stamp_ns - seq.load(9).stamp_ns == 100_000_000


@needs_data
def test_kitti_odometry_snippet_shapes_K_and_relative_pose():
    (seq,) = open_sequences(KITTI06, max_frames=6)
    assert len(seq) == 6
    ds = SnippetDataset([seq], snippet_length=3, height=32, width=96)
    assert len(ds) == 4
    item = ds[1]  # frames 1, 2, 3
    assert item["tgt"].shape == (3, 32, 96) and item["srcs"].shape == (2, 3, 32, 96)
    assert item["tgt"].dtype == torch.float32 and 0 <= item["tgt"].min() <= item["tgt"].max() <= 1
    assert "depth_m" not in item
    K0 = seq.load(2).K
    sx, sy = 96 / 1226, 32 / 370
    # Pixel centres: the full-image corners (-0.5, -0.5) and (W-0.5, H-0.5) are kept.
    K = item["K"].double().numpy()
    for u, v, u2, v2 in ((-0.5, -0.5, -0.5, -0.5), (1225.5, 369.5, 95.5, 31.5)):
        ray = np.linalg.solve(K0, [u, v, 1.0])
        np.testing.assert_allclose(K @ ray, [u2, v2, 1.0], atol=1e-4)
    np.testing.assert_allclose(K[0, 0], K0[0, 0] * sx, rtol=1e-6)
    np.testing.assert_allclose(K[1, 1], K0[1, 1] * sy, rtol=1e-6)

    T = [seq.load(i).T_world_cam for i in (1, 2, 3)]
    expected = np.stack([np.linalg.inv(T[0]) @ T[1], np.linalg.inv(T[2]) @ T[1]])
    np.testing.assert_allclose(item["T_src_tgt"].numpy(), expected, atol=1e-5)
    assert item["T_src_tgt"][0, 2, 3] > 1.0  # target is ~1.2 m ahead of the previous frame

    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["srcs"].shape == (2, 2, 3, 32, 96) and batch["K"].shape == (2, 3, 3)
    assert batch["index"].tolist() == [0, 1]


def test_kitti_odometry_camera_choice(tmp_path):
    seq_dir = tmp_path / "sequences" / "00"
    img = np.zeros((4, 6, 3), np.uint8)
    for i in range(3):
        _write_png(seq_dir / "image_2" / f"{i:06d}.png", img + i)
    P0 = "P0: 10 0 3 0 0 10 2 0 0 0 1 0"
    P2 = "P2: 10 0 3 -5 0 10 2 0 0 0 1 0"  # camera 2 is 0.5 m to the right of camera 0
    (seq_dir / "calib.txt").write_text(f"{P0}\n{P0.replace('P0', 'P1')}\n{P2}\n")
    (seq_dir / "times.txt").write_text("0.0\n0.05\n0.1\n")
    poses = tmp_path / "poses" / "00.txt"
    poses.parent.mkdir()
    poses.write_text("1 0 0 0 0 1 0 0 0 0 1 0\n" * 3)
    (seq,) = open_sequences(tmp_path)  # camera 2 chosen: it is the one with images
    frame = seq.load(1)
    assert frame.image[0, 0, 0] == 1 and frame.stamp_ns == 50_000_000
    np.testing.assert_allclose(frame.T_world_cam[:3, 3], [0.5, 0, 0])
    with pytest.raises(DatasetError, match="camera 0"):
        open_sequences(tmp_path, camera=0)


# --------------------------------------------------------------------------- KITTI raw


def test_kitti_raw_fake_layout(tmp_path):
    date = tmp_path / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        _write_png(drive / "image_02" / "data" / f"{i:010d}.png", im)
    (drive / "image_02" / "timestamps.txt").write_text(
        "2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.074574603\n"
        "2011-09-26 13:02:26.184869770\n"
    )
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        "S_02: 1.392000e+03 5.120000e+02\n"
        "P_rect_00: 7.2e+02 0 6.0e+02 0 0 7.2e+02 1.8e+02 0 0 0 1 0\n"
        "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 "
        "7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 "
        "2.745884e-03\n"
    )
    for path in (date, drive):
        (seq,) = open_sequences(path)
        assert len(seq) == 3 and not seq.has_poses
        frame = seq.load(2)
        assert np.array_equal(frame.image, images[2])
        np.testing.assert_allclose(frame.K, _K(721.5377, 721.5377, 609.5593, 172.854))
        assert seq.load(1).stamp_ns - seq.load(0).stamp_ns == 110_185_158
        assert frame.T_world_cam is None


# --------------------------------------------------------------------------- folders


@needs_data
@pytest.mark.parametrize(
    ("clip", "n", "shape"), [("kitti_0", 5, (192, 1088)), ("nyu_0", 8, (480, 640))]
)
def test_folder_clips_load_with_intrinsics(clip, n, shape):
    (seq,) = open_sequences(DATA / "clips" / clip)
    fx, fy, cx, cy = np.loadtxt(DATA / "clips" / clip / "intrinsics.txt")
    assert len(seq) == n and not seq.has_poses and not seq.has_depth
    frame = seq.load(n - 1)
    assert frame.image.shape == (*shape, 3)
    np.testing.assert_allclose(frame.K, _K(fx, fy, cx, cy))
    assert len(open_sequences(DATA / "clips")) == 8  # one sequence per sub-folder


def test_folder_with_matrix_intrinsics_poses_depth_times(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 6, 10, 3), dtype=np.uint8)
    depth = rng.uniform(1, 5, (4, 6, 10)).astype(np.float32)
    T = np.tile(np.eye(4), (4, 1, 1))
    T[:, 0, 3] = np.arange(4) * 0.1
    for i in range(4):
        _write_png(tmp_path / f"{i:03d}.png", images[i])
        (tmp_path / "depth").mkdir(exist_ok=True)
        np.save(tmp_path / "depth" / f"{i:03d}.npy", depth[i])
    (tmp_path / "K.txt").write_text("8 0 4.5\n0 9 2.5\n0 0 1\n")
    np.savetxt(tmp_path / "poses.txt", T[:, :3].reshape(4, 12))
    np.savetxt(tmp_path / "times.txt", [1.0, 1.5, 2.0, 2.5])

    seq = FolderSequence(tmp_path)
    assert seq.has_poses and seq.has_depth
    frame = seq.load(2)
    assert np.array_equal(frame.image, images[2]) and np.array_equal(frame.depth_m, depth[2])
    np.testing.assert_allclose(frame.K, _K(8, 9, 4.5, 2.5))
    np.testing.assert_allclose(frame.T_world_cam, T[2])
    assert frame.stamp_ns == 2_000_000_000

    # depth.npz instead of depth/, 4 numbers on one line
    for p in (tmp_path / "depth").iterdir():
        p.unlink()
    (tmp_path / "depth").rmdir()
    (tmp_path / "K.txt").unlink()
    (tmp_path / "intrinsics.txt").write_text("8 9 4.5 2.5\n")
    np.savez(tmp_path / "depth.npz", depth_m=depth)
    (seq,) = open_sequences(tmp_path)
    np.testing.assert_allclose(seq.load(0).K, _K(8, 9, 4.5, 2.5))
    item = SnippetDataset([seq], 3, height=3, width=5)[0]
    assert item["depth_m"].shape == (1, 3, 5)
    assert set(item["depth_m"].flatten().tolist()) <= set(depth[1].flatten().tolist())  # nearest


def test_open_sequences_errors_name_path_and_layouts(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_sequences(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty.*accepted layouts.*KITTI odometry"):
        open_sequences(tmp_path / "empty")
    _write_png(tmp_path / "noK" / "0.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="noK has no intrinsics file.*intrinsics.txt"):
        open_sequences(tmp_path / "noK")
    (tmp_path / "bad").mkdir()
    _write_png(tmp_path / "bad" / "0.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "bad" / "intrinsics.txt").write_text("1 2 3\n")
    with pytest.raises(DatasetError, match="9 numbers.*got 3"):
        open_sequences(tmp_path / "bad")


def test_in_memory_sequence_checks_lengths_and_replicates_grey():
    grey = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    seq = InMemorySequence("g", grey, _K(2, 2, 1.5, 1), [0, 1])
    assert seq.load(1).image.shape == (3, 4, 3) and not seq.has_poses
    assert np.array_equal(seq.load(1).image[..., 2], grey[1])
    with pytest.raises(DatasetError, match="mismatched.*stamps_ns"):
        InMemorySequence("g", grey, _K(2, 2, 1.5, 1), [0, 1, 2])


# --------------------------------------------------------------------------- augmentation


def _blob_image(h: int, w: int, u: float, v: float, sigma: float = 2.0) -> np.ndarray:
    """(1, h, w, 3) uint8 with a Gaussian blob centred at pixel (u, v)."""
    ys, xs = np.mgrid[0:h, 0:w]
    blob = 255 * np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma**2))
    return np.repeat(np.round(blob).astype(np.uint8)[None, :, :, None], 3, axis=3)


def _centroid(image: np.ndarray) -> np.ndarray:
    weight = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : weight.shape[0], 0 : weight.shape[1]]
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def _project(K: np.ndarray, X: np.ndarray) -> np.ndarray:
    x = K @ X
    return x[:2] / x[2]


def test_resize_and_random_scale_crop_keep_K_exact():
    K = _K(60.0, 55.0, 47.3, 31.8)
    X = np.array([0.25, -0.1, 2.0])  # a 3D point in the camera frame
    u, v = _project(K, X)
    images = _blob_image(64, 96, u, v)
    out, K2, _ = resize(images, K, 32, 48)
    np.testing.assert_allclose(_centroid(out[0]), _project(K2, X), atol=0.05)
    rng = np.random.default_rng(3)
    for _ in range(4):
        out, K2, depth = random_scale_crop(
            images, K, 40, 60, rng, max_scale=1.3, depth_m=np.ones((64, 96), np.float32)
        )
        assert out.shape == (1, 40, 60, 3) and depth.shape == (40, 60)
        np.testing.assert_allclose(_centroid(out[0]), _project(K2, X), atol=0.05)


def test_horizontal_flip_mirrors_world_and_is_an_involution():
    K = _K(60.0, 55.0, 40.2, 31.8)
    X = np.array([0.3, 0.2, 2.0])
    images = np.concatenate([_blob_image(64, 96, *_project(K, X))] * 2)
    depth = np.random.default_rng(0).uniform(1, 2, (64, 96)).astype(np.float32)
    flipped, K2, depth2 = horizontal_flip(images, K, depth)
    M = np.diag([-1.0, 1.0, 1.0])
    # The flipped image shows the mirrored point through the flipped intrinsics.
    np.testing.assert_allclose(_centroid(flipped[1]), _project(K2, M @ X), atol=0.02)
    again, K3, depth3 = horizontal_flip(flipped, K2, depth2)
    assert np.array_equal(again, images) and np.array_equal(depth3, depth)
    np.testing.assert_allclose(K3, K)

    # Mirrored poses move mirrored points: flip(T) (M X) == M (T X).
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T[:3, 3] = [0.5, -0.2, 1.0]
    Xh = np.append(X, 1.0)
    Mh = np.diag([-1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(flip_pose(T) @ (Mh @ Xh), Mh @ (T @ Xh))
    np.testing.assert_allclose(flip_pose(flip_pose(T)), T)


def test_color_jitter_is_identical_across_frames():
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = color_jitter(np.stack([frame, frame]), np.random.default_rng(1), 0.3, 0.3, 0.3)
    assert out.dtype == np.uint8 and out.shape == (2, 8, 8, 3)
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], frame)
    same = color_jitter([frame], np.random.default_rng(1), 0.0, 0.0, 0.0)
    assert np.array_equal(same[0], frame)


# --------------------------------------------------------------------------- snippets


def _moving_sequence(n: int = 8, repeats: int = 0, poses: bool = True) -> InMemorySequence:
    """Random frames; frames 0..repeats are identical copies of frame 0."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n, 24, 32, 3), dtype=np.uint8)
    images[1 : repeats + 1] = images[0]
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, 0, 3] = np.arange(n) * 0.5  # moving right
    depth = rng.uniform(1, 3, (n, 24, 32)).astype(np.float32)
    stamps = np.arange(n) * 100_000_000
    return InMemorySequence(
        "moving", images, _K(30, 30, 15.5, 11.5), stamps, T if poses else None, depth
    )


def test_static_filter_skips_repeated_frames():
    seq = _moving_sequence(n=8, repeats=3)  # frames 0-3 identical
    ds = SnippetDataset([seq], snippet_length=3, height=12, width=16, min_motion=0.01)
    assert ds.num_skipped_static == 2  # snippets (0,1,2) and (1,2,3)
    assert len(ds) == 4 and [ids for _, ids in ds.snippets][0] == (2, 3, 4)
    assert SnippetDataset([seq], 3, 12, 16).num_skipped_static == 0

    still = InMemorySequence(
        "still", np.zeros((5, 8, 8, 3), np.uint8), _K(8, 8, 3.5, 3.5), np.arange(5)
    )
    with pytest.raises(DatasetError, match="static.*min_motion"):
        SnippetDataset([still], 3, 8, 8, min_motion=0.01)
    with pytest.raises(DatasetError, match="at least 5 frames"):
        SnippetDataset([_moving_sequence(n=4)], 5, 8, 8)


def test_snippet_stride_length_five_and_augmented_poses():
    seq = _moving_sequence(n=9)
    ds = SnippetDataset([seq], snippet_length=5, height=12, width=16, stride=2)
    assert len(ds) == 1 and ds.snippets[0] == (0, (0, 2, 4, 6, 8))
    item = ds[0]
    assert item["srcs"].shape == (4, 3, 12, 16) and item["depth_m"].shape == (1, 12, 16)
    # Target (frame 4) seen from source frame 0: 2 m to the right of it.
    np.testing.assert_allclose(item["T_src_tgt"][0, :3, 3].numpy(), [2.0, 0, 0], atol=1e-6)

    aug = SnippetDataset([seq], snippet_length=3, height=12, width=16, augment=True, seed=5)
    signs = set()
    for i in range(len(aug)):
        item = aug[i]
        assert item["tgt"].shape == (3, 12, 16) and item["depth_m"].shape == (1, 12, 16)
        assert (item["depth_m"] >= 1).all()
        tx = item["T_src_tgt"][:, 0, 3].numpy()
        np.testing.assert_allclose(np.abs(tx), [0.5, 0.5], atol=1e-6)
        signs.add(float(np.sign(tx[0])))
        assert item["K"][0, 0] >= 30 * 16 / 32 - 1e-4  # zoomed in, never out
    assert signs == {-1.0, 1.0}  # some snippets flipped, some not

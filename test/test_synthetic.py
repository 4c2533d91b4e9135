"""The procedural renderer: determinism, geometry of depth and poses, photometric consistency."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfm_ros.core.errors import ConfigError, InputError
from sfm_ros.core.synthetic import (
    DOMAINS,
    build_scene,
    render_frame,
    render_sequence,
    write_sequence,
)

H, W = 48, 156


@pytest.fixture(scope="module")
def sequences() -> dict:
    return {d: render_sequence(d, 4, seed=3, height=H, width=W) for d in DOMAINS}


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample image (H, W, C) at float pixel coordinates (P,) (all inside the image)."""
    u0 = np.clip(np.floor(u).astype(int), 0, image.shape[1] - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, image.shape[0] - 2)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    top = image[v0, u0] * (1 - fu) + image[v0, u0 + 1] * fu
    bottom = image[v0 + 1, u0] * (1 - fu) + image[v0 + 1, u0 + 1] * fu
    return top * (1 - fv) + bottom * fv


def _warp_errors(seq, t: int, s: int, yaw_error_deg: float = 0.0) -> tuple[np.ndarray, float]:
    """Per-pixel mean |I_t - I_s warped into t| in [0, 1] over valid, unoccluded pixels, and
    their fraction of the image. ``yaw_error_deg`` perturbs the relative pose of the warp only
    (the pixel selection always uses the true pose)."""
    depth, K = seq.depth_m[t].astype(np.float64), seq.K
    h, w = depth.shape
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    pts = np.linalg.inv(K) @ np.stack([u * z, v * z, z])
    T_s_t = np.linalg.inv(seq.T_world_cam[s]) @ seq.T_world_cam[t]
    ps = T_s_t[:3, :3] @ pts + T_s_t[:3, 3:]
    us, vs = (K @ ps)[:2] / ps[2]
    inside = (ps[2] > 0.1) & (us >= 0) & (us <= w - 1) & (vs >= 0) & (vs <= h - 1)
    seen = seq.depth_m[s][np.round(vs[inside]).astype(int), np.round(us[inside]).astype(int)]
    unoccluded = np.abs(seen - ps[2][inside]) < 0.05 * ps[2][inside]
    keep = np.flatnonzero(inside)[unoccluded]
    if yaw_error_deg:
        c, sn = np.cos(np.deg2rad(yaw_error_deg)), np.sin(np.deg2rad(yaw_error_deg))
        ps = np.array([[c, 0, sn], [0, 1, 0], [-sn, 0, c]]) @ ps
        us, vs = (K @ ps)[:2] / ps[2]
    src = seq.images[s].astype(np.float64) / 255
    warped = _bilinear(src, np.clip(us[keep], 0, w - 1), np.clip(vs[keep], 0, h - 1))
    tgt = seq.images[t][v[keep], u[keep]].astype(np.float64) / 255
    return np.abs(warped - tgt).mean(axis=1), len(keep) / depth.size


def test_shapes_and_dtypes(sequences: dict) -> None:
    for domain, seq in sequences.items():
        assert seq.domain == domain
        assert seq.images.shape == (4, H, W, 3) and seq.images.dtype == np.uint8
        assert seq.depth_m.shape == (4, H, W) and seq.depth_m.dtype == np.float32
        assert seq.T_world_cam.shape == (4, 4, 4) and seq.T_world_cam.dtype == np.float64
        assert seq.K.shape == (3, 3) and seq.stamps_ns.dtype == np.int64
        np.testing.assert_array_equal(np.diff(seq.stamps_ns), 100_000_000)  # 10 Hz
        R = seq.T_world_cam[:, :3, :3]
        np.testing.assert_allclose(
            R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12
        )
        np.testing.assert_allclose(np.linalg.det(R), 1.0)
        np.testing.assert_allclose(seq.T_world_cam[:, 2, 3], seq.camera_height_m)


def test_deterministic_and_seed_dependent() -> None:
    a = render_sequence("field", 2, seed=5, height=24, width=78)
    b = render_sequence("field", 2, seed=5, height=24, width=78)
    c = render_sequence("field", 2, seed=6, height=24, width=78)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    np.testing.assert_array_equal(a.T_world_cam, b.T_world_cam)
    assert not np.array_equal(a.images, c.images)


def test_start_renders_the_same_frames_of_the_same_trajectory() -> None:
    whole = render_sequence("street", 4, seed=2, height=24, width=78)
    tail = render_sequence("street", 2, seed=2, height=24, width=78, start=2)
    np.testing.assert_array_equal(tail.images, whole.images[2:])
    np.testing.assert_array_equal(tail.depth_m, whole.depth_m[2:])
    np.testing.assert_array_equal(tail.T_world_cam, whole.T_world_cam[2:])
    np.testing.assert_array_equal(tail.stamps_ns, whole.stamps_ns[2:])


def test_depth_positive_on_hits_zero_for_sky(sequences: dict) -> None:
    for domain, seq in sequences.items():
        d = seq.depth_m
        assert np.isfinite(d).all() and (d >= 0).all()
        cy = seq.K[1, 2]
        assert (d[:, int(np.ceil(cy)) :] > 0).all(), domain  # level camera: ground below horizon
        sky = d == 0
        if domain == "corridor":
            assert not sky.any()
        else:
            assert sky[:, 0].any(), domain  # the top row meets the sky outdoors
            colours = seq.images[sky].astype(float)
            assert (colours[:, 2] > colours[:, 0]).all()  # bluish gradient


def test_ground_depth_matches_ray_plane_intersection(sequences: dict) -> None:
    for domain, seq in sequences.items():
        fy, cy = seq.K[1, 1], seq.K[1, 2]
        v = np.arange(H - 3, H)  # bottom rows, centre column: ground (floor) in every domain
        expected = seq.camera_height_m * fy / (v - cy)
        np.testing.assert_allclose(
            seq.depth_m[:, v, W // 2], np.broadcast_to(expected, (4, 3)), rtol=1e-5, err_msg=domain
        )


def test_consecutive_frames_are_photometrically_consistent(sequences: dict) -> None:
    for domain, seq in sequences.items():
        for t, s in [(1, 2), (2, 1), (1, 0)]:
            err, fraction = _warp_errors(seq, t, s)
            assert fraction > 0.4, domain
            assert err.mean() < 0.05, (domain, t, s, err.mean())
            assert np.median(err) < 0.02, (domain, t, s, np.median(err))
            # the check can fail: a 2 degree error in the relative pose is much worse
            wrong, _ = _warp_errors(seq, t, s, yaw_error_deg=2.0)
            assert wrong.mean() > 2 * err.mean(), (domain, t, s, wrong.mean(), err.mean())


def test_domains_differ(sequences: dict) -> None:
    colour = {d: s.images.reshape(-1, 3).mean(axis=0) for d, s in sequences.items()}
    depth = {d: np.median(s.depth_m[s.depth_m > 0]) for d, s in sequences.items()}
    for i, a in enumerate(DOMAINS):
        for b in DOMAINS[i + 1 :]:
            assert np.abs(colour[a] - colour[b]).max() > 5 or abs(depth[a] - depth[b]) > 1
    assert depth["corridor"] < depth["street"] and depth["corridor"] < depth["field"]
    assert colour["field"][1] > max(colour["field"][0], colour["field"][2])  # green


def test_speed() -> None:
    start = time.perf_counter()
    render_sequence("street", 5, seed=0, height=64, width=208)
    assert time.perf_counter() - start < 1.0


def test_write_sequence_reads_back(tmp_path: Path) -> None:
    seq = render_sequence("corridor", 3, seed=1, height=24, width=78, start=5)
    write_sequence(seq, tmp_path / "out")
    out = tmp_path / "out"
    for i in range(3):
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / "images" / f"{i:06d}.png")), seq.images[i]
        )
        np.testing.assert_array_equal(np.load(out / "depth" / f"{i:06d}.npy"), seq.depth_m[i])
    np.testing.assert_array_equal(np.loadtxt(out / "intrinsics.txt"), seq.K)
    poses = np.loadtxt(out / "poses.txt").reshape(3, 3, 4)
    np.testing.assert_array_equal(poses, seq.T_world_cam[:, :3])
    np.testing.assert_allclose(np.loadtxt(out / "times.txt"), [0.5, 0.6, 0.7])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["domain"] == "corridor" and meta["seed"] == 1 and meta["fps"] == 10.0
    assert meta["camera_height_m"] == seq.camera_height_m


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="street"):
        render_sequence("moon", 2)
    with pytest.raises(InputError, match="num_frames"):
        render_sequence("street", 0)
    scene = build_scene("street", 0, 10.0)
    with pytest.raises(InputError, match="K"):
        render_frame(scene, np.eye(4), np.eye(4), 8, 8)

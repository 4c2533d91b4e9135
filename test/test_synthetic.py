"""The procedural renderer: determinism, geometry of depth and poses, photometric consistency,
the new domains and sim-to-real randomisation (geometry exact, photometric effects in range)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sfm_ros.core.errors import ConfigError, DatasetError, InputError
from sfm_ros.core.sources import open_source, open_sources, parse_synthetic
from sfm_ros.core.synthetic import (
    DOMAINS,
    Randomization,
    Scene,
    build_scene,
    draw_randomization,
    render_frame,
    render_sequence,
    write_sequence,
)
from sfm_ros.core.synthetic.camera import develop, exposure_flow, motion_blur
from sfm_ros.core.synthetic.domains import camera_poses, domain_spec, trajectory
from sfm_ros.core.synthetic.occluder import passing_object, passing_object_mask
from sfm_ros.core.synthetic.randomize import ResponseDraw
from sfm_ros.core.synthetic.render import _occludes, _shadowed, pixel_rays
from sfm_ros.core.synthetic.sequence import intrinsics

H, W = 48, 156
INDOOR = ("corridor", "warehouse")
GEOMETRY_ONLY = Randomization(appearance=False, photometric=False)
NO_PHOTOMETRIC = Randomization(photometric=False)
NEUTRAL = ResponseDraw(
    exposure_ev=0.0, drift_ev=0.0, drift_period_s=5.0, drift_phase=0.0, auto_exposure=0.0,
    white_balance=0.0, tint=0.0, white_balance_drift=0.0, gamma=1.0, contrast=0.0,
    black_level=0.0, saturation=1.0, vignetting=0.0, lens_blur_px=0.0, exposure_time=0.0,
    read_noise=0.0, shot_noise=0.0, jpeg_quality=None, grey=False,
)  # fmt: skip


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


def _textured(image: np.ndarray) -> np.ndarray:
    """Pixels (H, W) where the grey level changes by more than 3 % to a right or lower neighbour."""
    g = image.astype(np.float64).mean(axis=-1) / 255
    gx = np.abs(np.diff(g, axis=1, append=g[:, -1:]))
    gy = np.abs(np.diff(g, axis=0, append=g[-1:]))
    return np.maximum(gx, gy) > 0.03


def _warp_errors(
    seq, t: int, s: int, yaw_error_deg: float = 0.0, textured: bool = False
) -> tuple[np.ndarray, float]:
    """Per-pixel mean |I_t - I_s warped into t| in [0, 1] over valid, unoccluded pixels (only
    the textured ones if asked), and their fraction of the image. ``yaw_error_deg`` perturbs
    the relative pose of the warp only (the pixel selection always uses the true pose)."""
    depth, K = seq.depth_m[t].astype(np.float64), seq.K
    h, w = depth.shape
    v, u = np.nonzero((depth > 0) & (_textured(seq.images[t]) if textured else True))
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
        if domain in INDOOR:
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
    assert depth["warehouse"] < depth["rural"]
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


# --------------------------------------------------------------------------- new domains


@pytest.mark.parametrize("domain", ["warehouse", "rural"])
def test_new_domains_render_non_degenerate_depth(sequences: dict, domain: str) -> None:
    d = sequences[domain].depth_m
    valid = d[d > 0]
    if domain == "warehouse":  # closed: floor, ceiling, racks and walls everywhere
        assert (d > 0).all()
        assert valid.min() < 3.0 and 8.0 < valid.max() < 100.0
    else:  # open: sky above, road, verges, trees and hills up to hundreds of metres
        assert 0.5 < (d > 0).mean() < 0.97
        assert valid.min() < 5.0 and valid.max() > 40.0
    assert np.std(np.log(valid)) > 0.4  # a spread of depths, not a few flat planes
    assert len(np.unique(np.round(np.log(valid), 1))) > 20


def test_new_domains_under_randomised_cameras_stay_valid() -> None:
    for domain in ("warehouse", "rural"):
        for seed in range(3):
            seq = render_sequence(domain, 2, seed, 24, 78, randomization=GEOMETRY_ONLY)
            assert np.isfinite(seq.depth_m).all()
            assert (seq.depth_m > 0).mean() > (0.99 if domain == "warehouse" else 0.3)


# --------------------------------------------------------------------------- randomisation


def test_randomisation_with_every_group_off_is_the_original_world() -> None:
    off = Randomization(geometry=False, appearance=False, photometric=False)
    a = render_sequence("street", 2, seed=4, height=24, width=78, start=3)
    b = render_sequence("street", 2, seed=4, height=24, width=78, start=3, randomization=off)
    for name in ("images", "depth_m", "T_world_cam", "K", "stamps_ns"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert b.fps == a.fps and b.camera_height_m == a.camera_height_m


def test_randomised_sequences_are_deterministic_and_start_invariant() -> None:
    full = Randomization()
    a = render_sequence("rural", 3, seed=2, height=24, width=78, randomization=full)
    b = render_sequence("rural", 3, seed=2, height=24, width=78, randomization=full)
    tail = render_sequence("rural", 2, seed=2, height=24, width=78, start=1, randomization=full)
    other = render_sequence("rural", 1, seed=3, height=24, width=78, randomization=full)
    for name in ("images", "depth_m", "T_world_cam", "stamps_ns"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_array_equal(getattr(tail, name), getattr(a, name)[1:], err_msg=name)
    assert a.draw == b.draw and a.draw != other.draw
    assert not np.array_equal(a.images[:1], other.images)


def test_drawn_cameras_stay_within_the_ranges() -> None:
    cfg = Randomization()
    draws = [draw_randomization(d, seed, cfg) for d in DOMAINS for seed in range(60)]
    hfov = np.array([dr.camera.hfov_deg for dr in draws])
    assert hfov.min() >= 40.0 and hfov.max() <= 110.0
    assert hfov.min() < 50.0 and hfov.max() > 100.0  # the range is used, not just its middle
    for dr, domain in zip(draws, np.repeat(DOMAINS, 60), strict=True):
        cam = dr.camera
        assert max(abs(o) for o in cam.principal_offset) <= cfg.principal_offset
        lo, hi = domain_spec(domain).camera_height_range_m
        assert lo <= cam.height_m <= hi
        assert cfg.pitch_deg[0] <= cam.pitch_deg <= cfg.pitch_deg[1]
        assert cfg.roll_deg[0] <= cam.roll_deg <= cfg.roll_deg[1]
        assert cam.fps in cfg.fps and cfg.speed_scale[0] <= cam.speed_scale <= cfg.speed_scale[1]
        K = cam.intrinsics(128, 416)
        np.testing.assert_allclose(2 * np.degrees(np.arctan(208 / K[0, 0])), cam.hfov_deg)
        assert abs(K[0, 2] - 207.5) <= 0.05 * 416 and abs(K[1, 2] - 63.5) <= 0.05 * 128
    assert len({dr.camera.fps for dr in draws}) == len(cfg.fps)


def test_randomised_geometry_is_exact_before_photometric_effects() -> None:
    """Pitched, rolled cameras with drawn intrinsics, height, speed and frame rate (and the
    drawn lighting with shadows): the true depth and poses still warp one frame onto the next
    on textured pixels, and a half-degree pose error is clearly worse. (A constant rotation of
    the camera cancels in relative poses: the ground-depth test below checks absolute pose.)"""
    cases = [("street", 0), ("corridor", 1), ("warehouse", 0), ("rural", 1)]
    cams = []
    for domain, seed in cases:
        seq = render_sequence(domain, 3, seed, H, W, randomization=NO_PHOTOMETRIC)
        cam = seq.draw.camera
        cams.append(cam)
        np.testing.assert_array_equal(seq.T_world_cam[:, 2, 3], cam.height_m)
        assert seq.camera_height_m == cam.height_m
        np.testing.assert_allclose(seq.K, cam.intrinsics(H, W))
        forward_z = seq.T_world_cam[:, 2, 2]  # world z of the optical axis: sin(pitch)
        np.testing.assert_allclose(forward_z, np.sin(cam.pitch_rad(np.arange(3))), atol=1e-12)
        np.testing.assert_allclose(np.diff(seq.stamps_ns), 1e9 / cam.fps, atol=1)
        for t, s in [(1, 2), (1, 0)]:
            err, fraction = _warp_errors(seq, t, s, textured=True)
            assert fraction > 0.1, (domain, fraction)
            assert np.median(err) < 0.025 and err.mean() < 0.05, (domain, t, s, err.mean())
            wrong, _ = _warp_errors(seq, t, s, yaw_error_deg=0.5, textured=True)
            assert wrong.mean() > 1.5 * err.mean(), (domain, t, s, wrong.mean(), err.mean())
    # the cases exercise what they claim to: narrow and wide lenses, tilt, off-centre K
    assert min(c.hfov_deg for c in cams) < 50 and max(c.hfov_deg for c in cams) > 100
    assert max(abs(c.pitch_deg) for c in cams) > 5 and min(abs(c.roll_deg) for c in cams) > 0
    assert min(max(abs(o) for o in c.principal_offset) for c in cams) > 0.005
    assert len({c.fps for c in cams}) > 1


def test_ground_depth_is_exact_for_a_pitched_rolled_camera() -> None:
    cfg = Randomization(appearance=False, photometric=False, pitch_deg=(-12.0, -8.0))
    seq = render_sequence("warehouse", 2, seed=5, height=H, width=W, randomization=cfg)
    K, v = seq.K, np.arange(H - 3, H)
    ray = np.stack([(W // 2 - K[0, 2]) / K[0, 0] * np.ones(3), (v - K[1, 2]) / K[1, 1], np.ones(3)])
    for n in range(2):
        down = -(seq.T_world_cam[n, :3, :3] @ ray)[2]  # world z drop per metre of depth
        expected = seq.camera_height_m / down
        np.testing.assert_allclose(seq.depth_m[n, v, W // 2], expected, rtol=1e-5)


def test_appearance_and_photometric_change_pixels_not_geometry() -> None:
    base = render_sequence("street", 2, seed=1, height=24, width=78, randomization=GEOMETRY_ONLY)
    for cfg in (NO_PHOTOMETRIC, Randomization()):
        seq = render_sequence("street", 2, seed=1, height=24, width=78, randomization=cfg)
        np.testing.assert_array_equal(seq.depth_m, base.depth_m)
        np.testing.assert_array_equal(seq.T_world_cam, base.T_world_cam)
        np.testing.assert_array_equal(seq.K, base.K)
        assert seq.draw.camera == base.draw.camera
        assert np.abs(seq.images.astype(int) - base.images).mean() > 3


def _street_view(
    light: np.ndarray, shadows: bool
) -> tuple[np.ndarray, np.ndarray, Scene, np.ndarray]:
    """Frame 5 of street seed 0 lit by ``light``: image, depth, the scene view, T_world_cam."""
    scene = build_scene("street", 0, 20.0)
    s, yaw = trajectory("street", 0, np.array([5]))
    T = camera_poses(domain_spec("street"), scene.path, s, yaw)[0]
    view = replace(scene, light_dir=light, shadows=shadows).view(float(s[0]))
    image, depth = render_frame(view, T, intrinsics(H, W), H, W)
    return image, depth, view, T


def test_cast_shadows_only_darken_and_match_brute_force() -> None:
    light = np.array([0.5, -0.6, 0.45])
    light /= np.linalg.norm(light)
    lit, depth, view, T = _street_view(light, shadows=False)
    shaded, depth_shaded, _, _ = _street_view(light, shadows=True)
    np.testing.assert_array_equal(depth_shaded, depth)
    assert (shaded <= lit).all()
    assert (shaded < lit).any(axis=-1).mean() > 0.05  # buildings shade the street
    # the binned shadow rays agree with testing every primitive against every point
    rays = pixel_rays(intrinsics(H, W), H, W) @ T[:3, :3].T
    points = T[:3, 3] + (depth[depth > 0] - 1e-3)[:, None] * rays[depth > 0]
    fast = _shadowed(view.prims, points, light)
    brute = np.zeros(len(points), dtype=bool)
    for i in range(len(view.prims)):
        brute |= _occludes(view.prims, np.full(len(points), i), points, light)
    np.testing.assert_array_equal(fast, brute)
    assert 0.05 < brute.mean() < 0.95


def test_drawn_camera_responses_stay_within_the_ranges() -> None:
    cfg = Randomization()
    responses = [draw_randomization("street", seed, cfg).response for seed in range(300)]
    for name in ("exposure_ev", "auto_exposure", "white_balance", "tint", "gamma", "contrast",
                 "black_level", "saturation", "vignetting", "lens_blur_px", "exposure_time",
                 "read_noise", "shot_noise"):  # fmt: skip
        values = np.array([getattr(r, name) for r in responses])
        lo, hi = getattr(cfg, name)
        assert lo <= values.min() and values.max() <= hi, name
        assert values.max() - values.min() > 0.5 * (hi - lo), name
    quality = [r.jpeg_quality for r in responses if r.jpeg_quality is not None]
    assert cfg.jpeg_quality[0] <= min(quality) and max(quality) <= cfg.jpeg_quality[1]
    assert 0.45 < len(quality) / 300 < 0.75  # jpeg_probability 0.6
    assert 0.08 < np.mean([r.grey for r in responses]) < 0.23  # grey_probability 0.15


def test_develop_effects_match_their_parameters() -> None:
    rng = np.random.default_rng(0)
    K = np.array([[50.0, 0.0, 39.0], [0.0, 50.0, 11.5], [0.0, 0.0, 1.0]])
    scene = rng.uniform(0.0, 1.2, (24, 78, 3))
    # every effect neutral: exactly the unrandomised rounding of render_frame
    out = develop(scene, NEUTRAL, K, 0.0, rng)
    np.testing.assert_array_equal(out, np.round(np.clip(scene, 0, 1) * 255).astype(np.uint8))
    grey = np.full((24, 78, 3), 0.2)
    bright = develop(grey, replace(NEUTRAL, exposure_ev=1.0), K, 0.0, rng)
    np.testing.assert_allclose(bright.mean() / 255, 0.4, atol=0.003)  # +1 EV doubles
    half = develop(np.full((24, 78, 3), 0.5), replace(NEUTRAL, gamma=2.0), K, 0.0, rng)
    np.testing.assert_allclose(half.mean() / 255, 0.25, atol=0.003)
    held = develop(grey, replace(NEUTRAL, auto_exposure=1.0), K, 0.0, rng)
    np.testing.assert_allclose(held.mean() / 255, 0.45, atol=0.003)  # AE brings 0.2 to target
    warm = develop(grey, replace(NEUTRAL, white_balance=0.25), K, 0.0, rng).mean(axis=(0, 1))
    assert warm[0] > warm[1] > warm[2]
    np.testing.assert_allclose(warm[0] / warm[2], 2**0.5, rtol=0.03)
    noisy = develop(np.full((24, 78, 3), 0.5), replace(NEUTRAL, read_noise=0.02), K, 0.0, rng)
    np.testing.assert_allclose(noisy.std() / 255, 0.02, rtol=0.15)
    vig = develop(np.full((24, 78, 3), 0.8), replace(NEUTRAL, vignetting=0.4), K, 0.0, rng)
    assert vig[12, 39, 0] == 204 and abs(vig[0, 0, 0] / 204 - 0.6) < 0.02  # corner: 1 - 0.4
    mono = develop(scene, replace(NEUTRAL, grey=True, jpeg_quality=60), K, 0.0, rng)
    assert (mono[..., 0] == mono[..., 1]).all() and (mono[..., 1] == mono[..., 2]).all()
    u, v = np.meshgrid(np.linspace(0, 1, 78), np.linspace(0, 1, 24))
    smooth = np.stack([u, v, grey[..., 0]], axis=-1)
    smooth[6:18, 20:40] = (0.9, 0.1, 0.1)
    sharp = develop(smooth, NEUTRAL, K, 0.0, rng).astype(int)
    jpeg = develop(smooth, replace(NEUTRAL, jpeg_quality=40), K, 0.0, rng).astype(int)
    assert 0.5 < np.abs(jpeg - sharp).mean() < 8  # compression artefacts, still the same image
    flat = np.full((24, 78, 3), 0.5)
    frames = [develop(flat, replace(NEUTRAL, read_noise=0.01), K, 0.0, np.random.default_rng(i))
              for i in (0, 1)]  # fmt: skip
    assert not np.array_equal(*frames)  # noise is drawn per frame


def test_exposure_drifts_slowly_within_a_sequence() -> None:
    """Photometric on vs off on the same geometry: the per-frame brightness ratio (the camera's
    gain) differs from 1 but changes little from one frame to the next."""
    ratios = []
    for seed in (0, 1, 2):
        on = render_sequence("field", 3, seed, 24, 78, randomization=Randomization())
        off = render_sequence("field", 3, seed, 24, 78, randomization=NO_PHOTOMETRIC)
        r = on.images.reshape(3, -1).mean(axis=1) / off.images.reshape(3, -1).mean(axis=1)
        np.testing.assert_allclose(r[1:] / r[:-1], 1.0, atol=0.1)
        ratios.append(r.mean())
    assert np.ptp(ratios) > 0.15  # sequences get different exposures


def test_motion_blur_follows_the_camera_motion() -> None:
    K = np.array([[100.0, 0.0, 15.5], [0.0, 100.0, 7.5], [0.0, 0.0, 1.0]])
    T_tau_t = np.eye(4)
    T_tau_t[0, 3] = -0.1  # the camera moves 0.1 m to the right
    flow = exposure_flow(np.full((16, 32), 10.0), K, T_tau_t)
    np.testing.assert_allclose(flow[..., 0], -1.0)  # 0.1 m * 100 px / 10 m, to the left
    np.testing.assert_allclose(flow[..., 1], 0.0, atol=1e-12)
    edge = np.zeros((16, 32, 3))
    edge[:, 16:] = 1.0
    blurred = motion_blur(edge, 2 * flow)
    np.testing.assert_allclose(blurred[:, :13], 0.0)  # far from the edge: unchanged
    np.testing.assert_allclose(blurred[:, 19:], 1.0)
    assert 0.0 < blurred[0, 15, 0] < 0.5 < blurred[0, 16, 0] < 1.0  # smeared along the motion
    np.testing.assert_allclose(blurred, blurred[:1].repeat(16, axis=0))  # not across it


@pytest.mark.parametrize(
    ("domain", "randomization"),
    [("street", Randomization()), ("warehouse", None), ("rural", Randomization())],
)
def test_randomised_and_new_domain_rendering_speed(domain: str, randomization) -> None:
    """CPU time (the machine may be shared), 5 frames at 64x208: ~0.3 s when measured."""
    render_sequence(domain, 1, seed=0, height=8, width=16, randomization=randomization)
    start = time.process_time()
    render_sequence(domain, 5, seed=0, height=64, width=208, randomization=randomization)
    assert time.process_time() - start < 1.0


def test_synthetic_source_strings() -> None:
    plain = parse_synthetic("synthetic:street")
    assert plain == ("street", 200, 0, None)
    full = parse_synthetic("synthetic:rural:50:3:random")
    assert full.randomization == Randomization()
    some = parse_synthetic("synthetic:warehouse::2:geometry+photometric").randomization
    assert some.geometry and some.photometric and not some.appearance
    for bad in ("synthetic:street:5:1:sepia", "synthetic:street:5:1:random:x",
                "synthetic:street:x", "synthetic:street:5:-1"):  # fmt: skip
        with pytest.raises(DatasetError, match="synthetic"):
            parse_synthetic(bad)
    (seq,) = open_source("synthetic:warehouse:2:4:random", height=24, width=78)
    draw = draw_randomization("warehouse", 4, Randomization())
    assert seq.name == "synthetic-warehouse-4-random" and len(seq) == 2
    np.testing.assert_allclose(seq.load(0).K, draw.camera.intrinsics(24, 78))


def test_write_sequence_records_the_randomisation(tmp_path: Path) -> None:
    seq = render_sequence("corridor", 2, seed=1, height=24, width=78, randomization=Randomization())
    write_sequence(seq, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["fps"] == seq.fps == seq.draw.camera.fps
    assert meta["randomization"]["camera"]["hfov_deg"] == seq.draw.camera.hfov_deg
    assert meta["randomization"]["response"]["grey"] == seq.draw.response.grey
    np.testing.assert_allclose(np.loadtxt(tmp_path / "times.txt"), seq.stamps_ns / 1e9)


def test_bad_randomisation_ranges() -> None:
    with pytest.raises(ConfigError, match="hfov_deg"):
        Randomization(hfov_deg=(110.0, 40.0))
    with pytest.raises(ConfigError, match="hfov_deg"):
        Randomization(hfov_deg=(40.0, 190.0))
    with pytest.raises(ConfigError, match="probabilities"):
        Randomization(grey_probability=1.5)


def test_parallel_rendering_gives_the_same_sequences_in_order(tmp_path):
    # a training config's synthetic sources rendered by two processes: the same frames, in the
    # specs' order, with a recorded folder between them opened in this process
    folder = tmp_path / "recorded"
    write_sequence(render_sequence("street", 3, seed=9, height=24, width=78), folder)
    specs = [
        "synthetic:field:3:1:random",
        str(folder),
        "synthetic:street:3:2",
        "synthetic:field:3:1",
    ]
    serial = open_sources(specs, height=24, width=78)
    parallel = open_sources(specs, render_workers=2, height=24, width=78)
    assert [s.name for s in parallel] == [s.name for s in serial]
    for a, b in zip(serial, parallel, strict=True):
        assert len(a) == len(b) == 3
        for i in range(3):
            fa, fb = a.load(i), b.load(i)
            np.testing.assert_array_equal(fa.image, fb.image)
            np.testing.assert_array_equal(fa.depth_m, fb.depth_m)
            np.testing.assert_array_equal(fa.T_world_cam, fb.T_world_cam)
    assert not np.array_equal(serial[0].load(0).image, serial[3].load(0).image)  # randomised


def test_a_passing_object_crosses_the_image_at_its_speed_and_leaves_the_input_alone():
    image = np.full((40, 100, 3), 128, np.uint8)
    for step in (0, 13):  # not yet in view; gone (its back edge at 130 - 30 px)
        assert (passing_object(image, step, fraction=0.3, speed=0.1) == image).all()
    covered = []
    for step in (1, 2, 5):  # its front edge at 10 px a step, 30 px wide
        painted = passing_object(image, step, fraction=0.3, speed=0.1)
        assert painted.shape == image.shape and painted.dtype == np.uint8
        assert (painted[:4] == image[:4]).all()  # the top tenth stays the scene's
        columns = np.flatnonzero((painted != image).any(axis=(0, 2)))
        covered.append((columns.min(), columns.max(), len(columns)))
        mask = passing_object_mask(40, 100, step, fraction=0.3, speed=0.1)
        assert ((painted != image).any(-1) <= mask).all() and mask.sum() == 36 * len(columns)
    assert covered == [(0, 9, 10), (0, 19, 20), (20, 49, 30)]
    assert (image == 128).all()
    with pytest.raises(InputError):
        passing_object(image.astype(np.float32), 1)

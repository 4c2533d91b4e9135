"""Camera value type, CameraInfo <-> Camera (image_geometry semantics) and undistortion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core import geometry as g
from sfm_ros.core.camera import Camera
from sfm_ros.core.errors import InputError
from sfm_ros.core.undistort import Undistorter, undistorter_for

TYPES = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
K_KITTI = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])
K_SMALL = np.array([[60.0, 0.0, 39.5], [0.0, 62.0, 29.5], [0.0, 0.0, 1.0]])
PLUMB_BOB = (-0.28, 0.07, 0.001, -0.0015, 0.0)
FISHEYE = (0.05, -0.02, 0.004, -0.001)


def project(K: np.ndarray, X: np.ndarray) -> np.ndarray:
    uvw = K @ X
    return uvw[:2] / uvw[2]


def points(n: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-3, 3, n), rng.uniform(-1, 1, n), rng.uniform(4, 40, n)])


# ------------------------------------------------------------------------------ the value type


def test_resized_takes_its_scales_from_the_integer_sizes():
    # KITTI 1242x375 to 416x128: the nominal factor 1/3 is not 416/1242 = 0.33494...
    camera = Camera(K_KITTI, 1242, 375).resized(416, 128)
    assert camera.size == (416, 128)
    X = points()
    u, v = project(K_KITTI, X)
    expected = np.stack([(u + 0.5) * 416 / 1242 - 0.5, (v + 0.5) * 128 / 375 - 0.5])
    np.testing.assert_allclose(project(camera.K, X), expected, atol=1e-9)


def test_cropped_and_flipped_move_pixels_exactly():
    camera = Camera(K_SMALL, 80, 60)
    X = points()
    u, v = project(K_SMALL, X)
    crop = camera.cropped(7, 3, 50, 40)
    assert crop.size == (50, 40)
    np.testing.assert_allclose(project(crop.K, X), np.stack([u - 7, v - 3]), atol=1e-9)
    flipped = camera.flipped()
    X_mirror = X * np.array([[-1.0], [1.0], [1.0]])
    np.testing.assert_allclose(project(flipped.K, X_mirror), np.stack([79 - u, v]), atol=1e-9)
    np.testing.assert_array_equal(flipped.K, g.flip_intrinsics(K_SMALL, 80))
    for window in [(-1, 0, 10, 10), (75, 0, 10, 10), (0, 0, 0, 10), (0, 55, 10, 10)]:
        with pytest.raises(InputError):
            camera.cropped(*window)
    with pytest.raises(InputError, match="undistort"):
        Camera(K_SMALL, 80, 60, PLUMB_BOB, rectified=False).flipped()


def test_value_semantics_and_immutability():
    K = K_SMALL.copy()
    camera = Camera(K, 80, 60)
    K[0, 0] = 1.0  # the caller's array stays theirs
    assert camera.K[0, 0] == 60.0
    with pytest.raises(ValueError):
        camera.K[0, 0] = 2.0
    same = Camera(K_SMALL.astype(np.float32), np.int64(80), 60)
    assert same == camera and hash(same) == hash(camera) and len({camera, same}) == 1
    assert camera != camera.resized(40, 30) and camera != Camera(K_SMALL, 80, 61)
    distorted = Camera(K_SMALL, 80, 60, PLUMB_BOB, rectified=False)
    assert distorted.distorted and not camera.distorted and distorted != camera
    assert distorted.undistorted() == camera
    resized = distorted.resized(40, 30)  # distortion lives in normalised coordinates
    assert resized.D == distorted.D and resized.distortion_model == "plumb_bob"
    assert not Camera(K_SMALL, 80, 60, np.zeros(5), rectified=False).distorted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"K": np.zeros((3, 3))}, "focal"),
        ({"K": np.where(np.eye(3) > 0, np.nan, K_SMALL)}, "NaN"),
        ({"K": K_SMALL + [[0, 0, 500.0], [0, 0, 0], [0, 0, 0]]}, "principal point"),
        ({"K": np.eye(4)}, "shape"),
        ({"width": 0}, "size"),
        ({"D": PLUMB_BOB}, "rectified camera has no distortion"),
        ({"D": (0.1, np.inf, 0, 0, 0), "rectified": False}, "inf"),
        ({"D": PLUMB_BOB, "rectified": False, "distortion_model": "kannala"}, "unsupported"),
        ({"D": (0.1, 0.2, 0.3), "rectified": False}, "3 coefficients"),
        ({"D": PLUMB_BOB, "rectified": False, "distortion_model": "equidistant"}, "5 coeff"),
    ],
)
def test_invalid_cameras_raise(kwargs, match):
    args = {"K": K_SMALL, "width": 80, "height": 60} | kwargs
    with pytest.raises(InputError, match=match):
        Camera(**args)


# ------------------------------------------------------------------------------- CameraInfo


def info_msg(
    K: np.ndarray = K_SMALL,
    P: np.ndarray | None = None,
    D=(),
    model: str = "plumb_bob",
    size: tuple[int, int] = (80, 60),
    frame: str = "cam",
):
    msg = cv.camera_info_msg(TYPES, K, *size, cv.header(TYPES, 1, frame))
    if P is not None:
        msg.p = np.hstack([P, np.zeros((3, 1))]).reshape(12)
    msg.d, msg.distortion_model = np.asarray(D, np.float64), model
    return msg


def test_camera_info_rectified_decision_follows_image_geometry():
    P = K_SMALL * [[0.9], [0.9], [1.0]]
    # D all zero: a rectified image, its projection is P (auto), or K when told it is raw
    assert cv.camera_from_camera_info(info_msg(P=P)) == Camera(P, 80, 60)
    assert cv.camera_from_camera_info(info_msg(P=P), rectified=False).K[0, 0] == 60.0
    # D set: a raw image keeps K and D; told it is image_rect, P and no distortion
    raw = cv.camera_from_camera_info(info_msg(P=P, D=PLUMB_BOB))
    assert raw == Camera(K_SMALL, 80, 60, PLUMB_BOB, rectified=False) and raw.distorted
    assert cv.camera_from_camera_info(info_msg(P=P, D=PLUMB_BOB), rectified=True) == Camera(
        P, 80, 60
    )
    fisheye = cv.camera_from_camera_info(info_msg(D=FISHEYE, model="equidistant"))
    assert fisheye.distortion_model == "equidistant" and fisheye.D == FISHEYE
    # P all zero: K, also for a rectified image
    assert cv.camera_from_camera_info(info_msg(P=np.zeros((3, 3)))) == Camera(K_SMALL, 80, 60)


def test_camera_info_roi_then_binning():
    k = np.array([[500.0, 0.0, 320.5], [0.0, 505.0, 240.2], [0.0, 0.0, 1.0]])
    msg = info_msg(k, size=(640, 480))
    x0, y0, bx, by = 100, 50, 2, 4
    roi = {"x_offset": x0, "y_offset": y0, "height": 200, "width": 300, "do_rectify": False}
    msg.roi = TYPES.RegionOfInterest(**roi)
    msg.binning_x, msg.binning_y = bx, by
    camera = cv.camera_from_camera_info(msg)
    assert camera.size == (150, 50)
    # Crop to the ROI, then average b x b blocks: binned pixel j covers raw pixels j*b..j*b+b-1.
    X = points()
    u, v = project(k, X)
    expected = np.stack([(u - x0 - (bx - 1) / 2) / bx, (v - y0 - (by - 1) / 2) / by])
    np.testing.assert_allclose(project(camera.K, X), expected, atol=1e-9)
    # binning that does not divide the size drops the remainder, the factor stays exact
    msg.roi = TYPES.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    msg.binning_x, msg.binning_y = 3, 1
    camera = cv.camera_from_camera_info(msg)
    assert camera.size == (213, 480)
    np.testing.assert_allclose(project(camera.K, X)[0], (u - 1) / 3, atol=1e-9)


ROI_OUTSIDE = TYPES.RegionOfInterest(x_offset=60, y_offset=0, height=10, width=30, do_rectify=False)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"k": np.ones(8)}, "9 values"),
        ({"k": np.zeros(9), "p": np.zeros(12)}, "focal"),
        ({"d": np.array([0.1, 0.2, 0.3])}, "3 coefficients"),
        ({"width": 0}, "zero image size"),
        ({"roi": ROI_OUTSIDE}, "does not fit"),
    ],
)
def test_unusable_camera_info_names_the_frame(change, match):
    msg = info_msg(frame="front_cam")
    for name, value in change.items():
        setattr(msg, name, value)
    with pytest.raises(InputError, match=f"front_cam.*{match}.*calibrated"):
        cv.camera_from_camera_info(msg)


@pytest.mark.parametrize(
    "camera",
    [
        Camera(K_SMALL, 80, 60),
        Camera(K_SMALL, 80, 60, PLUMB_BOB, rectified=False),
        Camera(K_SMALL, 80, 60, FISHEYE, "equidistant", rectified=False),
    ],
    ids=["pinhole", "plumb_bob", "equidistant"],
)
def test_published_camera_info_describes_the_camera(camera):
    msg = cv.camera_info_msg(TYPES, camera, cv.header(TYPES, 3, "cam"))
    assert (msg.width, msg.height, msg.header.frame_id) == (80, 60, "cam")
    np.testing.assert_array_equal(
        np.reshape(msg.p, (3, 4)), np.hstack([camera.K, np.zeros((3, 1))])
    )
    if camera.distorted:
        assert msg.distortion_model == camera.distortion_model and tuple(msg.d) == camera.D
    else:
        assert msg.distortion_model == "plumb_bob" and list(msg.d) == [0.0] * 5
    assert cv.camera_from_camera_info(msg) == camera


def test_camera_info_cache_lookup():
    warnings = []
    cache = cv.CameraInfoCache(warn=lambda key, text: warnings.append(key))
    assert cache.camera_for("cam", 80, 60) is None
    cache.add(info_msg(frame="cam"))
    assert cache.camera_for("cam", 80, 60) == Camera(K_SMALL, 80, 60) and not warnings
    assert cache.camera_for("cam", 40, 30) == Camera(K_SMALL, 80, 60).resized(40, 30)
    assert cache.camera_for("other", 80, 60) == Camera(K_SMALL, 80, 60)
    assert warnings == ["info_size:cam", "frame_mismatch"]
    with pytest.raises(InputError):
        cache.add(info_msg(np.zeros((3, 3)), frame="cam"))
    assert cache.camera_for("cam", 80, 60) == Camera(K_SMALL, 80, 60)  # kept the valid one
    raw = cv.CameraInfoCache(rectified=False)
    raw.add(info_msg(P=K_SMALL * 0.5 + np.diag([0, 0, 0.5])))
    assert raw.camera_for("cam", 80, 60).K[0, 0] == 60.0
    fallback = cv.CameraInfoCache(fallback_intrinsics=[50.0, 51.0, 39.5, 29.5])
    K_fallback = fallback.camera_for("x", 80, 60).K
    np.testing.assert_array_equal(K_fallback, [[50, 0, 39.5], [0, 51, 29.5], [0, 0, 1]])
    with pytest.raises(InputError, match="principal point"):
        fallback.camera_for("x", 10, 10)


# ------------------------------------------------------------------------------- undistortion


def raw_coordinate_image(camera: Camera) -> np.ndarray:
    """(H, W, 2) float32 raw image whose pixels hold the pinhole pixel (u, v) they show."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float64)
    raw = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
    K, D = camera.K, np.array(camera.D)
    if camera.distortion_model == "equidistant":
        ideal = cv2.fisheye.undistortPoints(raw, K, D, P=K)
    else:
        ideal = cv2.undistortPoints(raw, K, D, P=K)
    return ideal.reshape(camera.height, camera.width, 2).astype(np.float32)


@pytest.mark.parametrize(
    ("D", "model"),
    [(PLUMB_BOB, "plumb_bob"), (FISHEYE, "equidistant")],
    ids=["plumb_bob", "fisheye"],
)
def test_undistorted_pixels_follow_the_pinhole_model(D, model):
    camera = Camera(K_SMALL, 80, 60, D, model, rectified=False)
    undistorter = Undistorter(camera)
    assert undistorter.camera == Camera(K_SMALL, 80, 60)
    out = undistorter(raw_coordinate_image(camera))
    v, u = np.mgrid[0:60, 0:80]
    ok = undistorter.valid
    assert ok[30, 40] and ok.mean() > 0.5
    # each valid output pixel shows the scene point that the pinhole K puts there
    np.testing.assert_allclose(out[ok], np.stack([u, v], axis=-1)[ok], atol=0.05)


def test_undistortion_marks_pixels_from_outside_the_raw_image():
    pincushion = Camera(K_SMALL, 80, 60, (0.4, 0.1, 0.0, 0.0, 0.0), rectified=False)
    undistorter = Undistorter(pincushion)  # the pinhole corners lie outside the raw image
    assert not undistorter.valid[0, 0] and not undistorter.valid[-1, -1]
    out = undistorter(np.full((60, 80, 3), 200, np.uint8))
    assert out.dtype == np.uint8 and out[0, 0].max() == 0 and out[30, 40].min() == 200
    with pytest.raises(InputError, match="does not match"):
        undistorter(np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(InputError, match="nothing to undistort"):
        Undistorter(Camera(K_SMALL, 80, 60))


def test_undistorter_is_built_once_per_calibration():
    a = Camera(K_SMALL, 80, 60, PLUMB_BOB, rectified=False)
    b = Camera(K_SMALL.copy(), 80, 60, list(PLUMB_BOB), rectified=False)
    assert undistorter_for(a) is undistorter_for(b)
    assert undistorter_for(a) is not undistorter_for(a.resized(40, 30))

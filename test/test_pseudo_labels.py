"""Classical rotations as the pose network's pseudo-label while warming up."""

import math

import numpy as np
import pytest
import torch

from sfm_ros.core.classical_vo import downsized
from sfm_ros.core.lie import se3_inverse, so3_exp, so3_log
from sfm_ros.core.online import OnlineAdapter, OnlineConfig
from sfm_ros.core.online.pseudo_labels import ClassicalRotations, rotation_loss
from sfm_ros.core.synthetic import render_sequence


@pytest.fixture(scope="module")
def street():
    """A textured street at a camera-like size (ORB + E needs more than the network's input)."""
    return render_sequence("street", 9, seed=5, height=128, width=416)


def true_rotations(seq, indices: list[int], target: int) -> np.ndarray:
    return np.stack(
        [(se3_inverse(seq.T_world_cam[j]) @ seq.T_world_cam[target])[:3, :3] for j in indices]
    )


def angles_deg(R_a: np.ndarray, R_b: np.ndarray) -> np.ndarray:
    return np.degrees([np.linalg.norm(so3_log(a.T @ b)) for a, b in zip(R_a, R_b, strict=True)])


def test_source_rotations_are_the_true_ones_in_collate_order(street):
    frames = [downsized(street.images[i], street.K, None) for i in (2, 4, 6)]
    R = ClassicalRotations().source_rotations(frames).numpy()
    assert R.shape == (2, 3, 3)
    assert np.all(angles_deg(R, true_rotations(street, [2, 6], 4)) < 0.2)
    blank = [(np.full_like(frames[0][0], 128), frames[0][1])] * 3  # no features: no label
    assert torch.isnan(ClassicalRotations().source_rotations(blank)).all()


def test_rotation_loss_is_robust_and_skips_missing_labels():
    R = torch.from_numpy(np.stack([so3_exp(np.array([0.0, a, 0.0])) for a in (0.0, 0.05, 0.5)]))
    identity = torch.eye(3, dtype=torch.float64).expand(3, 3, 3)
    per_angle = [float(rotation_loss(R[i : i + 1], identity[:1])) for i in range(3)]
    assert per_angle[0] == pytest.approx(0.0, abs=1e-12)
    # about (angle / 1 degree)^2 for small angles; logarithmic for large ones (a wrong label)
    assert per_angle[1] == pytest.approx(math.log1p((0.05 / math.radians(1)) ** 2), rel=1e-3)
    assert per_angle[2] < 4 * per_angle[1]  # 10x the angle: 100x for a squared loss
    labels = identity.clone()
    labels[1:] = math.nan
    assert float(rotation_loss(R, labels)) == pytest.approx(per_angle[0], abs=1e-12)
    assert rotation_loss(R, torch.full_like(labels, math.nan)) is None


def test_the_warm_up_pulls_the_pose_network_towards_the_classical_rotations(
    small_checkpoint, street, tmp_path
):
    def warm_up(weight: float) -> OnlineAdapter:
        cfg = OnlineConfig(
            checkpoint=str(small_checkpoint), out_dir=str(tmp_path / str(weight)), device="cpu",
            warmup_snippets=1, holdout_every=10, save_period=1000, replay_data="",
            memory_domains="", collapse_min_rel_std=1e-3, lr=1e-3, classical_rotation_weight=weight,
        )  # fmt: skip
        adapter = OnlineAdapter(cfg)
        for i in range(len(street.images)):
            adapter.push(street.images[i], street.K, int(street.stamps_ns[i]))
        for _ in range(15):
            result = adapter.step_once()
        assert ("classical_rotation" in result.stats) == (weight > 0)
        return adapter

    plain, pulled = warm_up(0.0), warm_up(1.0)
    snippets = list(pulled.buffer)  # the same frames in both: labelled where asked for
    assert all(s.extras is None and torch.isfinite(s.R_src_tgt).all() for s in snippets)
    assert all(s.R_src_tgt is None for s in plain.buffer)
    frames = torch.stack([s.frames for s in snippets]).float() / 255
    srcs = torch.cat([frames[:, :1], frames[:, 2:]], 1)
    labels = torch.stack([s.R_src_tgt for s in snippets]).flatten(0, 1)
    errors = []
    for adapter in (plain, pulled):
        adapter.pose_net.eval()
        with torch.no_grad():
            T, _ = adapter.pose_net(frames[:, 1], srcs)
        errors.append(float(rotation_loss(T[..., :3, :3].flatten(0, 1), labels)))
    assert errors[1] < 0.5 * errors[0]

"""Evaluation over recorded predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sfm_ros.core.checkpoint import load_checkpoint
from sfm_ros.core.evaluate import (
    DepthEvalOptions,
    EstimatorPredictor,
    RecordedPredictor,
    evaluate_depth_sequences,
    evaluate_pose_sequences,
)
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.core.sources import open_source


class CountingPredictor(EstimatorPredictor):
    def __init__(self, estimator: DepthPoseEstimator) -> None:
        super().__init__(estimator)
        self.calls = 0

    def predict(self, frame):
        self.calls += 1
        return super().predict(frame)


def test_depth_then_pose_from_one_pass_gives_the_same_metrics(small_checkpoint: Path) -> None:
    arch = load_checkpoint(small_checkpoint)["arch"]
    sequences = open_source("synthetic:street:8:1000", height=arch["height"], width=arch["width"])
    estimator = DepthPoseEstimator.from_checkpoint(small_checkpoint)
    direct = CountingPredictor(estimator)
    recorded = RecordedPredictor(CountingPredictor(estimator))
    scores = []
    for predictor in (direct, recorded):
        depth = evaluate_depth_sequences(predictor, sequences, DepthEvalOptions(), progress=False)
        pose = evaluate_pose_sequences(predictor, sequences, progress=False)
        (entry,) = pose["sequences"].values()
        scores.append((depth["model"]["median_scaled"], entry["model"]))
    assert direct.calls == 16 and recorded.predictor.calls == 8
    for key in ("abs_rel", "a1"):
        assert np.isclose(scores[0][0][key], scores[1][0][key])
    for key in ("ate5_mean", "re_mean", "ate_rmse_sim3"):
        assert np.isclose(scores[0][1][key], scores[1][1][key])

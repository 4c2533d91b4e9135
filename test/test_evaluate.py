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
from sfm_ros.pipeline.evaluate import PipelinePredictor
from sfm_ros.pipeline.params_file import pipeline_config


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


def test_the_pipeline_predictor_gives_the_nodes_whole_result() -> None:
    (seq,) = open_source("synthetic:street:6:1000", height=64, width=208)
    config = Path(__file__).parents[1] / "config" / "sfm.yaml"
    predictor = PipelinePredictor(pipeline_config(config))  # the packaged model
    frames = [seq.load(i) for i in range(len(seq))]
    results = [predictor.process(f, outputs={"depth", "depth/confidence"}) for f in frames]
    predictor.reset()
    predictions = [predictor.predict(f) for f in frames]
    for result, prediction in zip(results[1:], predictions[1:], strict=True):
        np.testing.assert_allclose(result.T_prev_cur, prediction.T_prev_cur, atol=1e-9)
        assert result.confidence.shape == result.depth_m.shape
        assert np.isfinite(result.confidence).all()
        assert result.confidence.min() >= 0 and result.confidence.max() <= 1
        assert result.confidence.mean() > 0.3  # multi-view geometry confirms much of it

"""The node's pipeline as a `FramePredictor`, so that ``sfm-ros eval`` reports the node's numbers.

Each frame becomes a ``sensor_msgs/Image`` and a ``CameraInfo`` message and goes through
`DepthOdometryPipeline.process` with the same `PipelineConfig` the node would get (params file,
``key=value`` overrides): pose refinement, multi-view depth, scale source, depth range and all.
"""

from __future__ import annotations

import logging
from typing import Any

from rosbags.typesys import Stores, get_typestore

from sfm_ros import messages as cv
from sfm_ros.core.camera import Camera
from sfm_ros.core.data import Frame
from sfm_ros.core.evaluate import Prediction
from sfm_ros.core.inference import DepthPoseEstimator
from sfm_ros.pipeline.config import PipelineConfig
from sfm_ros.pipeline.frame_pipeline import DepthOdometryPipeline, PipelineResult

FRAME_ID = "camera_optical_frame"


class PipelinePredictor:
    """`DepthOdometryPipeline` over frames; a fresh pipeline (one shared model) per sequence.

    Args:
        cfg: the node's parameters; its checkpoint is loaded unless ``estimator`` is given.
        estimator: a ready `DepthPoseEstimator` (tests, benchmarks).
    """

    def __init__(self, cfg: PipelineConfig, estimator: DepthPoseEstimator | None = None) -> None:
        self.cfg = cfg
        self.types = cv.rosbags_types(get_typestore(Stores.ROS2_HUMBLE))
        self.log = logging.getLogger(__name__)
        self.pipeline = DepthOdometryPipeline(cfg, self.types, estimator, self.log)
        self.estimator = self.pipeline.estimator

    def reset(self) -> None:
        self.estimator.reset()
        self.pipeline = DepthOdometryPipeline(self.cfg, self.types, self.estimator, self.log)

    def _message(self, frame: Frame) -> Any:
        """The frame as an Image message, its CameraInfo queued."""
        height, width = frame.image.shape[:2]
        header = cv.header(self.types, frame.stamp_ns, FRAME_ID)
        camera = Camera(frame.K, width, height)
        self.pipeline.on_camera_info(cv.camera_info_msg(self.types, camera, header))
        return cv.numpy_to_image(self.types, frame.image, "rgb8", header)

    def catch_up(self, frames: list[Frame]) -> None:
        """Frames the node fell behind on (`DepthOdometryPipeline.catch_up`), oldest first."""
        self.pipeline.catch_up([self._message(frame) for frame in frames])

    def process(self, frame: Frame, outputs: set[str] | None = None) -> PipelineResult | None:
        """The node's whole result for ``frame`` (None where it skips it), with ``outputs``
        computed as if they had subscribers (None: all enabled; ``depth/confidence`` for the
        published depth's confidence)."""
        return self.pipeline.process(self._message(frame), outputs=outputs)

    def predict(self, frame: Frame) -> Prediction | None:
        result = self.process(frame, outputs=set())
        if result is None:
            return None
        return Prediction(result.depth_m, result.T_prev_cur)

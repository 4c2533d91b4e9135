"""sfm_ros: self-supervised monocular depth and ego-motion (SfMLearner family) for ROS 2."""

__version__ = "0.1.0"

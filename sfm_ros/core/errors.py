"""Errors with messages meant for users: each names the problem and what to do about it."""


class SfmError(Exception):
    """Base class of every error sfm_ros raises on purpose (bad input, bad files)."""


class CheckpointError(SfmError):
    """A checkpoint is missing, corrupt, or does not match what is asked of it."""


class InputError(SfmError):
    """An image, intrinsics matrix or other runtime input is malformed."""


class DatasetError(SfmError):
    """A dataset path, layout or bag is unusable (empty, missing topics, bad calibration)."""


class ConfigError(SfmError):
    """A configuration file or override is invalid."""
